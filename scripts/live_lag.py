"""Lag of `longlive live`: from a prompt sent as the page sends it to the first frame generated (and shown) under it.

Starts `longlive live` in a child process (paced, recording to a temporary folder), sends prompt changes to its
server at jittered intervals the way the page's Enter key does, then quits through stdin and reads the lags, the
shown frame rate and the stalls from the recording's sidecar.

    python scripts/live_lag.py --model tiny --changes 20
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PROMPTS = [
    "a small red circle moving left and right on a gray background",
    "a small blue circle moving left and right on a gray background",
    "a large green square moving up and down on a black background",
    "a yellow triangle circling on a white background",
]
STEER = re.compile(r"steer: (http://127\.0\.0\.1:\d+/)#steer=([\w-]+)")


def post(url: str, token: str, message: dict) -> dict:
    request = urllib.request.Request(
        url + "api/command",
        data=json.dumps(message).encode(),
        headers={"Content-Type": "application/json", "X-Longlive-Token": token},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--size", help="WxH (default: the model's)")
    ap.add_argument("--decoder", default="auto")
    ap.add_argument("--changes", type=int, default=20)
    ap.add_argument("--spacing", type=float, default=1.5, help="mean seconds between changes")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of video before the first change")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "lag.mp4"
        cmd = [sys.executable, "-m", "longlive_cli", "live", PROMPTS[0], "--model", args.model, "--port", "0"]
        cmd += ["--record", str(out), "--keep-running", "--quiet", "--device", "cpu", "--decoder", args.decoder]
        cmd += ["--size", args.size] if args.size else []
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        url = token = None
        for line in proc.stderr:
            if m := STEER.search(line):
                url, token = m[1], m[2]
                break
        if url is None:
            sys.exit(f"`longlive live` did not start (exit code {proc.wait()})")
        time.sleep(args.warmup)
        for i in range(args.changes):
            time.sleep(args.spacing * rng.uniform(0.6, 1.4))
            post(url, token, {"type": "prompt", "text": PROMPTS[(i + 1) % len(PROMPTS)], "policy": "recache"})
        time.sleep(2 * args.spacing)
        proc.communicate(":quit\n", timeout=120)
        side = json.loads(out.with_suffix(".json").read_text())
    changes = side["changes"][1:]
    lags = sorted(c["lag_s"] for c in changes)
    shown = sorted(c["shown_lag_s"] for c in changes if c["shown_lag_s"] is not None)
    t = side["timings"]
    result = {
        "model": args.model,
        "size": side["settings"]["size"],
        "decoder": side["settings"]["decoder"],
        "changes": len(lags),
        "lag_median_s": round(statistics.median(lags), 3),
        "lag_p90_s": round(lags[int(0.9 * (len(lags) - 1))], 3),
        "lag_max_s": round(lags[-1], 3),
        "shown_lag_median_s": round(statistics.median(shown), 3) if shown else None,
        "landed_at_next_boundary": sum(c["landed_latent"] == c["boundary_latent"] for c in changes),
        "shown_fps": round(t["frames_shown"] / t["elapsed_s"], 2),
        "target_fps": side["settings"]["fps"],
        "stalls": t["stalls"],
        "realtime_factor": t["realtime_factor"],
        "chunk_median_s": t["recent_chunk_median_s"],
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
