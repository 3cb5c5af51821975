"""Run ``longlive check`` on many Hypothesis-generated hostile timelines and report tracebacks, hangs and memory.

Timelines come from the strategy the fuzz tests use (tests/hostile.py), written to a folder, then checked in
batches, each batch one ``longlive check`` process under a time limit. Reported: exit codes, any output that is
not an ``error:`` line or a table, the slowest batch, and the largest resident memory of any batch (ru_maxrss).

    python scripts/fuzz_check.py [--count 1000] [--batch 100] [--seed 0] [--out /tmp/hostile] [--json report.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.hostile import hostile_timelines  # noqa: E402


def generate(count: int, seed_value: int, folder: Path) -> list[Path]:
    """``count`` distinct hostile timelines from the strategy, the same ones for the same seed."""
    texts: dict[str, None] = {}

    @seed(seed_value)
    @settings(
        max_examples=count * 3,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(hostile_timelines)
    def collect(text: str) -> None:
        if len(texts) < count:
            texts[text] = None

    collect()
    paths = []
    for i, text in enumerate(texts):
        path = folder / f"t{i:04d}.yaml"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        paths.append(path)
    return paths


def check(paths: list[Path], limit_s: float) -> dict:
    """One ``longlive check`` over ``paths``: exit code, seconds, peak memory, and any line that is not expected."""
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "longlive_cli", "check", *map(str, paths)],
            capture_output=True,
            text=True,
            timeout=limit_s,
            env={**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"},
        )
    except subprocess.TimeoutExpired:
        return {"files": len(paths), "timeout": True, "seconds": limit_s}
    rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    odd = [
        line
        for line in proc.stderr.splitlines()
        if line.strip() and not line.startswith(("error: ", "warning: ")) and "Traceback" not in line
    ]
    return {
        "files": len(paths),
        "timeout": False,
        "exit": proc.returncode,
        "seconds": round(time.perf_counter() - start, 2),
        "max_rss_mb": round(max(rss_kb, before) / 1024, 1),
        "tracebacks": proc.stderr.count("Traceback") + proc.stdout.count("Traceback"),
        "errors": proc.stderr.count("error: "),
        "odd_lines": odd[:5],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=float, default=120.0, help="seconds allowed per batch")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    folder = args.out or Path(tempfile.mkdtemp(prefix="hostile-"))
    folder.mkdir(parents=True, exist_ok=True)
    paths = generate(args.count, args.seed, folder)
    batches = [check(paths[i : i + args.batch], args.limit) for i in range(0, len(paths), args.batch)]
    done = [b for b in batches if not b["timeout"]]
    report = {
        "timelines": len(paths),
        "folder": str(folder),
        "batches": len(batches),
        "timeouts": sum(b["timeout"] for b in batches),
        "tracebacks": sum(b.get("tracebacks", 0) for b in done),
        "error_lines": sum(b.get("errors", 0) for b in done),
        "exit_codes": sorted({b["exit"] for b in done}),
        "slowest_batch_s": max((b["seconds"] for b in batches), default=None),
        "seconds_per_file": round(sum(b["seconds"] for b in batches) / max(len(paths), 1), 4),
        "max_rss_mb": max((b["max_rss_mb"] for b in done), default=None),
        "odd_lines": [line for b in done for line in b["odd_lines"]][:10],
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"summary": report, "batches": batches}, indent=2) + "\n")
    if report["timeouts"] or report["tracebacks"] or report["odd_lines"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
