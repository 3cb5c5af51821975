"""Training stack: recipes, every stage on a tiny config, bit-exact resume, and the export the renderer loads."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from longlive_cli.bundle import EMBEDDED, embedded_path, load_bundle, read_bundle_spec
from longlive_cli.checkpoints import read_tensors
from longlive_cli.engine import SeededNoise, Segment, StreamingGenerator
from longlive_cli.models.dit import CausalWanDiT, DiTConfig
from longlive_cli.models.word_tokenizer import unknown_words
from longlive_cli.notices import unknown_words_message
from longlive_cli.schedule import FlowMatchSchedule
from longlive_cli.train import text as text_lib
from longlive_cli.train.artifacts import FINAL, load_weights, training_device
from longlive_cli.train.checkpoint import Randomness, load_checkpoint
from longlive_cli.train.cli import run_stage, train_app
from longlive_cli.train.data import pool_clip, to_video
from longlive_cli.train.export import REPORT_ROWS, chain_s, export, limits_section, long_tuning_section
from longlive_cli.train.latents import (
    CODES,
    COLOURFUL,
    code_channel,
    image_latent,
    normalize,
    object_weight,
    shape_code,
    world_latents,
)
from longlive_cli.train.loop import TrainError
from longlive_cli.train.optim import adamw
from longlive_cli.train.recipe import PoolRecipe, RecipeError, StudentRecipe, load_recipe
from longlive_cli.train.student import StreamingTrainer
from longlive_cli.train.teacher import init_dit
from longlive_cli.world.grammar import COLORS, SHAPES, Attributes, describe, describe_change, is_held_out
from longlive_cli.world.scene import RADIUS, SceneState, render_frames
from longlive_cli.world.timelines import random_attributes, random_change, training_clip
from longlive_cli.world.tokenizer import build_tokenizer, understood_words

SIZE = 32
POOL = {"clips": 4, "latent_frames": 9, "change_prob": 0.5, "first_change_chunk": 1, "seed": 3}
DIT = {"dim": 32, "ffn_dim": 64, "num_heads": 2, "num_layers": 1, "freq_dim": 16}
TEXT = {"dim": 16, "dim_attn": 16, "dim_ffn": 32, "num_heads": 2, "num_layers": 1, "num_buckets": 8, "max_distance": 16}
RECIPES = {
    "vae": {
        "steps": 2,
        "size": SIZE,
        "batch": 1,
        "frames": 5,
        "crop": 24,
        "stats_clips": 1,
        "vae": {"dim": 2, "dim_mult": [1, 2, 2, 2], "num_res_blocks": 1, "temperal_downsample": [True, True, False]},
    },
    "decoder": {
        "steps": 2,
        "size": SIZE,
        "batch": 1,
        "frames": 5,
        "taehv": {"decoder_widths": [8, 8, 4], "encoder_width": 4},
    },
    "teacher": {
        "steps": 3,
        "size": SIZE,
        "batch": 2,
        "frames": 3,
        "text_len": 24,
        "dit": DIT,
        "text": TEXT,
        "pool": POOL,
        "uncond_prob": 0.5,
        "offset_prob": 0.5,
        "text_attributes": 0.5,
        "log_every": 1,
        "checkpoint_every": 2,
    },
    "student": {
        "steps": 2,
        "size": SIZE,
        "batch": 2,
        "window": 6,
        "sink": 3,
        "own_context_prob": 0.5,
        "pool": POOL,
        "log_every": 1,
    },
}


def write_recipe(folder: Path, stage: str, **changes) -> Path:
    path = folder / f"{stage}.yaml"
    path.write_text(yaml.safe_dump({"stage": stage, **RECIPES[stage], **changes}))
    return path


def losses(folder: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if "loss" in r}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """Every stage of the recipe, in order, on a tiny configuration."""
    root = tmp_path_factory.mktemp("train")
    for stage in ("vae", "decoder", "teacher", "student"):
        run_stage(stage, write_recipe(root, stage), root / "run")
    return root / "run"


def test_every_stage_leaves_weights_and_a_summary(run_dir: Path) -> None:
    for stage in ("vae", "decoder", "teacher", "student"):
        summary = json.loads((run_dir / stage / "summary.json").read_text())
        assert summary["steps"] == RECIPES[stage]["steps"]
        assert (run_dir / stage / "final.safetensors").is_file()
        assert all(np.isfinite(loss) for loss in losses(run_dir / stage).values())
    assert {"ceiling_shape", "ceiling_all", "psnr_fast_decoder"} <= json.loads(
        (run_dir / "decoder" / "summary.json").read_text()
    ).keys()
    std = json.loads((run_dir / "vae" / "summary.json").read_text())["latent_std"]
    assert len(std) == 16 and min(std) > 0


def test_resume_continues_bit_exactly(run_dir: Path, tmp_path: Path) -> None:
    """Two steps, stop, resume to three: the same losses as the uninterrupted run of the fixture."""
    for part in ("vae", "pool"):
        shutil.copytree(run_dir / part, tmp_path / "run" / part)
    recipe = write_recipe(tmp_path, "teacher")
    run_stage("teacher", recipe, tmp_path / "run", steps=2)
    with pytest.raises(TrainError, match="--resume"):
        run_stage("teacher", recipe, tmp_path / "run")
    run_stage("teacher", recipe, tmp_path / "run", resume=True)
    assert losses(tmp_path / "run" / "teacher") == losses(run_dir / "teacher")


def test_bfloat16_steps_compute_in_bf16_and_keep_float32_weights(run_dir: Path, tmp_path: Path) -> None:
    """The same teacher steps under autocast: nearby, not identical, losses; float32 weights and optimizer state."""
    for part in ("vae", "pool"):
        shutil.copytree(run_dir / part, tmp_path / "run" / part)
    run_stage("teacher", write_recipe(tmp_path, "teacher", precision="bfloat16"), tmp_path / "run")
    fp32, bf16 = losses(run_dir / "teacher"), losses(tmp_path / "run" / "teacher")
    assert fp32.keys() == bf16.keys() and fp32[3] != bf16[3]
    assert all(abs(bf16[k] - fp32[k]) < 0.05 * fp32[k] for k in fp32)
    weights = read_tensors(tmp_path / "run" / "teacher" / "final.safetensors")
    assert {v.dtype for v in weights.values()} == {torch.float32}
    state = load_checkpoint(tmp_path / "run" / "teacher" / "checkpoint.pt")["state"]
    moments = [v for group in state["optimizer"]["state"].values() for v in group.values() if v.dim()]
    assert moments and all(v.dtype == torch.float32 for v in moments)


@pytest.mark.parametrize(
    ("stage", "needs"), [("decoder", ("vae",)), ("teacher", ("vae", "pool")), ("student", ("vae", "pool", "teacher"))]
)
def test_restart_lengthens_a_finished_run_as_if_the_recipe_had_said_so(
    run_dir: Path, tmp_path: Path, stage: str, needs: tuple[str, ...]
) -> None:
    """A finished 2-step run resumed under a 4-step recipe restarting at 2 logs what that recipe does from scratch."""
    for name in ("short", "scratch"):
        for part in needs:
            shutil.copytree(run_dir / part, tmp_path / name / part)
    base = {"warmup": 1, "log_every": 1, **({"text_attributes": 0.0} if stage == "teacher" else {})}
    run_stage(stage, write_recipe(tmp_path / "short", stage, **base, steps=2), tmp_path / "short")
    longer = write_recipe(tmp_path, stage, **base, steps=4, restarts=[2], restart_lr=0.5)
    run_stage(stage, longer, tmp_path / "short", resume=True)
    run_stage(stage, longer, tmp_path / "scratch")
    assert losses(tmp_path / "short" / stage) == losses(tmp_path / "scratch" / stage)
    assert sorted(losses(tmp_path / "scratch" / stage)) == [1, 2, 3, 4]


def test_restart_climbs_back_to_its_share_of_the_peak_then_decays() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    _, single = adamw([param], 1.0, 10, 100)
    _, restarted = adamw([param], 1.0, 10, 200, restarts=[100, 160], restart_lr=0.5)
    once, twice = single.lr_lambdas[0], restarted.lr_lambdas[0]
    assert [twice(s) for s in range(100)] == [once(s) for s in range(100)]
    assert twice(99) == pytest.approx(0.1, abs=1e-3) and twice(100) == pytest.approx(0.5)
    assert twice(130) == pytest.approx(0.3) and twice(159) == pytest.approx(0.1, abs=1e-3)
    assert twice(160) == pytest.approx(0.5) and twice(180) == pytest.approx(0.3) and twice(200) == pytest.approx(0.1)


def test_export_writes_a_bundle_the_renderer_streams(run_dir: Path, tmp_path: Path) -> None:
    path = export(run_dir, tmp_path, command="scripts/train_tiny.sh")
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert "scripts/train_tiny.sh" in card and "| student | 2 |" in card
    assert f"| {training_device()} |" in card, "the card names what each stage trained on"
    assert "end to end with the decoder beside the student" in card
    assert "Not measured for this run" in card, "no long-tuning report in the run folder, no table"
    assert "## Known limits" in card
    assert {t.dtype for t in read_tensors(path).values() if t.is_floating_point()} == {torch.float16}
    bundle = load_bundle(path)
    assert bundle.spec.name == "tiny" and bundle.spec.size == (SIZE, SIZE) and bundle.spec.decoder == "fast"
    context = bundle.text.encode(["a red ball moving left and right on a gray background", "the red ball turns blue"])
    gen = StreamingGenerator(bundle.dit, bundle.spec.engine, bundle.spec.latent_shape, SeededNoise(0))
    stream = bundle.decoder().stream()
    chunks = list(gen.stream([Segment(0, context[:1]), Segment(3, context[1:])], 9))
    assert [c.switched for c in chunks] == [False, True, False]
    video = torch.cat([stream(c.latents.transpose(1, 2)) for c in chunks], 2)
    assert video.shape == (1, 3, 33, SIZE, SIZE) and torch.isfinite(video).all()


def test_the_card_times_the_recipe_as_two_processes_run_it() -> None:
    """The decoder overlaps the student, so the longer of the two counts, not both."""
    wall = {"vae": 10.0, "decoder": 100.0, "teacher": 60.0, "student": 30.0, "long": 5.0}
    assert chain_s({name: {"wall_s": s} for name, s in wall.items()}) == 175.0
    wall["student"] = 150.0
    assert chain_s({name: {"wall_s": s} for name, s in wall.items()}) == 225.0


def suite_row(all_: float, latency: float | None = 12.0, continuity: float | None = 1.0, **attributes) -> dict:
    """One suite row as run_suite reports it."""
    row = {f"adherence_{a}": 0.9 for a in ("shape", "color", "size", "motion", "background")}
    row |= {f"adherence_{a}": v for a, v in attributes.items()}
    return row | {
        "adherence_all": all_,
        "drift_first_all": all_ - 0.1,
        "drift_last_all": all_,
        "latency_frames_median": latency,
        "latency_frames_p95": latency and 3 * latency,
        "changes": 24,
        "unsettled": 2,
        "continuity_median": continuity,
        "continuity_max": continuity and 4 * continuity,
    }


def test_the_card_tabulates_a_long_tuning_report_and_names_the_policies_it_measured() -> None:
    report = {" / ".join(key): suite_row(0.5) for key in REPORT_ROWS}
    report["after / clear / changes 20 s"] = suite_row(0.62, latency=8.0, continuity=1.5)
    report["after / recache / changes 20 s"] = suite_row(0.64, latency=16.0)
    card = long_tuning_section(report)
    assert "| after, clear, changes 20 s | 62.0 | 52.0 → 62.0 | 0.50 | 2 of 24 | 1.50 |" in card
    assert card.count("| before long tuning, recache,") == 2 and card.count("| after,") == 6
    assert "On changes 20 s, recache scores highest (64.0 %), clear settles fastest (0.50 s), clear jumps" in card
    assert "On long 240 s, recache scores highest (50.0 %)" in card and "within 0.0 points" in card
    assert "jumps furthest" not in card.split("On long 240 s")[1], "equal continuity names no policy"
    assert "Not measured for this run" in long_tuning_section(None)


def test_known_limits_come_from_the_suite_figures() -> None:
    rows = {
        "single 20 s": suite_row(0.65, motion=0.72),
        "single 20 s, seen": suite_row(0.81),
        "changes 20 s": suite_row(0.64, latency=11.5, continuity=1.05),
    }
    limits = limits_section(rows)
    assert "65.0 % on held-out 20 s renders" in limits
    assert "motion 72.0 %, background 90.0 %; the weakest is motion" in limits
    assert "81.0 % on seen combinations and 64.0 % with prompt changes" in limits
    assert "after 11.5 frames (0.72 s) at the median and 34 at the 95th percentile" in limits
    assert "2 of 24 changes never settle" in limits and "4.2 times a frame's normal motion" in limits
    assert "misses were read as" not in limits
    readings = {"motion": {"horizontal": {"horizontal": 77, "still": 10, "circling": 13}, "still": {"still": 50}}}
    assert "On held-out renders the misses were read as: motion horizontal as circling 13.0 %, still 10.0 % (" in (
        limits_section(rows, readings)
    )
    rows["changes 20 s"] = suite_row(0.0, latency=None, continuity=None)
    assert "at the median" not in limits_section(rows) and "largest jump" not in limits_section(rows)


def test_teacher_loss_falls_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    text = text_lib.text_encoder(TEXT, 24)
    dit = CausalWanDiT(DiTConfig(**DIT, text_dim=16, text_len=24))
    init_dit(dit)
    opt = torch.optim.AdamW([*dit.parameters(), *text.model.parameters()], lr=3e-3)
    schedule = FlowMatchSchedule(5.0)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 3, 16, 4, 4, generator=g), torch.randn(2, 3, 16, 4, 4, generator=g)
    t = torch.tensor([[900.0] * 3, [500.0] * 3])
    prompts = ["a red ball sitting still on a dark backdrop", "a big blue box circling over a pale canvas"]
    history = []
    for _ in range(15):
        flow = dit(schedule.add_noise(x0, noise, t), t, dit.encode_prompt(text_lib.encode(text, prompts)))
        loss = torch.nn.functional.mse_loss(flow, schedule.flow_target(x0, noise))
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    assert history[-1] < 0.7 * history[0]


def test_attribute_heads_teach_every_token_the_whole_prompt() -> None:
    """After a short fit each real token of a prompt names its shape (not only the shape word), a follow-up wording's
    tokens name the new colour (not the subject's old one), and what a prompt leaves unsaid adds nothing."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    text = text_lib.text_encoder(TEXT, 24)
    heads = text_lib.AttributeHeads(text.text_dim)
    firsts = [random_attributes(rng) for _ in range(12)]
    pairs = [(a, replace(a, color=COLORS[(COLORS.index(a.color) + 1) % len(COLORS)])) for a in firsts[:8]]
    prompts = [describe(a, rng) for a in firsts] + [describe_change(old, new, rng) for old, new in pairs]
    labels = [text_lib.labels_of(a) for a in firsts] + [text_lib.change_labels(old, new) for old, new in pairs]
    assert all(set(stated) == {"color", "shape"} for stated in labels[12:])
    opt = torch.optim.AdamW([*text.model.parameters(), *heads.parameters()], lr=3e-3)
    first = None
    for _ in range(150):
        loss, share = heads.loss(*text_lib.encode_with_mask(text, prompts), labels)
        first = share if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    features, mask = text_lib.encode_with_mask(text, prompts)
    real = mask.bool()
    shape_of, color_of = (heads.heads[name](features).argmax(-1) for name in ("shape", "color"))
    shapes = torch.tensor([SHAPES.index(a.shape) for a in firsts])[:, None].expand(-1, mask.shape[1])
    new_colors = torch.tensor([COLORS.index(new.color) for _, new in pairs])[:, None].expand(-1, mask.shape[1])
    assert first < 0.6
    assert (shape_of[:12] == shapes)[real[:12]].all() and (color_of[12:] == new_colors)[real[12:]].all()
    one = prompts[12:13]
    alone, _ = heads.loss(*text_lib.encode_with_mask(text, one), labels[12:13])
    with_unsaid, _ = heads.loss(*text_lib.encode_with_mask(text, [*one, ""]), [labels[12], None])
    assert torch.allclose(alone, with_unsaid)


def test_pretrained_text_encoder_names_held_out_combinations() -> None:
    """Trained alone on seen prompt sequences, the tokens of descriptions of never-seen combinations name them
    far better than before (this narrow encoder and short fit generalise best on the shape)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    seen = []
    while len(seen) < 64:
        first = random_attributes(rng)
        if not is_held_out(first):
            seen.append([first, replace(first, color=COLORS[(COLORS.index(first.color) + 1) % len(COLORS)])])
    text = text_lib.text_encoder(TEXT, 24)
    untrained = text_lib.pretrain(text_lib.text_encoder(TEXT, 24), seen, 0, 32, 1e-2, 0)
    named = text_lib.pretrain(text, seen, 300, 32, 1e-2, 0)
    assert set(named) == {"shape", "color", "size", "motion", "background"}
    assert named["shape"] > 0.85 and np.mean(list(named.values())) > np.mean(list(untrained.values())) + 0.15


def test_pretrained_text_stays_frozen_through_teacher_and_student(run_dir: Path, tmp_path: Path) -> None:
    for part in ("vae", "pool"):
        shutil.copytree(run_dir / part, tmp_path / "run" / part)
    recipe = write_recipe(tmp_path, "teacher", text_attributes=0.0, text_pretrain=5, text_pretrain_batch=4)
    teacher, config = load_weights(run_stage("teacher", recipe, tmp_path / "run"))
    student, _ = load_weights(run_stage("student", write_recipe(tmp_path, "student"), tmp_path / "run"))
    joint, _ = load_weights(run_dir / "teacher" / FINAL)
    torch.manual_seed(0)
    fresh = text_lib.text_encoder(TEXT, 24).model.state_dict()
    assert config["text_frozen"]
    for key, weight in teacher["text"].items():
        assert torch.equal(student["text"][key], weight)
        assert not torch.equal(weight, fresh[key])
    assert not all(torch.equal(joint["dit"][k], w) for k, w in teacher["dit"].items())
    summary = json.loads((tmp_path / "run" / "teacher" / "summary.json").read_text())
    assert set(summary["text_held_out_named"]) == {"shape", "color", "size", "motion", "background"}


@pytest.mark.parametrize(
    "own", [{}, {"own_context_prob": 1.0, "own_context_step": "last"}, {"unroll_prob": 1.0, "own_context_prob": 0.5}]
)
def test_student_loss_falls_on_a_fixed_batch_with_a_switch(own: dict) -> None:
    torch.manual_seed(0)
    text = text_lib.text_encoder(TEXT, 24)
    dit = CausalWanDiT(DiTConfig(**DIT, text_dim=16, text_len=24))
    init_dit(dit)
    recipe = StudentRecipe(steps=1, window=6, sink=3, **own)
    opt = torch.optim.AdamW([*dit.parameters(), *text.model.parameters()], lr=3e-3)
    x0 = torch.randn(2, 9, 16, 4, 4, generator=torch.Generator().manual_seed(1))
    prompts = [["a red ball sitting still", "the red ball turns blue"], ["a green box", "the green box turns yellow"]]
    history = []
    for _ in range(20):
        trainer = StreamingTrainer(dit, text, recipe, Randomness(0))
        history.append(trainer.clip(x0, prompts, 6, lambda x: torch.ones(x.shape[:2] + x.shape[3:])))
        opt.step()
        opt.zero_grad()
    assert history[-1] < 0.8 * history[0]


def test_unrolled_step_starts_from_the_samplers_own_chain() -> None:
    torch.manual_seed(0)
    text = text_lib.text_encoder(TEXT, 24)
    dit = CausalWanDiT(DiTConfig(**DIT, text_dim=16, text_len=24))
    init_dit(dit)
    recipe = StudentRecipe(steps=1, window=6, sink=3)
    trainer = StreamingTrainer(dit, text, recipe, Randomness(0))
    prompt = dit.encode_prompt(text_lib.encode(text, ["a red ball sitting still"]))
    noise = torch.randn(1, 3, 16, 4, 4, generator=torch.Generator().manual_seed(2))
    cache = trainer.new_cache(1, 4, 4)
    assert torch.equal(trainer.sampled(noise, 0, prompt, cache, 0), noise)
    unrolled = trainer.sampled(noise, 2, prompt, cache, 0)
    # The engine's chain, step by step, with the same draws of fresh noise.
    schedule, steps, rand = trainer.schedule, trainer.timesteps, Randomness(0)
    x = noise
    with torch.no_grad():
        for j in range(2):
            t = steps[j].expand(1, 3)
            x0 = schedule.x0_from_flow(dit(x, t, prompt, cache, 0), x, t)
            x = schedule.add_noise(x0, rand.randn(*noise.shape), steps[j + 1].expand(1, 3))
    assert torch.equal(unrolled, x)
    assert not torch.allclose(unrolled, schedule.add_noise(x0, noise, steps[2].expand(1, 3)))


def test_flow_to_is_the_flow_target_when_x_t_is_x0_noised() -> None:
    schedule = FlowMatchSchedule(5.0)
    g = torch.Generator().manual_seed(3)
    x0, noise = torch.randn(2, 3, 16, 4, 4, generator=g), torch.randn(2, 3, 16, 4, 4, generator=g)
    t = schedule.warped()[[0, 2]][:, None].expand(-1, 3)
    xt = schedule.add_noise(x0, noise, t)
    assert torch.allclose(schedule.flow_to(x0, xt, t), schedule.flow_target(x0, noise), atol=1e-5)


def test_first_step_probe_reports_every_step_beside_the_copy(run_dir: Path) -> None:
    script = Path(__file__).parents[1] / "scripts" / "first_step_probe.py"
    done = subprocess.run(
        [sys.executable, str(script), str(run_dir), "--chunks", "2", "--clips", "2"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = json.loads(done.stdout)
    assert rows and all(key.endswith("chunk 2") for key in rows)
    for row in rows.values():
        assert set(row) == {"copy", "step 1", "step 2", "step 3", "step 4"}
        assert all(np.isfinite(v) and v >= 0 for v in row.values())


def test_teacher_probe_reads_samples_steering_and_attention(run_dir: Path) -> None:
    script = Path(__file__).parents[1] / "scripts" / "teacher_probe.py"
    args = [str(run_dir), "--steps", "2", "--seconds", "1", "--clips", "2", "--object-size", "small"]
    report = json.loads(
        subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, check=True).stdout
    )
    assert report["object size"] == "small" and len(report["samples"]) == 3 * 4
    readings = [v for row in report["samples"].values() for v in row.values()] + [
        v for row in report["steering"].values() for v in row.values()
    ]
    assert all(v is None or 0 <= v <= 1 for v in readings) and len(report["steering"]) == 5
    assert report["speeds"].keys() == report["samples"].keys()
    assert all(v is None or v >= 0 for row in report["speeds"].values() for v in (row["sample"], row["world"]))
    assert set(report["speed by motion"]) == {"still", "horizontal", "vertical", "circling"}
    layers = RECIPES["teacher"]["dit"]["num_layers"]
    shares = np.array(list(report["attention"].values()))
    assert shares.shape == (len(report["attention"]), layers) and np.allclose(shares.sum(0), 1, atol=0.02)


def test_shape_code_probe_reads_the_decoder_and_teacher_of_a_shaped_run(run_dir: Path, tmp_path: Path) -> None:
    script = Path(__file__).parents[1] / "scripts" / "shape_code_probe.py"
    refused = subprocess.run([sys.executable, str(script), str(run_dir)], capture_output=True, text=True)
    assert refused.returncode == 1 and "has 16 latent channels; the shape code needs 17" in refused.stderr
    run = tmp_path / "run"
    run_stage("vae", write_recipe(tmp_path, "vae", vae={**RECIPES["vae"]["vae"], "z_dim": 17}), run)
    for stage in ("decoder", "teacher", "student"):
        run_stage(stage, write_recipe(tmp_path, stage), run)
    args = [str(run), "--clips", "1", "--size", str(SIZE), "--student", str(run / "student" / FINAL)]
    report = json.loads(
        subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, check=True).stdout
    )
    follows = report["decoder draws the code's shape"]
    names = report["teacher's code names the prompted shape"], report["student's code names the prompted shape"]
    assert len(follows) == 2 * 3 and all(len(row) == 3 for row in follows.values())
    assert all(0 <= v <= 1 for row in follows.values() for v in row.values())
    assert all(len(named) == 2 * 3 and all(0 <= v <= 1 for v in named.values()) for named in names)


def test_the_code_is_read_on_the_cells_it_is_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The code is read on the object's cells (a circle's is zero); a frame without an object reads -1."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "scripts"))
    probe = importlib.import_module("shape_code_probe")
    mean, std = torch.zeros(17), torch.ones(17)
    z = torch.zeros(4, 17, 4, 4)
    z[:3, COLOURFUL, 1:3, 1:3] = 1.0  # an object on the same cells of the first three frames
    z[0, 16, 1:3, 1:3] = CODES["square"]
    z[1, 16, 1:3, 1:3] = CODES["triangle"]
    z[3, 16, 1:3, 1:3] = CODES["square"]  # a code with no object under it
    expected = [SHAPES.index("square"), SHAPES.index("triangle"), SHAPES.index("circle"), -1]
    assert probe.named_shapes(z, mean, std).tolist() == expected


def test_attribute_grid_scores_every_combination_and_word() -> None:
    script = Path(__file__).parents[1] / "scripts" / "attribute_grid.py"
    done = subprocess.run(
        [sys.executable, str(script), "tiny", "--seconds", "1"], capture_output=True, text=True, check=True
    )
    report = json.loads(done.stdout)
    assert len(report["grid"]) == 3 * 4 * 2
    assert all(0 <= v <= 1 for row in report["grid"].values() for v in row.values() if v is not None)
    assert set(report["shape by motion"]) == {"still", "horizontal", "vertical", "circling"}
    layers = load_bundle("tiny").dit.cfg.num_layers
    assert set(report["word effect"]) == {"shape", "color", "size", "motion", "synonym"}
    assert all(len(v) == layers and all(x > 0 for x in v) for v in report["word effect"].values())


def test_centred_pool_clips_rest_then_set_off() -> None:
    pool = PoolRecipe(clips=40, latent_frames=9, change_prob=0.0, rest_frames=9, seed=5)
    moving = [i for i in range(pool.clips) if pool_clip(pool, i, SIZE)[1][0].motion != "still"]
    assert moving
    for i in moving[:3]:
        frames = pool_clip(pool, i, SIZE)[0].astype(int)
        assert all(np.array_equal(frames[k], frames[0]) for k in range(9))
        assert not np.array_equal(frames[9], frames[8])
        assert not np.array_equal(frames[-1], frames[0])


@pytest.mark.parametrize(
    ("stage", "keys", "load_as", "message"),
    [
        ("teacher", {"stpes": 4}, "teacher", r"teacher\.yaml: teacher: unknown key 'stpes'; did you mean 'steps'\?"),
        ("teacher", {"batch": "eight"}, "teacher", r"teacher\.yaml: teacher\.batch: expected int, got str"),
        ("teacher", {"pool": {**POOL, "change_prob": 2}}, "teacher", r"teacher\.pool\.change_prob: must be between 0"),
        ("teacher", {}, "student", r"teacher\.yaml: stage: the file is a 'teacher' recipe, not 'student'"),
        ("teacher", {"text_pretrain": 5}, "teacher", r"teacher\.text_attributes: trains the text encoder beside"),
        ("teacher", {"restarts": [3]}, "teacher", r"teacher\.restarts: need increasing steps between warmup and steps"),
        ("teacher", {"restarts": [2, 1], "warmup": 0}, "teacher", r"teacher\.restarts: need increasing steps"),
        ("teacher", {"restart_lr": 0}, "teacher", r"teacher\.restart_lr: must be in \(0, 1\], got 0"),
        ("student", {"pool": {**POOL, "latent_frames": 10}}, "student", r"latent_frames: 10 is not a whole number"),
        ("student", {"restarts": [1, 1]}, "student", r"student\.restarts: need increasing steps"),
        ("decoder", {"restarts": [99]}, "decoder", r"decoder\.restarts: need increasing steps between warmup"),
        ("student", {"unroll_prob": 1.5}, "student", r"student\.unroll_prob: must be between 0 and 1, got 1\.5"),
        ("student", {"own_context_step": "first"}, "student", r"student\.own_context_step: expected 'drawn' or 'last'"),
        ("decoder", {"precision": "fp16"}, "decoder", r"decoder\.precision: expected 'float32' or 'bfloat16'"),
    ],
)
def test_recipe_errors_name_the_file_and_key(
    tmp_path: Path, stage: str, keys: dict, load_as: str, message: str
) -> None:
    with pytest.raises(RecipeError, match=message):
        load_recipe(write_recipe(tmp_path, stage, **keys), load_as)


def test_a_recipe_key_given_twice_is_refused_with_both_lines(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, "decoder", precision="float32")
    path.write_text(path.read_text() + "precision: bfloat16\n")
    lines = path.read_text().splitlines()
    first, second = (i + 1 for i, line in enumerate(lines) if line.startswith("precision:"))
    message = rf"decoder\.yaml line {second}: not valid YAML \(duplicate key 'precision' \(first given on line {first}"
    with pytest.raises(RecipeError, match=message):
        load_recipe(path, "decoder")


def test_a_recipe_alias_bomb_is_refused_before_it_is_expanded(tmp_path: Path) -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = tmp_path / "vae.yaml"
    path.write_text("stage: vae\n" + "\n".join(levels) + "\n")
    with pytest.raises(RecipeError, match=r"vae\.yaml line 6: not valid YAML \(more than 20000 values"):
        load_recipe(path, "vae")


def test_cli_reports_a_bad_recipe_with_exit_code_1(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, "vae", crop=20)
    result = CliRunner().invoke(train_app, ["--stage", "vae", "--config", str(path), "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "vae.crop: must be a multiple of 8" in result.output


def test_world_prompts_fit_the_tokenizer_without_unknown_words() -> None:
    tokenizer = build_tokenizer()
    rng = np.random.default_rng(0)
    for _ in range(300):
        first = random_attributes(rng)
        second = random_change(first, rng)
        for text in (describe(first, rng), describe_change(first, second, rng)):
            assert unknown_words(tokenizer, text) == []
            assert len(tokenizer.encode(text).ids) <= 24


def test_unknown_words_are_listed_once_with_what_the_model_knows() -> None:
    tokenizer = build_tokenizer()
    assert unknown_words(tokenizer, "A Crimsn ball, drifting left over a dark backdrop; crimsn!") == ["crimsn"]
    spec = read_bundle_spec(embedded_path())
    assert spec.name == EMBEDDED and spec.vocabulary == understood_words()  # the words travel with the model
    message = unknown_words_message(["crimsn"], spec)
    assert message.startswith("unknown words: 'crimsn' (the tiny model understands shape: circle ball")
    assert "crimson" in message and "circling" in message
    assert (
        unknown_words_message(["crimsn"], replace(spec, vocabulary=()))
        == "unknown words: 'crimsn' (tiny reads them as unknown)"
    )


def test_subword_tokenizers_have_no_unknown_words() -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    assert unknown_words(tokenizer, "a crimsn ball") == []


def test_world_latents_follow_wan_layout_and_read_colour() -> None:
    video = torch.full((1, 3, 9, 16, 16), -1.0)
    video[:, 0, :, :8, :8] = 1.0  # a red top-left block in every frame
    latents = world_latents(video)
    assert latents.shape == (1, 16, 3, 2, 2)
    red, green = latents[0, 0:4], latents[0, 4:8]  # colour-major quarters of the group's last frame
    assert torch.all(red[:, :, 0, 0] == 1.0) and torch.all(red[:, :, 1, 1] == -1.0)
    assert torch.all(green == -1.0)
    assert torch.allclose(latents[0, 15, :, 0, 0], torch.tensor(2.0))  # colourfulness: max minus min


def test_shape_code_names_the_shape_by_its_level_alone() -> None:
    """Channel 16 holds the shape code (triangle -1, circle 0, square +1) on every cell a disc of the object's area
    at its centroid touches, and channels 0-15 read the object redrawn as that disc: every shape in one place gives
    the same first 16 channels (the 16-channel space of the circle there) and the same footprint, so only the level
    tells them apart, wherever the object sits and whatever its size and colours."""
    rng = np.random.default_rng(0)
    for size, background, color in (
        ("small", "white", "yellow"),
        ("large", "black", "purple"),
        ("small", "gray", "green"),
    ):
        x, y = rng.uniform(0.3, 0.7, size=2)
        footprints, shapeless = {}, {}
        for shape in SHAPES:
            attrs = Attributes(shape=shape, color=color, size=size, motion="still", background=background)
            video = to_video(render_frames([SceneState(attrs, x=x, y=y, radius=RADIUS[size])] * 5, 96))[None]
            latents = world_latents(video, 17)
            assert latents.shape == (1, 17, 2, 12, 12)
            shapeless[shape] = latents[:, :16]
            if shape == "circle":
                assert torch.allclose(latents[:, :16], world_latents(video), atol=0.02)
            disc, drawn, code = shape_code(video[0, :, -1:].transpose(0, 1))
            assert code.item() == CODES[shape] and drawn.shape == (1, 3, 96, 96)
            footprints[shape] = code_channel(disc, torch.ones(1))[0, 0]
            assert set(latents[0, 16, -1].unique().tolist()) == {0.0, CODES[shape]}
        assert all(torch.equal(footprints["circle"], f) for f in footprints.values())
        assert all(torch.allclose(shapeless["circle"], o, atol=0.02) for o in shapeless.values())
        assert not torch.allclose(world_latents(video), shapeless["circle"], atol=0.05)  # the triangle's own quarters
        side = 2 * RADIUS[size] * 96 / 8  # the disc's diameter in cells: it touches about that square's cells
        assert side**2 <= footprints["circle"].sum() <= (side + 2) ** 2
    with pytest.raises(ValueError, match="16 or 17 channels, not 15"):
        world_latents(video, 15)


def test_image_latent_is_the_latent_of_the_lone_frame() -> None:
    """A window of a video starts with its first frame's lone-frame latent: the teacher and the long stage agree."""
    frames = training_clip(np.random.default_rng(4), frames=21, size=32, change_prob=0.0).frames
    mean, std = tuple(float(v) for v in np.linspace(-0.2, 0.3, 16)), tuple(float(v) for v in np.linspace(0.4, 0.9, 16))
    clip = normalize(world_latents(to_video(frames)[None]), mean, std).transpose(1, 2)[0]
    lone = normalize(world_latents(to_video(frames[8:9])[None]), mean, std).transpose(1, 2)[0, 0]
    assert torch.allclose(image_latent(clip[2:3], mean, std)[0], lone, atol=1e-5)  # latent 2 ends at frame 8
    assert not torch.allclose(clip[2], lone, atol=1e-2)  # the group's own latent carries the frames before it
    assert torch.allclose(image_latent(clip[:1], mean, std), clip[:1], atol=1e-5)  # frame 0 is already alone


def test_object_weight_marks_the_object_and_a_margin() -> None:
    channels = 16
    mean, std = (0.0,) * channels, (1.0,) * channels
    latents = torch.zeros(1, 1, channels, 7, 7)
    latents[0, 0, COLOURFUL, 2:5, 2:5] = 1.0  # a 3x3-cell object
    weights = object_weight(latents, mean, std, 10.0)[0, 0]
    assert weights[3, 3] == weights[2, 2] == weights[1, 1] == weights[1, 3] == 10.0
    assert weights[0, 0] == weights[6, 3] == 1.0
