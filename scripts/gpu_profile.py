"""Where a steady chunk's time goes: the kernels of the DiT's step and of the streaming decode, by device time.

Builds a preset with random weights (or loads a model), fills the attention window, then profiles a few chunks
of DiT + decode to uint8 frames. The table is sorted by self device time; a one-line split of kernel time into
matrix products, attention, convolutions and the rest follows it.

    python scripts/gpu_profile.py [--preset longlive-1.3b | --model tiny] [--device cuda] [--decoder auto] [--compile]
"""

from __future__ import annotations

import argparse
import re

import torch
from torch.profiler import ProfilerActivity, profile

from longlive_cli.bench import attention_backend, random_bundle
from longlive_cli.bundle import PRESETS, load_bundle
from longlive_cli.engine import SeededNoise, StreamingGenerator, warm_up
from longlive_cli.pipeline import FramePipeline

KINDS = (
    ("attention", re.compile(r"flash|fmha|attention|sdpa|cudnn_generated_fort_native_sdpa", re.I)),
    ("matmul", re.compile(r"gemm|sm90_xmma|cutlass|matmul|addmm|_scaled_mm|nvjet", re.I)),
    ("conv", re.compile(r"conv|implicit_gemm|wgrad|dgrad", re.I)),
)


def kind(name: str) -> str:
    """The family a kernel belongs to, from its name."""
    return next((k for k, pattern in KINDS if pattern.search(name)), "other")


@torch.no_grad()
def main() -> None:
    """Profile steady chunks and print the kernel table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default=None, choices=sorted(PRESETS))
    ap.add_argument("--model", default=None, help="'tiny', a model directory or a converted file")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bf16", choices=("bf16", "float32"))
    ap.add_argument("--decoder", default="auto")
    ap.add_argument("--sdpa", default="auto")
    ap.add_argument("--compile", action="store_true", help="compile the DiT blocks (and warm them up) first")
    ap.add_argument("--chunks", type=int, default=2, help="chunks profiled once the window is full")
    ap.add_argument("--rows", type=int, default=30)
    args = ap.parse_args()
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    if args.preset is not None:
        bundle, context = random_bundle(PRESETS[args.preset], args.device, dtype)
    else:
        bundle = load_bundle(args.model or "tiny", args.device, dtype)
        context = bundle.text.encode(["a small red circle moving left and right on a gray background"])
    spec, engine = bundle.spec, bundle.spec.engine
    latent = spec.latent_shape
    if args.compile:
        bundle.dit.compile_blocks()
        with attention_backend(args.sdpa):
            warm_up(bundle.dit, engine, latent, context)
    gen = StreamingGenerator(bundle.dit, engine, latent, SeededNoise(0))
    gen.reset()
    gen.set_prompt(context)
    pipeline = FramePipeline(bundle.decoder(args.decoder), args.device)
    device = torch.device(args.device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])

    def chunk() -> None:
        with attention_backend(args.sdpa):
            latents = gen.step()
        pipeline(latents)

    for _ in range(-(-engine.window // engine.chunk_frames) + 1):
        chunk()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    with profile(activities=activities) as prof:
        for _ in range(args.chunks):
            chunk()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    events = prof.key_averages()
    sort = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"{spec.name}, {spec.size[0]}x{spec.size[1]}, {args.dtype}, decoder {type(pipeline.decode).__qualname__}, "
          f"{'compiled' if args.compile else 'eager'} DiT, {args.chunks} chunks after the window filled")  # fmt: skip
    print(events.table(sort_by=sort, row_limit=args.rows, max_name_column_width=70))
    if device.type == "cuda":
        split: dict[str, float] = {}
        for e in events:
            if e.device_type.name == "CUDA":
                split[kind(e.key)] = split.get(kind(e.key), 0.0) + e.self_device_time_total / 1e3
        total = sum(split.values()) or 1.0
        parts = ", ".join(f"{k} {v / args.chunks:.1f} ms ({100 * v / total:.0f} %)" for k, v in sorted(split.items()))
        print(f"kernel time per chunk: {total / args.chunks:.1f} ms = {parts}")


if __name__ == "__main__":
    main()
