"""Export a finished run as the embedded ``tiny`` model: one bundle file in the package and its model card."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import torch

from longlive_cli.bundle import ModelSpec, load_converted, save_bundle
from longlive_cli.engine import EngineConfig
from longlive_cli.evaluate import CHANGES_PART, HELD_OUT_PART, LONG_PART, SEEN_PART
from longlive_cli.train.artifacts import FINAL, read_summary, training_device
from longlive_cli.train.decoder import load_fast_decoder
from longlive_cli.train.evaluate import evaluate
from longlive_cli.train.teacher import load_dit_and_text
from longlive_cli.train.vae import load_vae
from longlive_cli.world.grammar import HELD_OUT
from longlive_cli.world.metrics import misread_text
from longlive_cli.world.scene import FPS
from longlive_cli.world.tokenizer import build_tokenizer, understood_words

MAX_BYTES = 30 * 2**20
BUNDLE = "tiny.safetensors"
CARD = "MODEL_CARD.md"
STAGES = ("vae", "decoder", "teacher", "student")
GENERATORS = ("student", "long")


def generator_stage(run_dir: Path, choice: str | None = None) -> str:
    """The stage whose DiT ships: ``choice``, else ``long`` once long tuning has finished, else ``student``."""
    if choice is not None:
        if choice not in GENERATORS:
            raise ValueError(f"generator: choose one of {', '.join(GENERATORS)}, got '{choice}'")
        return choice
    return "long" if (Path(run_dir) / "long" / FINAL).is_file() else "student"


def package_assets() -> Path:
    """The package's assets folder, where ``bundle.embedded_path`` looks."""
    return Path(str(resources.files("longlive_cli") / "assets"))


def build_spec(run_dir: Path, generator: str = "student") -> tuple[ModelSpec, dict[str, dict[str, torch.Tensor]]]:
    """The tiny model's spec and state dicts from the run's vae, decoder and generator (student or long) results."""
    run_dir = Path(run_dir)
    vae = load_vae(run_dir)
    taehv, taehv_cfg = load_fast_decoder(run_dir)
    dit, text, config = load_dit_and_text(run_dir / generator / FINAL)
    engine = EngineConfig(**{**config["engine"], "steps": tuple(config["engine"]["steps"])})
    size = read_summary(run_dir / "student")["recipe"]["size"]
    spec = ModelSpec(
        name="tiny",
        dit=dit.cfg,
        vae=vae.cfg,
        text=text.model.cfg,
        text_len=config["text_len"],
        engine=engine,
        fps=FPS,
        size=(size, size),
        fast_decoder=taehv_cfg,
        decoder="fast",
        vocabulary=understood_words(),
        sizes=((size, size),),
    )
    states = {
        "dit": dit.state_dict(),
        "vae": vae.state_dict(),
        "text": text.model.state_dict(),
        "fast": taehv.state_dict(),
    }
    return spec, states


def write_bundle(path: Path, spec: ModelSpec, states: dict[str, dict[str, torch.Tensor]]) -> torch.dtype:
    """Half precision: half the bytes each shipped version adds to every clone, scoring within a point of float32."""
    dtype = torch.float16
    save_bundle(
        path,
        spec,
        states["dit"],
        states["vae"],
        states["text"],
        build_tokenizer().to_str(),
        dtype=dtype,
        fast_decoder=states["fast"],
    )
    if path.stat().st_size > MAX_BYTES:
        raise ValueError(f"{path}: {path.stat().st_size / 2**20:.1f} MiB exceeds the {MAX_BYTES // 2**20} MiB budget")
    return dtype


CARD_COLUMNS = (
    "adherence_shape",
    "adherence_color",
    "adherence_size",
    "adherence_motion",
    "adherence_background",
    "adherence_all",
    "latency_frames_median",
    "continuity_median",
)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def chain_s(summaries: dict[str, dict]) -> float:
    """Stage time on two processes as train_tiny.sh runs them: the decoder beside the student."""
    wall = {name: summary["wall_s"] for name, summary in summaries.items()}
    beside = max(wall.pop("decoder"), wall.pop("student"))
    return beside + sum(wall.values())


def model_card(
    spec: ModelSpec,
    summaries: dict[str, dict],
    scores: dict,
    command: str,
    total_s: float | None,
    generator: str = "student",
    report: dict | None = None,
) -> str:
    """Markdown: what the model is, how it was made (command, steps, wall time), and how it scores."""
    s = summaries
    dit, vae, text = spec.dit, spec.vae, spec.text
    rows = "\n".join(
        f"| {name} | {summary['steps']} | {_minutes(summary['wall_s'])} | {summary['params'] / 1e6:.2f} M | "
        f"{summary.get('device', training_device())} |"
        for name, summary in s.items()
    )
    table = "\n".join(
        f"| {part} | " + " | ".join(_cell(row.get(key)) for key in CARD_COLUMNS) + " |"
        for part, row in scores["rows"].items()
    )
    total = (
        f"{_minutes(sum(summary['wall_s'] for summary in s.values()))} for the {len(s)} stages, "
        f"{_minutes(chain_s(s))} end to end with the decoder beside the student"
    )
    if total_s:
        total += f"; the last run of the command took {_minutes(total_s)} (finished stages only rewrite their results)"
    return f"""# tiny: the embedded ShapesWorld model

A LongLive-configured causal video model trained from scratch on ShapesWorld (one coloured shape moving on a flat
background), small enough to render faster than real time on a laptop CPU. It knows only the ShapesWorld
vocabulary; `longlive render timelines/demo.yaml` uses it by default.

| part | what |
|---|---|
| DiT | Wan layout, dim {dit.dim}, {dit.num_layers} layers, {dit.num_heads} heads, FFN {dit.ffn_dim}, \
{s["student"]["params"] / 1e6:.2f} M params |
| text encoder | umT5 layout, dim {text.dim}, {text.num_layers} layers, word-level vocabulary of {text.vocab}, \
{spec.text_len} tokens |
| VAE | Wan layout, width {vae.dim}, widths x{list(vae.dim_mult)}, {vae.num_res_blocks} res block per stage, \
{vae.z_dim} latent channels, 8x space, 4x time, its own latent mean/std |
| fast decoder | TAEHV layout, widths {list(spec.fast_decoder.decoder_widths)} (the default decoder) |
| video | {spec.size[0]}x{spec.size[1]} at {spec.fps} fps |
| streaming | chunks of {spec.engine.chunk_frames} latent frames, window {spec.engine.window} with sink \
{spec.engine.sink}, warped steps {list(spec.engine.steps)}, KV recache at prompt changes |

## How it was made

```
{command or "scripts/train_tiny.sh"}
```

The recipes are `recipes/tiny/*.yaml`; each stage resumes from its checkpoint when the command is run again.
Wall time: {total}.

| stage | steps | wall time | params | on |
|---|---|---|---|---|
{rows}

- **latent space**: {_space_line(vae.z_dim)}
- **vae**: Wan-layout encoder regresses that space and its decoder reconstructs frames from it (latent noise \
{s["vae"]["recipe"]["latent_noise"]}, object pixels weighted {s["vae"]["recipe"]["foreground_weight"]}x), on random \
{s["vae"]["recipe"]["crop"]}px crops of {s["vae"]["recipe"]["frames"]}-frame clips. Latent RMSE of its encoder: \
{s["decoder"]["latent_rmse_wan_encoder"]}; reconstruction PSNR of its decoder: {s["decoder"]["psnr_wan_decoder"]} dB.
- **decoder**: TAEHV decoder from the latents (+ noise {s["decoder"]["recipe"]["latent_noise"]}\
) to frames, object pixels weighted \
{s["decoder"]["recipe"]["foreground_weight"]}x; its encoder to the latents (latent RMSE \
{s["decoder"]["latent_rmse_fast_encoder"]}). Reconstruction PSNR \
{s["decoder"]["psnr_fast_decoder"]} dB{_ceiling(s["decoder"])}. This is the decoder `tiny` renders with.
- **data**: {s["teacher"]["recipe"]["pool"]["clips"]} pre-rendered clips of \
{s["teacher"]["recipe"]["pool"]["latent_frames"]} latent frames, {s["teacher"]["recipe"]["pool"]["change_prob"]:.0%} \
with one prompt change on a chunk boundary; every object starts at the frame centre (heading right or down, \
circling clockwise), so a prompt's first chunk is determined by its text; fresh wording every batch. Latent cells \
on and around the object weigh {s["teacher"]["recipe"]["foreground_weight"]}x in the DiT losses.
- **teacher**: bidirectional flow matching (shift {s["teacher"]["recipe"]["shift"]}) on \
{s["teacher"]["recipe"]["frames"]}-latent-frame windows of the clips \
({s["teacher"]["recipe"].get("offset_prob", 0):.0%} starting mid-clip, first latent re-made as a lone frame's), \
{s["teacher"]["recipe"].get("uncond_prob", 0):.0%} with the empty prompt (for guidance); {_text_line(s["teacher"])}.
- **student**: initialised from the teacher; {s["student"]["objective"]}, on whole \
{s["student"]["recipe"]["pool"]["latent_frames"]}-latent-frame clips with chunk-aligned prompt changes and KV \
recache.
{_long_line(s.get("long"), generator == "long")}

## Evaluation

The project's ShapesWorld suite (`longlive eval`'s, without its 240 s runs): 20 s renders of the held-out
combinations, {HELD_OUT}, and ("seen") of combinations the model trained on, with new seeds and wording, read back
by the pixel detector. Adherence is the share of steady frames whose
detected attribute matches the active prompt; latency is in frames after a change; continuity
is the centroid jump at a change over the median per-frame motion (1 is seamless). Rendering runs at \
{scores["realtime_factor"]}x real time on this CPU (DiT + fast decoder, one timeline with changes).

| suite part | {" | ".join(CARD_COLUMNS)} |
|---|{"---|" * len(CARD_COLUMNS)}
{table}

{long_tuning_section(report)}

{limits_section(scores["rows"], scores.get("readings", {}).get(HELD_OUT_PART))}
"""


REPORT = "long_tuning.json"  # in the run folder, from scripts/long_tuning_report.py --json
POLICIES = ("recache", "keep", "clear")
REPORT_ROWS = (
    ("before", "recache", LONG_PART),
    ("after", "recache", LONG_PART),
    ("before", "recache", CHANGES_PART),
    ("after", "recache", CHANGES_PART),
    ("after", "keep", CHANGES_PART),
    ("after", "clear", CHANGES_PART),
    ("after", "keep", LONG_PART),
    ("after", "clear", LONG_PART),
)


def report_key(model: str, policy: str, part: str) -> str:
    """A figure's key in the long-tuning report: which model, which switch policy, which suite part."""
    return f"{model} / {policy} / {part}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _seconds(frames: float | None) -> str:
    return "-" if frames is None else f"{frames / FPS:.2f}"


def _policies(report: dict, part: str) -> str:
    """Which switch policy scores highest, settles fastest and moves the object furthest at a change."""
    rows = {policy: report[report_key("after", policy, part)] for policy in POLICIES}
    alls = {policy: row["adherence_all"] for policy, row in rows.items()}
    timed = {p: r["latency_frames_median"] for p, r in rows.items() if r["latency_frames_median"] is not None}
    moved = {p: r["continuity_median"] for p, r in rows.items() if r["continuity_median"] is not None}
    line = f"On {part}, {max(alls, key=alls.get)} scores highest ({_pct(max(alls.values()))} %)"
    if timed:
        line += f", {min(timed, key=timed.get)} settles fastest ({_seconds(min(timed.values()))} s)"
    if moved and max(moved.values()) > min(moved.values()):
        line += f", {max(moved, key=moved.get)} jumps furthest at a change (continuity {max(moved.values()):.2f})"
    return line + f"; the three policies lie within {100 * (max(alls.values()) - min(alls.values())):.1f} points."


def long_tuning_section(report: dict | None) -> str:
    """The before/after and switch-policy table from the report's figures, or the command that measures them."""
    how = (
        "`python scripts/long_tuning_report.py BEFORE AFTER --json RUN/long_tuning.json` on the student before long "
        "tuning and the long-tuned model: the suite's 240 s runs (4 runs, five changes each, the last bringing back "
        "the first prompt in the same words) and its 20 s runs with three changes"
    )
    if report is None:
        return f"## Long tuning and switch policies\n\nNot measured for this run; {how}, then export again."
    rows = []
    for model, policy, part in REPORT_ROWS:
        row = report[report_key(model, policy, part)]
        name = "before long tuning" if model == "before" else "after"
        rows.append(
            f"| {name}, {policy}, {part} | {_pct(row['adherence_all'])} | {_pct(row['drift_first_all'])} → "
            f"{_pct(row['drift_last_all'])} | {_seconds(row['latency_frames_median'])} | "
            f"{row['unsettled']} of {row['changes']} | {_cell(row['continuity_median'])} |"
        )
    table = "\n".join(rows)
    return f"""## Long tuning and switch policies

{how}; all-attribute adherence, its first and last 20 %, median latency, changes that never settle and median
continuity.

| model, policy, part | all % | first → last 20 % | latency (s) | unsettled | continuity |
|---|---|---|---|---|---|
{table}

{_policies(report, CHANGES_PART)} {_policies(report, LONG_PART)}"""


def limits_section(rows: dict, readings: dict | None = None) -> str:
    """Where the model falls short, in the suite's own figures; with the held-out part's ``readings``, what its
    misses were drawn as."""
    held, seen, changes = rows[HELD_OUT_PART], rows[SEEN_PART], rows[CHANGES_PART]
    attributes = ("shape", "color", "size", "motion", "background")
    weakest = min(attributes, key=lambda a: held[f"adherence_{a}"])
    listed = ", ".join(f"{a} {_pct(held[f'adherence_{a}'])} %" for a in attributes)
    line = (
        f"All-attribute adherence, the share of steady frames with every attribute as asked: "
        f"{_pct(held['adherence_all'])} % on held-out 20 s renders ({listed}; the weakest is {weakest}), "
        f"{_pct(seen['adherence_all'])} % on seen combinations and {_pct(changes['adherence_all'])} % with prompt "
        f"changes."
    )
    if changes["latency_frames_median"] is not None:
        line += (
            f" After a change the new prompt holds in full after {changes['latency_frames_median']:.1f} frames "
            f"({_seconds(changes['latency_frames_median'])} s) at the median and {changes['latency_frames_p95']:.0f} "
            f"at the 95th percentile; {changes['unsettled']} of {changes['changes']} changes never settle."
        )
    if changes["continuity_max"] is not None:
        line += f" The largest jump at a change is {changes['continuity_max']:.1f} times a frame's normal motion."
    missed = misread_text(readings or {})
    if missed:
        line += f" On held-out renders the misses were read as: {missed} (shares of the asked value's steady frames)."
    return f"## Known limits\n\n{line}"


def _space_line(channels: int) -> str:
    blocks = (
        "fixed block statistics of the pixels (`train/latents.py`: 4x4-quarter colours of the group's last frame, "
        "brightness of its three earlier frames, colourfulness"
    )
    if channels == 17:
        blocks = (
            "fixed block statistics of the pixels with the object redrawn as a disc of its area, colour and centroid "
            "(`train/latents.py`: 4x4-quarter colours of the group's last frame, brightness of its three earlier "
            "frames, colourfulness, and the shape code, -1 triangle, 0 circle, +1 square, on the cells the disc "
            "touches: the only channel that says the shape"
        )
    return blocks + "), normalised by per-channel mean/std."


def _text_line(summary: dict) -> str:
    recipe = summary["recipe"]
    if recipe.get("text_pretrain"):
        named = summary.get("text_held_out_named")
        listed = ", ".join(f"{name} {share:.0%}" for name, share in (named or {}).items())
        shares = f" (afterwards, held-out descriptions' tokens name {listed})" if named else ""
        return (
            f"the text encoder was trained first, alone, for {recipe['text_pretrain']} steps to name every attribute "
            f"of a prompt from each of its tokens{shares}, then kept frozen, as Wan's umT5 is"
        )
    if recipe.get("text_attributes"):
        return "text encoder trained jointly, with heads naming every attribute from each of its tokens"
    return "text encoder trained jointly"


def _ceiling(summary: dict) -> str:
    if summary.get("ceiling_shape") is None or summary.get("ceiling_all") is None:
        return ""
    return (
        f"; the detector reads ground truth through it (fixed latents, then this decoder) with shape adherence "
        f"{summary['ceiling_shape']:.0%} and all-attribute {summary['ceiling_all']:.0%}, a ceiling for any generator"
    )


def _long_line(summary: dict | None, shipped: bool = True) -> str:
    if summary is None:
        return "- No long tuning in this version: the student ships as trained."
    if not shipped:
        return (
            f"- **long**: streaming long tuning ran ({summary['steps']} steps, `recipes/tiny/long.yaml`) but this "
            "model ships the student: the long-tuned DiT scored below it (`scripts/long_tuning_report.py`)."
        )
    r = summary["recipe"]
    tuning = f"LoRA rank {r['lora']['rank']}" if r["lora"] else "full fine-tuning"
    return f"""- **long**: streaming long tuning of the student ({tuning}): rollouts of {r["max_length"]} latent \
frames in chunks of {r["first_chunk"]} then {r["new_frames"]} new frames over the KV cache (window {r["window"]}, sink \
{r["sink"]}), DMD on {r["loss_window"]}-frame windows against the teacher (guidance {r["guidance"]}) and a critic \
initialised from it, the generator stepping every {r["critic_steps"]} critic steps; one prompt change per sequence \
with KV recache."""


def export(
    run_dir: Path,
    assets: Path | None = None,
    command: str = "",
    total_s: float | None = None,
    console=None,
    generator: str | None = None,
) -> Path:
    """Write ``tiny.safetensors`` and ``MODEL_CARD.md`` into ``assets`` (default: the package's) from a run."""
    run_dir = Path(run_dir)
    assets = Path(assets) if assets else package_assets()
    assets.mkdir(parents=True, exist_ok=True)
    generator = generator_stage(run_dir, generator)
    summaries = {stage: read_summary(run_dir / stage) for stage in STAGES}
    if (run_dir / "long" / "summary.json").is_file():
        summaries["long"] = read_summary(run_dir / "long")
    spec, states = build_spec(run_dir, generator)
    path = assets / BUNDLE
    dtype = write_bundle(path, spec, states)
    scores = evaluate(load_converted(path))
    report = json.loads((run_dir / REPORT).read_text()) if (run_dir / REPORT).is_file() else None
    (assets / CARD).write_text(model_card(spec, summaries, scores, command, total_s, generator, report))
    (run_dir / "export.json").write_text(json.dumps({"bundle": str(path), "dtype": str(dtype), **scores}, indent=2))
    if console is not None:
        console.print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, {dtype}) and {assets / CARD}")
        console.print(json.dumps(scores["rows"], indent=2))
    return path
