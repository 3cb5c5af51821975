"""Stage ``long``: DMD long tuning on the tiny config, its resume and its LoRA export (processes: test_parallel)."""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from longlive_cli.bundle import load_bundle
from longlive_cli.checkpoints import merge_lora, read_lora, read_tensors
from longlive_cli.train.artifacts import FINAL, load_weights
from longlive_cli.train.checkpoint import Randomness
from longlive_cli.train.cli import run_stage
from longlive_cli.train.decoder import load_fast_decoder
from longlive_cli.train.long import DMD, LORA_FILE, Rollout, optimizer, read_prompt_pairs, trainable
from longlive_cli.train.loop import TrainError
from longlive_cli.train.recipe import LongRecipe, RecipeError, load_recipe
from longlive_cli.train.teacher import UNCOND, load_dit_and_text
from tests.fakes import FAST_SPEC, write_converted
from tests.test_train import RECIPES, SIZE, write_recipe

LONG = {
    "steps": 4,
    "size": SIZE,
    "batch": 2,
    "lr": 1e-4,
    "lr_critic": 1e-4,
    "weight_decay": 0.0,  # without decay, generator weights move only if gradients reach them
    "critic_steps": 2,
    "window": RECIPES["student"]["window"],  # the cache the student was trained with
    "sink": RECIPES["student"]["sink"],
    "first_chunk": 6,
    "new_frames": 3,
    "loss_window": 6,
    "max_length": 15,
    "log_every": 1,
    "checkpoint_every": 2,
}
# Live weights after a fast start: an EMA over three steps would leave the zero-initialised head near zero, and with
# it every gradient that reaches the blocks through it.
GROWN = {"lr": 1e-2, "warmup": 1, "ema": 0.0}
READS = ("decoder", "teacher", "student")  # the stages whose results the long stage reads


def write_long(folder: Path, name: str = "long", **changes) -> Path:
    """A long recipe under its own file name, so several can sit side by side."""
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"stage": "long", **LONG, **changes}))
    return path


def fresh_run(run_dir: Path, folder: Path) -> Path:
    """A run folder with the earlier stages of ``run_dir`` and no long stage yet."""
    for stage in READS:
        shutil.copytree(run_dir / stage, folder / stage)
    return folder


def records(stage_dir: Path) -> dict[int, dict[str, float]]:
    """The logged losses, gradient norms and frame by step, without timings (which differ between runs)."""
    lines = (stage_dir / "log.jsonl").read_text().splitlines()
    timing = ("stage", "step", "steps_per_s", "wall_s")
    return {r["step"]: {k: v for k, v in r.items() if k not in timing} for r in map(json.loads, lines) if "step" in r}


def dit_weights(path: Path) -> dict[str, torch.Tensor]:
    """The DiT part of a stage's weights file, as the renderer would load it."""
    return load_weights(path)[0]["dit"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """The stages before ``long`` on the tiny config, then ``long`` itself with the base recipe."""
    root = tmp_path_factory.mktemp("long")
    for stage in ("vae", "decoder"):
        run_stage(stage, write_recipe(root, stage), root / "run")
    for stage in ("teacher", "student"):
        run_stage(stage, write_recipe(root, stage, **GROWN), root / "run")
    run_stage("long", write_long(root), root / "run")
    return root / "run"


def test_long_run_leaves_finite_losses_and_tuned_weights(run_dir: Path) -> None:
    """The generator steps every critic_steps steps and is tuned; the frozen text encoder ships unchanged."""
    logged = records(run_dir / "long")
    assert sorted(logged) == [1, 2, 3, 4]
    assert [s for s, r in logged.items() if "gen_loss" in r] == [1, 3]
    assert all(math.isfinite(v) for r in logged.values() for v in r.values())
    assert [r["frame"] for r in logged.values()] == [9, 12, 6, 9]  # a sequence spans steps, then starts over
    dit, text, config = load_dit_and_text(run_dir / "long" / FINAL)
    engine = {"chunk_frames": 3, "window": LONG["window"], "sink": LONG["sink"], "steps": [1000, 750, 500, 250]}
    assert config["engine"] == {**engine, "shift": 5.0}
    student, _ = load_weights(run_dir / "student" / FINAL)
    assert any(not torch.equal(v, student["dit"][k]) for k, v in dit.state_dict().items())
    assert all(torch.equal(v, student["text"][k]) for k, v in text.model.state_dict().items())
    summary = json.loads((run_dir / "long" / "summary.json").read_text())
    assert summary["steps"] == LONG["steps"] and summary["processes"] == 1


def test_critic_fits_a_fixed_window_and_generator_follows_the_score_difference(run_dir: Path) -> None:
    """The critic learns the generator's frames; a plain gradient step moves the window towards real minus fake."""
    gen, gen_text, _ = load_dit_and_text(run_dir / "student" / FINAL)
    teacher, teacher_text, _ = load_dit_and_text(run_dir / "teacher" / FINAL)
    decoder = load_fast_decoder(run_dir)[0]
    for module in (teacher, gen_text.model, teacher_text.model):
        module.eval().requires_grad_(False)
    critic = copy.deepcopy(teacher).requires_grad_(True)
    recipe = LongRecipe(**LONG)
    shared, slots = Randomness(0), [Randomness(1), Randomness(2)]
    latent_shape = (gen.cfg.in_dim, SIZE // 8, SIZE // 8)
    rollout = Rollout(gen, gen_text, decoder, recipe, latent_shape, slots, shared, torch.device("cpu"))
    dmd = DMD(teacher, critic, teacher_text, recipe)
    rollout_start = [r.state_dict() for r in (shared, *slots)]

    def window(grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The first loss window of a sequence, from the same noise every time."""
        for rand, state in zip((shared, *slots), rollout_start, strict=True):
            rand.load_state_dict(state)
        rollout.start()
        with torch.set_grad_enabled(grad):
            return rollout.chunk(grad=grad)

    x, mask = window(grad=False)
    prompts = rollout.teacher_prompts()
    dmd_start = [r.state_dict() for r in slots]

    def same_dmd_noise() -> None:
        for rand, state in zip(slots, dmd_start, strict=True):
            rand.load_state_dict(state)

    critic_opt = optimizer(trainable(critic), 3e-3, recipe)
    history = []
    for _ in range(40):
        same_dmd_noise()
        loss = dmd.critic_loss(x, mask, prompts, slots)
        loss.backward()
        critic_opt.step()
        critic_opt.zero_grad()
        history.append(loss.item())
    assert history[-1] < 0.7 * history[0]

    same_dmd_noise()
    xt, t, _ = dmd.noised(x, slots)
    with torch.no_grad():
        x0 = {
            name: dmd.schedule.x0_from_flow(model(xt, t, model.encode_prompt(dmd.features(texts))), xt, t)
            for name, model, texts in (
                ("cond", teacher, prompts),
                ("uncond", teacher, [UNCOND] * len(prompts)),
                ("fake", critic, prompts),
            )
        }
    real = x0["cond"] + recipe.guidance * (x0["cond"] - x0["uncond"])
    gen_opt = torch.optim.SGD(trainable(gen), lr=1.0)
    live, _ = window(grad=True)
    same_dmd_noise()
    dmd.generator_loss(live, mask, prompts, slots).backward()
    gen_opt.step()
    with torch.no_grad():
        moved = window(grad=False)[0] - x
    assert torch.cosine_similarity(moved.flatten(), (real - x0["fake"]).flatten(), dim=0) > 0.3


def test_resume_continues_bit_exactly(run_dir: Path, tmp_path: Path) -> None:
    """Two steps, stop, resume to four, mid-sequence: the same losses and weights as the uninterrupted run."""
    run = fresh_run(run_dir, tmp_path / "run")
    recipe = write_long(tmp_path)
    run_stage("long", recipe, run, steps=2)
    with pytest.raises(TrainError, match="--resume"):
        run_stage("long", recipe, run)
    run_stage("long", recipe, run, resume=True)
    assert records(run / "long") == records(run_dir / "long")
    resumed, straight = dit_weights(run / "long" / FINAL), dit_weights(run_dir / "long" / FINAL)
    assert resumed.keys() == straight.keys()
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)


def test_lora_run_ships_an_adapter_that_merges_into_the_final_weights(run_dir: Path, tmp_path: Path) -> None:
    """The PEFT file and the merged final weights agree, and only the adapted block weights moved."""
    run = fresh_run(run_dir, tmp_path / "run")
    run_stage("long", write_long(tmp_path, lr=1e-3, lora={"rank": 2, "alpha": 4}, ema=0.0), run)
    lora = read_lora(run / "long" / LORA_FILE, alpha=4)
    assert lora.rank == 2 and lora.scale == 2.0
    assert all(key.startswith("blocks.") for key in lora.targets)
    assert set(read_tensors(run / "long" / LORA_FILE)) == {
        f"base_model.model.{m}.lora_{part}.weight" for m in lora.targets for part in "AB"
    }
    student, final = dit_weights(run_dir / "student" / FINAL), dit_weights(run / "long" / FINAL)
    merged = merge_lora(student, lora)
    assert merged.keys() == final.keys()
    assert all(torch.allclose(merged[k], final[k], rtol=0, atol=1e-6) for k in final)
    changed = {k for k in final if not torch.equal(final[k], student[k])}
    assert changed == {f"{m}.weight" for m in lora.targets}
    assert torch.equal(final["patch_embedding.weight"], student["patch_embedding.weight"])
    assert all(torch.equal(final[k], student[k]) for k in final if k.startswith("head."))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"loss_window": 9}, r"long\.yaml: long\.first_chunk: must equal loss_window \(9\)"),
        ({"new_frames": 4}, r"long\.yaml: long\.new_frames: must be a positive multiple of chunk_frames 3"),
        ({"lora": {"rank": 2, "alpha": 4}, "ema": 0.99}, r"long\.yaml: long\.ema: LoRA training keeps no EMA"),
    ],
)
def test_long_recipe_errors_name_the_file_and_key(tmp_path: Path, changes: dict, message: str) -> None:
    """A bad long recipe is refused before any model loads, with the setting to fix."""
    with pytest.raises(RecipeError, match=message):
        load_recipe(write_long(tmp_path, **changes), "long")


def test_base_recipe_is_valid(tmp_path: Path) -> None:
    """The errors above come from the one changed key, not from the base recipe."""
    assert load_recipe(write_long(tmp_path), "long") == LongRecipe(**LONG)


def test_models_and_prompts_from_files_tune_a_converted_model(tmp_path: Path) -> None:
    """The real-scale path: generator and teacher from model files, prompts from a file; the result renders."""
    gen = write_converted(tmp_path / "gen.safetensors", FAST_SPEC, seed=1)
    teacher = write_converted(tmp_path / "teacher.safetensors", FAST_SPEC, seed=2)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# a comment\na red ball\tthe red ball turns blue\n\na green square on a white background\n")
    recipe = write_long(
        tmp_path,
        steps=2,
        size=FAST_SPEC.size[0],
        window=FAST_SPEC.engine.window,
        models={"generator": str(gen), "teacher": str(teacher)},
        prompts=str(prompts),
        negative_prompt="a gray background",
    )
    run_stage("long", recipe, tmp_path / "run")
    logged = records(tmp_path / "run" / "long")
    assert sorted(logged) == [1, 2] and all(math.isfinite(v) for r in logged.values() for v in r.values())
    tuned = load_bundle(tmp_path / "run" / "long" / FINAL)
    before = load_bundle(gen)
    assert tuned.spec.engine.window == FAST_SPEC.engine.window and tuned.fast_decoder is not None
    dit, dit0 = tuned.dit.state_dict(), before.dit.state_dict()
    assert dit.keys() == dit0.keys() and any(not torch.equal(dit[k], dit0[k]) for k in dit)
    vae, vae0 = tuned.vae.state_dict(), before.vae.state_dict()
    assert all(torch.equal(vae[k], vae0[k]) for k in vae)


def test_prompts_file_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "prompts.txt"
    bad.write_text("a red ball\none\ttwo\tthree\n")
    with pytest.raises(RecipeError, match=r"prompts.txt line 2"):
        read_prompt_pairs(bad)
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(RecipeError, match="no prompts"):
        read_prompt_pairs(tmp_path / "empty.txt")
