"""Resident memory of a long render, sampled as the video grows: it must stay flat.

Runs ``longlive render --progress json`` in a child process and reads the child's VmRSS at each finished chunk,
reporting it at chosen marks of video time, the peak and the spread between marks, and checks that the MP4 holds
every frame. Exits 1 when the spread exceeds ``--tolerance`` percent or frames are missing.

    python scripts/render_memory.py --model tiny --duration 30m --marks 1m 10m 30m
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from longlive_cli.timeline import DEFAULT_FPS, parse_time
from longlive_cli.video import read_video_info


def rss_mib(pid: int) -> float:
    """Current resident set of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--duration", default="240s", help="any timeline duration: 240s, 30m, 1h, 2:00:00")
    ap.add_argument("--marks", nargs="+", help="video times to report (default: 1/30, 1/3 and all of the duration)")
    ap.add_argument("--positions", default="auto", help="auto | absolute | relative")
    ap.add_argument("--tolerance", type=float, default=5.0, help="largest spread between marks, percent")
    ap.add_argument("--prompt", default="a small red circle moving left and right on a gray background")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args()
    total = parse_time(args.duration, DEFAULT_FPS, "--duration")
    marks = [total / 30, total / 3, total]
    if args.marks:
        marks = [parse_time(m, DEFAULT_FPS, "--marks") for m in args.marks]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "memory.mp4"
        cmd = [sys.executable, "-m", "longlive_cli", "render", "--prompt", args.prompt, "--duration", args.duration]
        cmd += ["--model", args.model, "-o", str(out), "--progress", "json", "--device", "cpu"]
        cmd += ["--positions", args.positions]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        samples: list[tuple[float, float]] = []
        expected = None
        for line in proc.stdout:
            event = json.loads(line)
            if event["event"] == "start":
                expected, positions = event["frames"], event["positions"]
            elif event["event"] == "chunk":
                samples.append((event["video_s"], rss_mib(proc.pid)))
        if proc.wait():
            sys.exit(f"render failed with exit code {proc.returncode}")
        frames = read_video_info(out)["frames"]
    at = {}
    for mark in marks:
        t, r = next(((t, r) for t, r in samples if t >= mark), samples[-1])
        at[f"{t:g}s"] = round(r, 1)
    low, high = min(at.values()), max(at.values())
    result = {
        "model": args.model,
        "duration": args.duration,
        "positions": positions,
        "rss_mib_at": at,
        "spread_pct": round(100 * (high - low) / low, 2),
        "peak_rss_mib": round(max(r for _, r in samples), 1),
        "peak_at_s": max(samples, key=lambda sample: sample[1])[0],
        "first_chunk_rss_mib": round(samples[0][1], 1),
        "mp4_frames": frames,
        "expected_frames": expected,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if frames != expected or result["spread_pct"] > args.tolerance:
        sys.exit(1)


if __name__ == "__main__":
    main()
