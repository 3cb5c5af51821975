"""The model card's numbers: the project's held-out ShapesWorld suite, and render speed on this machine."""

from __future__ import annotations

import time

from longlive_cli.bundle import Bundle
from longlive_cli.engine import SwitchPolicy
from longlive_cli.evaluate import CHANGES_PART, SUITE, render_frames, run_suite, suite_timelines


def evaluate(bundle: Bundle) -> dict:
    """Suite rows (adherence, latency, continuity, drift) and readings without the 240 s run, and the real-time
    factor."""
    part = next(p for p in SUITE if p.name == CHANGES_PART)  # timed: prompt changes, as a user's timeline has
    start = time.perf_counter()
    render_frames(bundle, suite_timelines(part)[0], part.duration_s, part.seed, SwitchPolicy.RECACHE)
    realtime = part.duration_s / (time.perf_counter() - start)
    suite = run_suite(bundle, long=False)
    return {"rows": suite["rows"], "readings": suite["readings"], "realtime_factor": round(realtime, 2)}
