"""The ``longlive`` command: parse, call, print. Exit codes: 0 done, 1 bad input, 2 usage, 130 interrupted."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperArgument, TyperGroup

from . import __version__, interrupts
from .bundle import EMBEDDED, load_bundle, read_spec, read_tokenizer
from .checkpoints import CheckpointError
from .download import LONGLIVE, MODELS
from .extras import MissingExtra
from .finish import FinishError, Interrupted
from .models.rope import MAX_POSITIONS
from .notices import setting_warnings, vocabulary_warnings
from .outputs import OutputError, draw_seed, plan_outputs
from .quantize import MODES, QuantizeError, weight_bytes
from .render import RenderError, RenderSettings, positions_for, render
from .report import print_bench, print_suite, print_table, print_video_metrics
from .runtime import DTYPES, BundleCache, model_of, rank_share, resolve_device, resolve_dtype
from .terminal import markup_safe, printable
from .timeline import (
    MAX_SECONDS,
    MAX_SEED,
    NATIVE,
    POSITION_MODES,
    TimelineError,
    load_timeline,
    plan_changes,
    single_prompt_timeline,
)
from .train.cli import train


class _Commands(TyperGroup):
    """Help shows a placeholder named after each option (MODEL, SEED), never a Python type (<str>, <int>)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for command in (self, *self.commands.values()):
            _name_placeholders(command)


def _name_placeholders(command) -> None:
    for param in command.params:
        if isinstance(param, TyperArgument):
            param.metavar = param.name.upper()
            param.display_type_rich = lambda ctx: None  # the argument's own name already stands there
        elif getattr(param, "is_flag", False):
            param.metavar = ""
        elif param.metavar is None:
            param.metavar = param.name.upper() + ("..." if getattr(param, "multiple", False) else "")
    make_help_option = command.get_help_option

    def help_option(ctx):
        option = make_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = help_option


app = typer.Typer(
    cls=_Commands,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Real-time, interactive, long video generation with LongLive-family models.",
)
err = Console(stderr=True, highlight=False)
out = Console(highlight=False)
app.command("train")(train)

BAD_INPUT = 1
DEVICES = ("auto", "cpu", "cuda")
INTERRUPTED = 130
USER_ERRORS = (
    TimelineError,
    CheckpointError,
    RenderError,
    QuantizeError,
    OutputError,
    FinishError,
    MissingExtra,
    OSError,
)


def _show_version(value: bool) -> None:
    if value:
        out.print(f"longlive-cli {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Real-time, interactive, long video generation with LongLive-family models."""


def fail(message: str) -> typer.Exit:
    """Print a located error and give the exit for bad input."""
    report(message)
    return typer.Exit(BAD_INPUT)


def report(message: object) -> None:
    """Print an error, one line per problem, with what came from files or requests escaped for the terminal."""
    for line in str(message).splitlines() or [""]:
        err.print(f"[bold red]error:[/] {markup_safe(line)}", soft_wrap=True)


def _device(device: str) -> str:
    """``--device``, checked before anything is loaded: a usage error names the choices."""
    if device not in DEVICES:
        message = f"choose one of {', '.join(DEVICES)}, got {printable(device)!r}"
        raise typer.BadParameter(message, param_hint="--device")
    return resolve_device(device)


POSITIONS_HELP = "RoPE time positions: auto (relative past the 1024-frame table) | absolute | relative"


def _dtype(dtype: str | None, device: str):
    try:
        return resolve_dtype(dtype, device)
    except ValueError:
        raise typer.BadParameter(f"choose one of {', '.join(DTYPES)}", param_hint="--dtype") from None


def _check_positions(positions: str | None) -> None:
    if positions is not None and positions not in POSITION_MODES:
        raise typer.BadParameter(
            f"choose one of {', '.join(POSITION_MODES)}, got {positions!r}", param_hint="--positions"
        )


def _parse_size(size: str | None) -> tuple[int, int] | None:
    if size is None:
        return None
    m = re.fullmatch(r"\s*(\d{1,6})\s*[xX]\s*(\d{1,6})\s*", size)
    if not m:
        raise typer.BadParameter(f"expected WxH such as 128x128, got {printable(size[:40])!r}", param_hint="--size")
    try:
        NATIVE.check_size((int(m[1]), int(m[2])))
    except ValueError as e:
        raise typer.BadParameter(f"{printable(size[:40])!r}: {e}", param_hint="--size") from None
    return int(m[1]), int(m[2])


@app.command("render")
def render_cmd(
    timelines: Annotated[list[Path] | None, typer.Argument(help="Timeline YAML files, rendered in order.")] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "-o", "--output", help="Output MP4, or a folder (ends in /, or exists; always with several timelines)."
        ),
    ] = None,
    model: Annotated[str | None, typer.Option(help="'tiny', a model directory, or a converted .safetensors.")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    dtype: Annotated[
        str | None, typer.Option(help="float32 | bf16 | fp16 (default: bf16 on GPU, float32 on CPU)")
    ] = None,
    quantize: Annotated[str | None, typer.Option(help="none | int8 | fp8 (overrides the timeline)")] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            min=-1, max=MAX_SEED, help="Noise seed (overrides the timeline); -1 draws one, printed and recorded."
        ),
    ] = None,
    window: Annotated[int | None, typer.Option(help="Attention window in latent frames, sink included.")] = None,
    sink: Annotated[int | None, typer.Option(help="Frame-sink size in latent frames.")] = None,
    positions: Annotated[str | None, typer.Option(help=POSITIONS_HELP + " (overrides the timeline)")] = None,
    prompt: Annotated[str | None, typer.Option(help="Render one prompt instead of timelines.")] = None,
    duration: Annotated[
        str | None, typer.Option(help="Length for --prompt (default 10s): 10s, 1m30s, 1h, 2:00:00, 160f ...")
    ] = None,
    size: Annotated[str | None, typer.Option(help="WxH, multiples of 16 (overrides the timeline).")] = None,
    decoder: Annotated[
        str, typer.Option(help="auto | wan (exact) | fast (TAEHV-class) | a taew2_1 .pth/.safetensors file")
    ] = "auto",
    compile: Annotated[
        bool, typer.Option(help="torch.compile the DiT blocks first (pays off on a GPU; compiling takes a while).")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    progress: Annotated[str, typer.Option(help="rich | json | none")] = "rich",
) -> None:
    """Render timelines (or one --prompt) to MP4, streaming each chunk to disk as it is made."""
    if bool(timelines) == (prompt is not None):
        raise typer.BadParameter("give timeline files or --prompt, not both and not neither")
    if timelines and duration is not None:
        raise typer.BadParameter(
            "goes with --prompt; a timeline's length is its `duration:` key", param_hint="--duration"
        )
    if progress not in ("rich", "json", "none"):
        raise typer.BadParameter("choose rich, json or none", param_hint="--progress")
    if quantize is not None and quantize not in MODES:
        raise typer.BadParameter(f"choose one of {', '.join(MODES)}", param_hint="--quantize")
    _check_positions(positions)
    wh = _parse_size(size)
    interrupts.install()
    try:
        if prompt is not None:
            jobs = [
                single_prompt_timeline(
                    prompt, duration or "10s", model=model, window=window, sink=sink, positions=positions
                )
            ]
        else:
            jobs = [load_timeline(p) for p in timelines]
        seeds = [draw_seed(seed, job.seed) for job in jobs]
        outputs = plan_outputs(jobs, seeds, output, prompt)
        rank, work = rank_share(list(zip(jobs, seeds, outputs, strict=True)))
        dev = _device(device)
        bundles = BundleCache(dev, _dtype(dtype, dev), compile, say=_note)
    except USER_ERRORS as e:
        raise fail(str(e)) from None
    failures = 0
    for timeline, job_seed, target in work:
        try:
            source = model or model_of(timeline)
            overrides = {
                "seed": job_seed,
                "window": window,
                "sink": sink,
                "size": wh,
                "quantize": quantize,
                "positions": positions,
            }
            RenderSettings.for_spec(timeline, read_spec(str(source)), bundles.device, bundles.dtype, **overrides)
            bundle = bundles.get(source, quantize or timeline.quantize)
            settings = RenderSettings.resolve(timeline, bundle, **overrides)
            bundles.warm_up(bundle, settings)
            on_event = _progress(progress, quiet, target, rank)
            dec = bundles.decoder(bundle, decoder)
            result = render(timeline, bundle, target, settings, overwrite=overwrite, events=on_event, decoder=dec)
        except Interrupted as e:
            err.print(f"[yellow]interrupted:[/] {markup_safe(e.finished.describe())}", soft_wrap=True)
            raise typer.Exit(INTERRUPTED) from None
        except (KeyboardInterrupt, *USER_ERRORS) as e:
            if isinstance(e, KeyboardInterrupt) or interrupts.received():
                err.print(f"[yellow]interrupted[/] before {markup_safe(str(target))} was started; nothing was written")
                raise typer.Exit(INTERRUPTED) from None
            report(e)
            failures += 1
            continue
        if not quiet and progress != "json":
            timings = result["timings"]
            err.print(
                f"[green]wrote[/] {markup_safe(str(target))} (seed {settings.seed}, "
                f"{result['result']['frames_written']} frames, {timings['fps']} fps, "
                f"{timings['realtime_factor']}x real time)",
                soft_wrap=True,
            )
    if failures:
        raise typer.Exit(BAD_INPUT)


def _progress(kind: str, quiet: bool, target: Path, rank: int):
    """The progress listener; warnings reach stderr whatever the display, unless --quiet."""
    if quiet:
        return None
    if kind == "rich":
        from .progress import RichProgress

        return RichProgress(err, label=target.name)
    shown = None
    if kind == "json":
        from .progress import JsonProgress

        shown = JsonProgress(output=str(target), rank=rank)

    def listen(event: dict) -> None:
        if event["event"] == "warning":
            _warn(event["message"])
        if shown is not None:
            shown(event)

    return listen


def _note(message: str) -> None:
    err.print(f"[dim]{markup_safe(message)}[/]", soft_wrap=True)


def _warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {markup_safe(message)}", soft_wrap=True)


@app.command()
def check(
    timelines: Annotated[list[Path], typer.Argument(help="Timeline YAML files to validate.")],
) -> None:
    """Validate timelines without generating: located errors, and where each prompt change will land."""
    failures = 0
    for path in timelines:
        try:
            timeline = load_timeline(path)
            spec = read_spec(str(model_of(timeline)))
            chunk = spec.engine.chunk_frames
            tokenizer = read_tokenizer(str(model_of(timeline)))
            positions = positions_for(timeline, chunk, MAX_POSITIONS)
            device = resolve_device("auto")
            RenderSettings.for_spec(timeline, spec, device, resolve_dtype(None, device))
        except (*USER_ERRORS, UnicodeError) as e:
            report(e)
            failures += 1
            continue
        plan = plan_changes(timeline, chunk)
        title = f"{markup_safe(str(path))}: {timeline.duration:g} s, {plan.video_frames} frames at {timeline.fps} fps"
        table = Table(title=f"{title}, {positions} positions")
        for col in ("#", "requested", "lands at", "switch", "prompt"):
            table.add_column(col)
        for i, (change, landing) in enumerate(zip(timeline.prompts, plan.changes, strict=True)):
            policy = timeline.policy_at(i).value if i else "-"
            table.add_row(str(i), f"{change.at:g} s", f"{landing.landed_s:.3f} s", policy, markup_safe(change.text))
        print_table(table, out)
        size, window = timeline.size or spec.size, timeline.window or spec.engine.window
        notes = [*setting_warnings(spec, size, timeline.fps, window)]
        notes += vocabulary_warnings(tokenizer, timeline, spec) if tokenizer is not None else []
        for w in [*plan.warnings, *notes]:
            _warn(w)
    if failures:
        raise typer.Exit(BAD_INPUT)


@app.command()
def info(
    model: Annotated[str, typer.Argument(help="'tiny', a model directory, or a converted file.")] = EMBEDDED,
) -> None:
    """Show what a model is: architecture, sizes, native settings."""
    try:
        bundle = load_bundle(model)
    except USER_ERRORS as e:
        raise fail(str(e)) from None
    spec = bundle.spec
    params = sum(p.numel() for p in bundle.dit.parameters())
    table = Table(title=f"{spec.name} ({bundle.source})", show_header=False)
    rows = [
        (
            "DiT",
            f"{params / 1e6:.1f} M params, dim {spec.dit.dim}, {spec.dit.num_layers} layers, "
            f"{spec.dit.num_heads} heads, {weight_bytes(bundle.dit) / 2**20:.1f} MiB",
        ),
        ("VAE", f"Wan layout, width {spec.vae.dim}, {sum(p.numel() for p in bundle.vae.parameters()) / 1e6:.2f} M"),
        ("text encoder", f"umT5 layout, dim {spec.text.dim}, {spec.text.num_layers} layers, {spec.text_len} tokens"),
        ("native", f"{spec.size[0]}x{spec.size[1]} at {spec.fps} fps"),
        (
            "streaming",
            f"chunks of {spec.engine.chunk_frames} latent frames, window {spec.engine.window} "
            f"(sink {spec.engine.sink}), {len(spec.engine.steps)} steps",
        ),
    ]
    for k, v in rows:
        table.add_row(k, v)
    print_table(table, out)


@app.command()
def convert(
    paths: Annotated[list[Path], typer.Argument(help="Download folder(s): Wan2.1-T2V-1.3B and LongLive's files.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The .safetensors file to write.")],
    dtype: Annotated[str, typer.Option(help="bf16 | float32")] = "bf16",
    ema: Annotated[bool, typer.Option(help="Use generator_ema when the checkpoint has it.")] = False,
    lora_alpha: Annotated[float | None, typer.Option(help="LoRA alpha (default: the rank, as LongLive ships).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
) -> None:
    """Merge Wan + LongLive generator + LoRA into one pickle-free file that loads fast."""
    from .bundle import convert as run_convert

    if output.exists() and not overwrite:
        raise fail(f"{output}: already exists; pass --overwrite to replace it")
    try:
        spec = run_convert(list(paths), output, dtype=_dtype(dtype, "cpu"), prefer_ema=ema, lora_alpha=lora_alpha)
    except USER_ERRORS as e:
        raise fail(str(e)) from None
    out.print(
        f"wrote {output} ({output.stat().st_size / 2**30:.2f} GiB, {spec.name}) and {output.with_suffix('.json')}"
    )


@app.command()
def download(
    model: Annotated[str, typer.Argument(help=f"A hub id: {' or '.join(MODELS)}.")] = LONGLIVE,
    dry_run: Annotated[bool, typer.Option(help="Only say how much would be downloaded.")] = False,
) -> None:
    """Fetch the released weights into the Hugging Face cache (only the files longlive reads; resumable)."""
    from .download import fetch

    try:
        roots = fetch(model, say=lambda line: err.print(markup_safe(line), soft_wrap=True), dry_run=dry_run)
    except USER_ERRORS as e:
        raise fail(str(e)) from None
    if roots:
        out.print(f"ready: longlive render show.yaml --model {model}")
        for root in roots:
            out.print(f"  {root}", soft_wrap=True)


@app.command()
def bench(
    model: Annotated[str | None, typer.Option(help="'tiny', a model directory, or a converted file.")] = None,
    preset: Annotated[
        str | None, typer.Option(help="Architecture preset with random weights instead of a model: longlive-1.3b")
    ] = None,
    random_weights: Annotated[bool, typer.Option(help="Required with --preset: say that weights are random.")] = False,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    dtype: Annotated[str | None, typer.Option(help="float32 | bf16 | fp16")] = None,
    frames: Annotated[int, typer.Option(help="Latent frames generated per variant.")] = 120,
    size: Annotated[str | None, typer.Option(help="WxH (default: the model's).")] = None,
    variants: Annotated[
        list[str] | None,
        typer.Option(
            "--variants",
            "-V",
            help="Repeat: 'base' or key=value,... over window, sink, quantize, "
            "decoder, dtype, compile, size, sdpa, decode_step, channels_last, overlap, trace_memory. "
            "Ratios are to the first.",
        ),
    ] = None,
    write: Annotated[bool, typer.Option(help="Also time MP4 writing (reported apart).")] = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write all figures here (rewritten after each variant).")
    ] = None,
    variant_timeout: Annotated[
        float | None, typer.Option(help="Seconds allowed per variant; a slower one is reported as stopped.")
    ] = None,
) -> None:
    """FPS, latency and memory of the streaming pipeline, variants side by side."""
    from .bench import BenchSettings, run_all

    if (preset is None) == (model is None) and not (preset is None and model is None):
        raise typer.BadParameter("give --model or --preset, not both")
    if preset is not None and not random_weights:
        raise typer.BadParameter("--preset builds random weights; add --random-weights to confirm")
    if size is not None:
        _parse_size(size)
    try:
        dev = _device(device)
        dt = {"float32": "float32", "bfloat16": "bf16", "float16": "fp16"}[str(_dtype(dtype, dev))[6:]]
    except USER_ERRORS as e:
        raise fail(str(e)) from None
    base = BenchSettings(model=model, preset=preset, device=dev, dtype=dt, frames=frames, size=size, write=write)

    def save(report: dict) -> None:
        last = report["variants"][-1]
        done = f"failed: {' '.join(last['error'])}" if "error" in last else f"{last['e2e_fps']:.1f} fps end to end"
        err.print(f"[dim]{markup_safe(last['variant'])}: {markup_safe(done)}[/]")
        if json_out is not None:
            json_out.write_text(json.dumps(report, indent=2) + "\n")

    try:
        report = run_all(base, variants or ["base"], variant_timeout, save)
    except ValueError as e:
        raise fail(str(e)) from None
    print_bench(report, out)
    if any("error" in v for v in report["variants"]):
        raise typer.Exit(BAD_INPUT)


@app.command()
def live(
    prompt: Annotated[
        str | None, typer.Argument(help="The first prompt (else the first one typed or sent from the page).")
    ] = None,
    model: Annotated[str, typer.Option(help="'tiny', a model directory, or a converted .safetensors.")] = EMBEDDED,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    dtype: Annotated[
        str | None, typer.Option(help="float32 | bf16 | fp16 (default: bf16 on GPU, float32 on CPU)")
    ] = None,
    quantize: Annotated[str, typer.Option(help="none | int8 | fp8")] = "none",
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Noise seed.")] = 0,
    size: Annotated[str | None, typer.Option(help="WxH, multiples of 16 (default: the model's).")] = None,
    decoder: Annotated[str, typer.Option(help="auto | wan | fast | a taew2_1 file")] = "auto",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port on 127.0.0.1 for the page (0: any free).")] = 8765,
    record: Annotated[
        Path | None, typer.Option(help="Write the video to this MP4, with a timeline .yaml that replays it.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing recording.")] = False,
    duration: Annotated[
        str | None, typer.Option(help="Length limit: 90s, 10m, 1h, 2:00:00 ... (default: until stopped, 24h at most)")
    ] = None,
    positions: Annotated[str, typer.Option(help=POSITIONS_HELP)] = "auto",
    pace: Annotated[bool, typer.Option(help="Generate at the video's frame rate (--no-pace: flat out).")] = True,
    keep_running: Annotated[bool, typer.Option(help="Go on after the end of standard input.")] = False,
    compile: Annotated[
        bool, typer.Option(help="torch.compile the DiT blocks before the first frame (pays off on a GPU).")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the addresses and errors.")] = False,
) -> None:
    """Generate live, steered from a page on 127.0.0.1 or from stdin (one prompt a line; :pause :policy :quit)."""
    from .live.app import LiveOptions, run_live
    from .live.commands import MessageError, clean_text

    if quantize not in MODES:
        raise typer.BadParameter(f"choose one of {', '.join(MODES)}", param_hint="--quantize")
    _check_positions(positions)
    wh = _parse_size(size)
    interrupts.install()
    try:
        first = None if prompt is None else clean_text(prompt)
        limit = duration if duration is not None else MAX_SECONDS
        timeline = single_prompt_timeline(first or "live", limit, model=model, seed=seed, positions=positions)
        dev = _device(device)
        bundles = BundleCache(dev, _dtype(dtype, dev), compile, say=_note)
        bundle = bundles.get(model, quantize)
        settings = RenderSettings.resolve(timeline, bundle, size=wh, positions=positions)
        bundles.warm_up(bundle, settings)
        options = LiveOptions(
            max_frames=timeline.frames(),
            prompt=first,
            port=port,
            record=record,
            overwrite=overwrite,
            pace=pace,
            keep_running=keep_running,
            model=model,
            quantize=quantize,
            decoder=decoder,
        )
        stdin = sys.stdin
        if stdin is not None and hasattr(stdin, "reconfigure"):
            stdin.reconfigure(errors="replace")
        session = run_live(
            bundle,
            settings,
            options,
            decoder=bundles.decoder(bundle, decoder),
            stdin=stdin,
            say=lambda line: err.print(markup_safe(line), soft_wrap=True),
            events=None if quiet else _live_event,
        )
    except KeyboardInterrupt:
        where = f"; {record} holds the video so far" if record else ""
        err.print(f"[yellow]interrupted[/]{markup_safe(where)}")
        raise typer.Exit(INTERRUPTED) from None
    except (*USER_ERRORS, MessageError) as e:
        raise fail(str(e)) from None
    if session.error is not None:
        raise fail(f"live generation failed: {session.error}")
    if not quiet:
        _live_summary(session)


def _live_event(event: dict) -> None:
    """One line per prompt change as it lands."""
    if event["event"] == "switch":
        lag = "" if event["lag_s"] is None or not event["prompt"] else f" (lag {event['lag_s']:.2f} s)"
        policy = event["policy"] or "start"
        err.print(f"[cyan]{event['landed_s']:8.2f} s[/] {policy}: {markup_safe(event['text'])}{lag}", soft_wrap=True)
    elif event["event"] in ("pause", "resume"):
        err.print(f"[yellow]{event['event']}[/]")


def _live_summary(session) -> None:
    t = session.summary()["timings"]
    lag = "" if t["lag_median_s"] is None else f", lag median {t['lag_median_s']:.2f} s"
    err.print(
        f"[green]stopped[/] ({session.stopped_by}) after {session.frames / session.settings.fps:.2f} s of video, "
        f"{len(session.changes)} prompts{lag}, {t['realtime_factor'] or 0:.1f}x real time, {t['stalls']} stalls"
    )
    if session.sidecar is not None:
        files = f"{session.sidecar['output']} and {session.sidecar['timeline']}"
        err.print(f"[green]recorded[/] {markup_safe(files)}; replay: {markup_safe(session.sidecar['replay'])}")


@app.command("eval")
def eval_cmd(
    video: Annotated[Path | None, typer.Argument(help="An MP4 rendered by `longlive render`.")] = None,
    timeline: Annotated[
        Path | None, typer.Option(help="The timeline the video was rendered from (default: as its sidecar says).")
    ] = None,
    suite: Annotated[str | None, typer.Option(help="'shapes': render and score the held-out suite.")] = None,
    model: Annotated[str, typer.Option(help="Model for --suite.")] = EMBEDDED,
    policy: Annotated[str, typer.Option(help="Switch policy for --suite: recache | keep | clear")] = "recache",
    long: Annotated[bool, typer.Option(help="Include the 240 s runs in --suite.")] = True,
    part: Annotated[
        list[str] | None,
        typer.Option(help="Only this suite part, by name (repeatable), e.g. 'long 240 s'; 'long 20 min' runs only so."),
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write every figure here.")] = None,
    drift_share: Annotated[
        float, typer.Option(min=0.01, max=0.5, help="For a VIDEO: the first and last share compared for drift.")
    ] = 0.2,
) -> None:
    """ShapesWorld metrics: adherence, switch latency, continuity and drift, for one video or a model."""
    from .engine import SwitchPolicy
    from .evaluate import SUITE, EvalError, eval_video, run_suite, timeline_of

    names = [p.name for p in SUITE]
    if any(name not in names for name in part or ()):
        bad = next(name for name in part if name not in names)
        raise typer.BadParameter(f"unknown part '{bad}'; the parts are: {', '.join(names)}", param_hint="--part")
    if (video is None) == (suite is None):
        raise typer.BadParameter("give a VIDEO (with --timeline, or its sidecar beside it), or --suite shapes")
    if suite is not None and suite != "shapes":
        raise typer.BadParameter("the only suite is 'shapes'", param_hint="--suite")
    try:
        switch = SwitchPolicy.parse(policy)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--policy") from None
    try:
        if video is not None:
            report = eval_video(video, timeline_of(video) if timeline is None else load_timeline(timeline), drift_share)
            for w in report["warnings"]:
                _warn(w)
            print_video_metrics(report, out)
        else:
            bundle = load_bundle(model)
            report = run_suite(bundle, switch, long=long, parts=part or ())
            print_suite(report, bundle.spec.name, out)
    except (*USER_ERRORS, EvalError) as e:
        raise fail(str(e)) from None
    if json_out is not None:
        json_out.write_text(json.dumps(report, indent=2) + "\n")


def main() -> None:
    """Console entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(INTERRUPTED)
