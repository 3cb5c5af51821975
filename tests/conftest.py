"""Hypothesis profiles: the default one for `make test`, and a short, repeatable one for `make mutate`."""

from __future__ import annotations

import os

from hypothesis import Phase, settings

settings.register_profile(
    "mutation", max_examples=25, derandomize=True, database=None, phases=[Phase.explicit, Phase.generate]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
