"""Hypothesis profiles: ``ci`` (the default) replays the same examples on every run; ``explore`` draws new ones;
``mutation`` is short and repeatable, for `make mutate`."""

import os

from hypothesis import HealthCheck, Phase, settings

settings.register_profile(
    "ci", derandomize=True, database=None, deadline=2000, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("explore", deadline=2000, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "mutation", max_examples=25, derandomize=True, database=None, phases=[Phase.explicit, Phase.generate]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
