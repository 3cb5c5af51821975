"""Hypothesis profiles: ``ci`` (the default) replays the same examples on every run; ``explore`` draws new ones."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, database=None, deadline=2000, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("explore", deadline=2000, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
