"""Resident memory of a long render, sampled as the video grows: it must stay flat.

Runs ``longlive render --progress json`` in a child process and reads the child's VmRSS at each finished chunk,
reporting it at chosen marks of video time and the peak.

    python scripts/render_memory.py --model tiny --duration 240s --marks 30 120 240
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def rss_mib(pid: int) -> float:
    """Current resident set of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--duration", default="240s")
    ap.add_argument("--marks", type=float, nargs="+", default=[30, 120, 240], help="seconds of video")
    ap.add_argument("--prompt", default="a small red circle moving left and right on a gray background")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "memory.mp4"
        cmd = [sys.executable, "-m", "longlive_cli", "render", "--prompt", args.prompt, "--duration", args.duration]
        cmd += ["--model", args.model, "-o", str(out), "--progress", "json", "--device", "cpu"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        samples: list[tuple[float, float]] = []
        for line in proc.stdout:
            event = json.loads(line)
            if event["event"] == "chunk":
                samples.append((event["video_s"], rss_mib(proc.pid)))
        if proc.wait():
            sys.exit(f"render failed with exit code {proc.returncode}")
    marks = {}
    for mark in args.marks:
        at = next(((t, r) for t, r in samples if t >= mark), samples[-1])
        marks[f"{mark:g}s"] = round(at[1], 1)
    result = {"model": args.model, "duration": args.duration, "rss_mib_at": marks}
    result["peak_rss_mib"] = round(max(r for _, r in samples), 1)
    result["first_chunk_rss_mib"] = round(samples[0][1], 1)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
