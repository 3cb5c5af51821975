"""Before/after table of streaming long tuning, and the switch-policy ablation, on the ShapesWorld suite.

Scores two models (the student before long tuning, the long-tuned one) on the suite's 240 s runs with five prompt
changes (the last brings back the first prompt, so the first and last 20 % ask for the same thing) and its 20 s runs
with three, then the long-tuned one with each switch policy (recache, keep, clear), and
prints markdown tables; every figure goes to --json. Parts run in parallel processes, one thread each.

    longlive train --stage export --out runs/tiny --assets runs/tiny/before --generator student
    longlive train --stage export --out runs/tiny --assets runs/tiny/after --generator long
    python scripts/long_tuning_report.py runs/tiny/before/tiny.safetensors runs/tiny/after/tiny.safetensors \
        --json runs/tiny/long_tuning.json

With the figures in the run folder as long_tuning.json, the next export puts their table in the model card.
"""

from __future__ import annotations

import argparse
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from longlive_cli.evaluate import CHANGES_PART as CHANGES
from longlive_cli.evaluate import LONG_PART as LONG
from longlive_cli.train.export import POLICIES, report_key


def score(model: str, policy: str, part: str) -> dict:
    """One suite part of one model under one switch policy, in this process."""
    import torch

    from longlive_cli.bundle import load_bundle
    from longlive_cli.engine import SwitchPolicy
    from longlive_cli.evaluate import run_suite

    torch.set_num_threads(1)
    report = run_suite(load_bundle(model), SwitchPolicy(policy), parts=(part,))
    return report["rows"][part]


def pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def num(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def first_to_last(row: dict) -> str:
    """Shape, colour and motion adherence in the first 20 % and in the last 20 % of the video."""
    return " / ".join(
        f"{pct(row.get(f'drift_first_{k}'))}→{pct(row.get(f'drift_last_{k}'))}" for k in ("shape", "color", "motion")
    )


def drift_row(name: str, row: dict, fps: float = 16.0) -> str:
    lat = row["latency_frames_median"]
    return (
        f"| {name} | {pct(row['adherence_all'])} | {pct(row['drift_first_all'])} | {pct(row['drift_last_all'])} | "
        f"{pct(row['drift_adherence_delta'])} | {first_to_last(row)} | {num(row['drift_color_shift'], 1)} | "
        f"{num(row['drift_sharpness_ratio'])} | {num(row['drift_area_ratio'])} | "
        f"{'-' if lat is None else f'{lat / fps:.2f}'} | {row['unsettled']} of {row['changes']} | "
        f"{num(row['continuity_median'])} |"
    )


HEADER = (
    "| model | all % | all %, first 20 % | all %, last 20 % | last - first (pts) | shape / colour / motion %, "
    "first→last | colour drift (RGB) | sharpness last/first | area last/first | latency med (s) | unsettled | "
    "continuity med |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before", help="model file of the student before long tuning")
    ap.add_argument("after", help="model file of the long-tuned student")
    ap.add_argument("--json", type=Path, help="write every figure here")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    jobs = {
        ("before", "recache", LONG): (args.before, "recache", LONG),
        ("after", "recache", LONG): (args.after, "recache", LONG),
        ("before", "recache", CHANGES): (args.before, "recache", CHANGES),
        **{("after", p, part): (args.after, p, part) for p in POLICIES for part in (CHANGES, LONG)},
    }
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = {key: pool.submit(score, *job) for key, job in jobs.items()}
        rows = {key: f.result() for key, f in futures.items()}

    print(f"### Before and after long tuning, {LONG} (5 changes) and {CHANGES} (3 changes), switch policy recache\n")
    print(HEADER)
    for part in (LONG, CHANGES):
        for model in ("before", "after"):
            print(drift_row(f"{model}, {part}", rows[(model, "recache", part)]))
    print("\n### Switch policy at prompt changes, long-tuned model\n")
    print(HEADER)
    for part in (CHANGES, LONG):
        for policy in POLICIES:
            print(drift_row(f"{policy}, {part}", rows[("after", policy, part)]))
    if args.json:
        args.json.write_text(json.dumps({report_key(*k): v for k, v in rows.items()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
