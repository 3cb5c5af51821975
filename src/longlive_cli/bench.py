"""Speed and memory of the streaming pipeline, saying exactly what was timed.

Each variant (a set of overrides on the base settings) runs in its own process so that peak memory is its own.
Per variant: compiling (with compile=true, a throwaway stream that meets every shape first) and the first chunks
are reported apart; then over the steady-state chunks, the median DiT time per chunk (5 forwards: 4 denoising
steps + the clean cache pass), the median decode time per chunk (streaming decoder to uint8 frames on the host),
the optional MP4 write time, the time to the first frame (of the process's first video, first kernels included;
and of a new video once warm), the recache latency at a prompt change, peak memory, parameters and weight bytes.
The chunks go through the same pipeline as `longlive render` (engine -> streaming decoder -> uint8 frames). With
overlap=true it decodes each chunk on a second CUDA stream while the next chunk's DiT runs: the DiT time is then
until its work is queued, and the decode time is the wait for the chunk before it.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from .bundle import PRESETS, Bundle, ModelSpec, load_bundle
from .engine import EngineConfig, LatentChunk, SeededNoise, StreamingGenerator, SwitchPolicy, warm_up
from .models.dit import CausalWanDiT
from .models.taehv import TAEHV, TAEHVConfig
from .models.vae import WanVAE
from .pipeline import FramePipeline
from .quantize import quantize_dit, weight_bytes
from .video import VideoWriter

OVERRIDABLE = (
    "window", "sink", "quantize", "decoder", "dtype", "compile", "size", "sdpa", "decode_step", "channels_last",
    "trace_memory", "overlap", "positions",
)  # fmt: skip
SDPA = {
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}


@dataclass(frozen=True)
class BenchSettings:
    """One variant: what model, where, and how it is run."""

    name: str = "base"
    model: str | None = None
    preset: str | None = None
    device: str = "cpu"
    dtype: str = "float32"
    frames: int = 120
    warmup_chunks: int = 2
    window: int | None = None
    sink: int | None = None
    quantize: str = "none"
    decoder: str = "auto"
    compile: bool = False
    size: str | None = None
    sdpa: str = "auto"  # attention backend for the DiT: auto | cudnn | flash | efficient | math
    decode_step: int = 1  # Wan VAE latents per decoder call; 0: the whole chunk at once
    channels_last: bool | None = None  # Wan VAE convolution layout; None: the loader's (channels-last on CUDA)
    trace_memory: bool = False  # CUDA: which source lines hold the memory at the peak (slows the variant down)
    overlap: bool = False  # decode each chunk on a second CUDA stream while the next chunk's DiT runs
    positions: str = "absolute"  # RoPE positions: absolute | relative (re-rotates the cached keys every call)
    write: bool = False

    def with_overrides(self, text: str) -> BenchSettings:
        """Apply 'key=value,key=value' (or 'base'); the text becomes the variant's name."""
        if text == "base":
            return replace(self, name=text)
        values = {}
        for part in text.split(","):
            key, sep, value = part.partition("=")
            key = key.strip()
            if not sep or key not in OVERRIDABLE:
                raise ValueError(f"variant {text!r}: expected key=value with keys {', '.join(OVERRIDABLE)}")
            if key in ("window", "sink", "decode_step"):
                values[key] = int(value)
            elif key == "sdpa" and value.strip() not in ("auto", *SDPA):
                raise ValueError(f"variant {text!r}: sdpa is one of auto, {', '.join(SDPA)}")
            elif key in ("compile", "channels_last", "trace_memory", "overlap"):
                values[key] = value.strip().lower() in ("1", "true", "yes")
            else:
                values[key] = value.strip()
        return replace(self, name=text, **values)


def attention_backend(name: str) -> contextlib.AbstractContextManager:
    """Pin scaled_dot_product_attention to one backend ('auto' leaves PyTorch's choice)."""
    if name == "auto":
        return contextlib.nullcontext()
    if name not in SDPA:
        raise ValueError(f"sdpa={name!r}: choose auto, {', '.join(SDPA)}")
    return sdpa_kernel([SDPA[name]])


def peak_breakdown(trace: list[dict], top: int = 12) -> list[dict]:
    """Allocations alive at the traced peak, summed by the innermost project source line that made them."""
    live: dict[int, tuple[int, str]] = {}
    current = peak = 0
    at_peak: dict[int, tuple[int, str]] = {}
    for event in trace:
        if event["action"] == "alloc":
            frames = event.get("frames", [])
            site = next((f"{Path(f['filename']).name}:{f['line']} {f['name']}" for f in frames
                         if "longlive_cli" in f["filename"]), "elsewhere")  # fmt: skip
            live[event["addr"]] = (event["size"], site)
            current += event["size"]
            if current > peak:
                peak, at_peak = current, dict(live)
        elif event["action"] == "free_completed" and event["addr"] in live:
            current -= live.pop(event["addr"])[0]
    sites: dict[str, int] = {}
    for size, site in at_peak.values():
        sites[site] = sites.get(site, 0) + size
    ranked = sorted(sites.items(), key=lambda item: -item[1])[:top]
    return [{"site": site, "bytes": size} for site, size in ranked]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_bundle(spec: ModelSpec, device: str, dtype: torch.dtype) -> tuple[Bundle, torch.Tensor]:
    """A preset with random weights built directly on the device, and random text features (no text encoder)."""
    torch.manual_seed(0)
    fast_cfg = spec.fast_decoder or TAEHVConfig()
    with torch.device(device):
        dit, vae, fast = CausalWanDiT(spec.dit), WanVAE(spec.vae), TAEHV(fast_cfg)
    spec = replace(spec, fast_decoder=fast_cfg)
    for m in (dit, vae, fast):
        m.to(device=device, dtype=dtype).eval().requires_grad_(False)
    if vae.conv2.weight.is_cuda:
        vae.channels_last()
    context = torch.randn(1, spec.dit.text_len, spec.dit.text_dim, device=device) * 0.1
    return Bundle(spec, dit, vae, None, f"{spec.name} (random weights)", fast), context


def _load(s: BenchSettings, device: str, dtype: torch.dtype) -> tuple[Bundle, torch.Tensor]:
    if s.preset is not None:
        if s.preset not in PRESETS:
            raise ValueError(f"unknown preset {s.preset!r}; choose one of {', '.join(PRESETS)}")
        return random_bundle(PRESETS[s.preset], device, dtype)
    bundle = load_bundle(s.model or "tiny", device, dtype)
    context = bundle.text.encode(["a small red circle moving left and right on a gray background"])
    return bundle, context


@dataclass
class StreamTimes:
    """Per steady-state chunk: DiT, decode and write seconds and frames; the first chunks' figures apart."""

    dit_s: list[float] = field(default_factory=list)
    decode_s: list[float] = field(default_factory=list)
    write_s: list[float] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    first_frame_s: float | None = None
    warmup_s: float = 0.0


@dataclass
class DitCall:
    """When one chunk's DiT work started and when it was done (or, overlapped, queued)."""

    index: int
    started: float
    done: float


@torch.no_grad()
def run_variant(s: BenchSettings) -> dict:
    """Measure one variant in this process."""
    device = torch.device(s.device)
    dtype = {"float32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[s.dtype]
    load_started = time.perf_counter()
    bundle, context = _load(s, s.device, dtype)
    quantize_dit(bundle.dit, s.quantize)
    load_s = time.perf_counter() - load_started
    spec = bundle.spec
    engine = _engine_config(s, spec.engine)
    width, height = (int(v) for v in s.size.split("x")) if s.size else spec.size
    spec.check_size((width, height))  # a size render refuses is not measured either
    latent = spec.latent_shape_for((width, height))
    decoder = bundle.decoder(s.decoder)
    if isinstance(decoder, WanVAE) and s.channels_last is not None:
        decoder.channels_last(s.channels_last)
    compile_s = _compile(s, bundle, engine, latent, context, device) if s.compile else 0.0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    tracing = s.trace_memory and device.type == "cuda"
    if tracing:
        untraced = torch.cuda.memory_allocated(device)
        torch.cuda.memory._record_memory_history(max_entries=500_000, stacks="python")
    gen = StreamingGenerator(bundle.dit, engine, latent, SeededNoise(0))
    decode_step = (s.decode_step or None) if isinstance(decoder, WanVAE) else None
    pipeline = FramePipeline(decoder, device, behind=s.overlap, decode_step=decode_step)
    writer = None
    if s.write:
        path = Path(os.environ.get("TMPDIR", "/tmp")) / f"longlive-bench-{os.getpid()}.mp4"
        writer = VideoWriter(path, bundle.spec.fps, (width, height), overwrite=True)
    times = _time_stream(s, gen, pipeline, context, writer, device)
    recache_s, new_video_s = _time_switch_and_restart(s, gen, pipeline, context, device)
    per_chunk = statistics.median(times.frames) if times.frames else 0
    dit_s = statistics.median(times.dit_s) if times.dit_s else float("nan")
    decode_s = statistics.median(times.decode_s) if times.decode_s else float("nan")
    result = {
        "variant": s.name,
        "settings": asdict(s),
        "engine": {
            "chunk": engine.chunk_frames,
            "window": engine.window,
            "sink": engine.sink,
            "positions": engine.positions,
            "steps": len(engine.steps),
        },  # fmt: skip
        "size": f"{width}x{height}",
        "decoder": type(decoder).__name__,
        "load_s": round(load_s, 3),
        "warmup_s": round(times.warmup_s, 3),
        "compile_s": round(compile_s, 3),
        "steady_chunks": len(times.dit_s),
        "frames_per_chunk": per_chunk,
        "dit_s_per_chunk": round(dit_s, 5),
        "decode_s_per_chunk": round(decode_s, 5),
        "write_s_per_chunk": round(statistics.median(times.write_s), 5) if s.write and times.write_s else None,
        "dit_fps": round(per_chunk / dit_s, 2),
        "e2e_fps": round(per_chunk / (dit_s + decode_s), 2),
        "time_to_first_frame_s": round(times.first_frame_s, 4),
        "new_video_first_frame_s": round(new_video_s, 4),
        "recache_s": round(recache_s, 4),
        "params": sum(p.numel() for p in bundle.dit.parameters()),
        "dit_weight_bytes": weight_bytes(bundle.dit),
        "kv_cache_bytes": 2 * gen.cache.k.numel() * gen.cache.k.element_size(),
    }
    if tracing:
        trace = torch.cuda.memory._snapshot()["device_traces"][device.index or 0]
        torch.cuda.memory._record_memory_history(enabled=None)
        result["memory_at_peak"] = {"allocated_before_tracing_bytes": untraced, "sites": peak_breakdown(trace)}
    return {**result, **_peak_memory(device)}


def _engine_config(s: BenchSettings, engine: EngineConfig) -> EngineConfig:
    if s.window is not None or s.sink is not None:
        engine = replace(engine, window=s.window or engine.window, sink=engine.sink if s.sink is None else s.sink)
    return replace(engine, positions=s.positions)


def _compile(s: BenchSettings, bundle: Bundle, engine: EngineConfig, latent, context, device) -> float:
    """Seconds to compile the DiT blocks and meet every shape of the stream once."""
    started = time.perf_counter()
    bundle.dit.compile_blocks()
    with attention_backend(s.sdpa):
        warm_up(bundle.dit, engine, latent, context)
    _sync(device)
    return time.perf_counter() - started


def _time_stream(s: BenchSettings, gen, pipeline: FramePipeline, context, writer, device) -> StreamTimes:
    """Run the pipeline over a new video, timing each chunk's DiT, decode and write.

    The first chunks (two at least with overlap, which keeps one chunk in flight) are warm-up: their wall time
    until the first steady chunk starts is reported apart. Timed chunks are those whose DiT ran in steady state;
    with overlap a chunk's decode time is the wait for the chunk before it.
    """
    chunks = -(-s.frames // gen.cfg.chunk_frames)
    warmup_chunks = max(s.warmup_chunks, 2) if s.overlap else s.warmup_chunks
    calls: list[DitCall] = []

    def dit_calls():
        for index in range(chunks):
            started = time.perf_counter()
            with attention_backend(s.sdpa):
                latents = gen.step()
            if not s.overlap:
                _sync(device)
            calls.append(DitCall(index, started, time.perf_counter()))
            yield LatentChunk(index, gen.emitted - latents.shape[1], latents, 0, False)

    times = StreamTimes()
    stream_started = time.perf_counter()
    gen.reset()
    with attention_backend(s.sdpa):
        gen.set_prompt(context)
    timed = -1
    for _, frames in pipeline.run(dit_calls()):
        decoded = time.perf_counter()
        if writer is not None:
            writer.write(frames)
        written = time.perf_counter()
        if times.first_frame_s is None:
            times.first_frame_s = decoded - stream_started
        latest = calls[-1]
        if latest.index == timed or latest.index < warmup_chunks:
            continue  # the last chunk collected after the input ended, or a warm-up chunk
        timed = latest.index
        times.dit_s.append(latest.done - latest.started)
        times.decode_s.append(decoded - latest.done)
        times.write_s.append(written - decoded)
        times.frames.append(len(frames))
    if writer is not None:
        writer.close(keep=False)
    steady = calls[warmup_chunks].started if len(calls) > warmup_chunks else time.perf_counter()
    times.warmup_s = steady - calls[0].started
    return times


def _time_switch_and_restart(s: BenchSettings, gen, pipeline: FramePipeline, context, device) -> tuple[float, float]:
    """Seconds for a recache at a prompt change, and to the first frame of a new video once warm."""
    _sync(device)
    started = time.perf_counter()
    with attention_backend(s.sdpa):
        gen.switch(context * -1, SwitchPolicy.RECACHE)
    _sync(device)
    recache_s = time.perf_counter() - started
    started = time.perf_counter()
    gen.reset()
    pipeline.reset()
    with attention_backend(s.sdpa):
        gen.set_prompt(context)
        latents = gen.step()
    pipeline(latents)
    return recache_s, time.perf_counter() - started


def _peak_memory(device: torch.device) -> dict:
    if device.type == "cuda":
        return {"peak_memory_bytes": torch.cuda.max_memory_allocated(device), "memory_kind": "CUDA max allocated"}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"peak_memory_bytes": peak, "memory_kind": "peak RSS of the variant's process"}


def environment(device: str) -> dict:
    """The header: what ran where."""
    env = {"torch": torch.__version__, "python": platform.python_version(), "device": device}
    if device.startswith("cuda") and torch.cuda.is_available():
        env["card"] = torch.cuda.get_device_name(torch.device(device))
        env["cuda"] = torch.version.cuda
    else:
        env["card"] = platform.processor() or platform.machine()
        env["cpu_threads"] = torch.get_num_threads()
    return env


def _ratios(results: list[dict]) -> None:
    ok = [r for r in results if "error" not in r]
    for r in ok:
        r["e2e_ratio"] = round(r["e2e_fps"] / ok[0]["e2e_fps"], 3)
        r["dit_ratio"] = round(r["dit_fps"] / ok[0]["dit_fps"], 3)


def run_all(
    base: BenchSettings,
    variants: list[str],
    timeout_s: float | None = None,
    on_variant: Callable[[dict], None] | None = None,
) -> dict:
    """Every variant in a fresh process, with speed ratios to the first; ``on_variant`` sees the report so far."""
    settings = [base.with_overrides(text) for text in variants]
    report = {"environment": environment(base.device), "measured": __doc__.split("\n\n")[1], "variants": []}
    for s in settings:
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "longlive_cli.bench", json.dumps(asdict(s))],
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired:
            result = {"variant": s.name, "error": [f"stopped after the {timeout_s:g} s limit per variant"]}
        else:
            if proc.returncode:
                result = {"variant": s.name, "error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
            else:
                result = json.loads(proc.stdout.strip().splitlines()[-1])
        report["variants"].append(result)
        _ratios(report["variants"])
        if on_variant is not None:
            on_variant(report)
    return report


if __name__ == "__main__":
    print(json.dumps(run_variant(BenchSettings(**json.loads(sys.argv[1])))))
