"""FSDP2 long tuning from the shipped tiny model: one process against two on gloo, DCP checkpoints that resume on
either, activation checkpointing, micro-batches, and a process killed while it writes a checkpoint."""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from longlive_cli.bundle import load_bundle
from longlive_cli.checkpoints import read_tensors
from longlive_cli.train.artifacts import FINAL
from longlive_cli.train.checkpoint import Randomness
from longlive_cli.train.cli import run_stage
from longlive_cli.train.long import Rollout
from longlive_cli.train.recipe import LongRecipe
from longlive_cli.train.sharded import shapes
from tests.test_long import records

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "recipes" / "tiny" / "long_smoke.yaml"
# Short chunks for speed; two a sequence, so four steps start a second one; the generator steps at 0 and 2.
CHANGES = {"first_chunk": 6, "loss_window": 6, "new_frames": 3, "max_length": 9, "window": 6, "sink": 3}
CHANGES |= {"checkpoint_every": 2, "steps": 4}


def free_port() -> int:
    """A port nobody listens on, so parallel test runs do not join each other's process group."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smoke(folder: Path, name: str = "smoke", **changes) -> Path:
    """The shipped smoke recipe with ``changes``, as a file in ``folder``."""
    data = {**yaml.safe_load(SMOKE.read_text()), **CHANGES, **changes}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def torchrun(recipe: Path, out: Path, *args: str, script: list[str] | None = None) -> subprocess.CompletedProcess:
    """``longlive train --stage long`` in two gloo processes."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port"]
    command += [str(free_port()), *(script or ["-m", "longlive_cli.train.cli"])]
    command += ["--stage", "long", "--config", str(recipe), "--out", str(out), "--threads", "1", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)


def dit_weights(run: Path) -> dict[str, torch.Tensor]:
    """The tuned DiT of a run, as ``longlive render --model`` loads it."""
    return {k[4:]: v for k, v in read_tensors(run / "long" / FINAL).items() if k.startswith("dit.")}


def same_weights(a: Path, b: Path) -> bool:
    x, y = dit_weights(a), dit_weights(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def close_weights(a: Path, b: Path) -> None:
    """Weights of two runs that differ only in the order of float sums."""
    x, y = dit_weights(a), dit_weights(b)
    assert x.keys() == y.keys()
    diff = torch.cat([(x[k] - y[k]).abs().flatten() for k in x])
    # AdamW divides each gradient by its own running size, so weights whose gradients sit at the level of rounding
    # move by more than rounding; a missing or wrong reduction moves most weights.
    assert diff.max() < 5e-5 and (diff > 1e-6).float().mean() < 0.01


def close_records(a: Path, b: Path) -> None:
    x, y = records(a / "long"), records(b / "long")
    assert x.keys() == y.keys()
    for step, logged in x.items():
        assert y[step] == pytest.approx(logged, rel=1e-4, abs=2e-6), step


@pytest.fixture(scope="module")
def one(tmp_path_factory) -> Path:
    """The smoke recipe in one process, straight through."""
    root = tmp_path_factory.mktemp("one")
    run_stage("long", smoke(root), root / "run")
    return root / "run"


def test_one_process_run_leaves_a_sharded_checkpoint_and_a_model(one: Path) -> None:
    logged = records(one / "long")
    assert sorted(logged) == [1, 2, 3, 4] and [s for s, r in logged.items() if "gen_loss" in r] == [1, 3]
    assert all(math.isfinite(v) for r in logged.values() for v in r.values())
    assert sorted(p.name for p in (one / "long" / "checkpoints").iterdir()) == ["step-00000004"]
    tuned, base = load_bundle(one / "long" / FINAL), load_bundle("tiny")
    assert any(not torch.equal(v, base.dit.state_dict()[k]) for k, v in tuned.dit.state_dict().items())


def test_two_processes_match_one_and_their_checkpoint_resumes_on_one_or_two(one: Path, tmp_path: Path) -> None:
    """float32 on gloo: two processes with a sequence each train as one with both; a two-process checkpoint
    resumes bit-exactly on two processes and, resharded, on one."""
    recipe = smoke(tmp_path)
    straight, half = tmp_path / "straight", tmp_path / "half"
    for out, args in ((straight, ()), (half, ("--steps", "2"))):
        done = torchrun(recipe, out, *args)
        assert done.returncode == 0, done.stderr[-3000:]
    shards = sorted(p.name for p in (straight / "long" / "checkpoints" / "step-00000004").iterdir())
    assert shards == [".metadata", "__0_0.distcp", "__1_0.distcp", "meta.json"]
    assert sum('"step"' in line for line in (straight / "long" / "log.jsonl").read_text().splitlines()) == 4
    close_records(one, straight)
    close_weights(one, straight)

    on_one = tmp_path / "on_one"
    shutil.copytree(half, on_one)
    done = torchrun(recipe, half, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert records(half / "long") == records(straight / "long")
    assert same_weights(half, straight)

    run_stage("long", recipe, on_one, resume=True)
    close_records(one, on_one)
    close_weights(one, on_one)


def test_a_rank_killed_while_writing_a_checkpoint_leaves_the_previous_one(tmp_path: Path) -> None:
    recipe = smoke(tmp_path, checkpoint_every=1, steps=2)
    done = torchrun(recipe, tmp_path / "run", script=[str(REPO / "tests" / "kill_rank.py")])
    assert done.returncode != 0
    folder = tmp_path / "run" / "long" / "checkpoints"
    assert [p.name for p in folder.iterdir() if not p.name.startswith(".")] == ["step-00000001"]
    assert json.loads((folder / "step-00000001" / "meta.json").read_text())["step"] == 1
    run_stage("long", recipe, tmp_path / "run", resume=True)
    lines = (tmp_path / "run" / "long" / "log.jsonl").read_text()
    assert "resuming from step 1" in lines
    assert sorted(records(tmp_path / "run" / "long")) == [1, 2]


def test_activation_checkpointing_gives_the_same_gradients() -> None:
    """Over two chunks (the second rolls the cache window), recomputed blocks give the gradients stored ones do;
    recomputing against the cache as it is by then (no replay) cannot even run its backward pass."""
    bundle = load_bundle("tiny")
    recipe = LongRecipe(steps=1, first_chunk=12, new_frames=9, loss_window=12, max_length=30, window=12, sink=3)

    def gradients(checkpointed: bool, replay: bool) -> dict[str, torch.Tensor]:
        dit = copy.deepcopy(bundle.dit).train().requires_grad_(True)
        for block in dit.blocks:
            block.checkpointed = checkpointed
        slots = [Randomness(1)]
        rollout = Rollout(
            dit, bundle.text, bundle.decoder(), recipe, bundle.spec.latent_shape, slots, Randomness(0), "cpu"
        )
        rollout.cache.recomputable = replay
        rollout.start()
        for _ in range(2):
            window, mask = rollout.chunk(grad=True)
            window[:, mask].square().mean().backward()
        return {name: p.grad for name, p in dit.named_parameters()}

    stored = gradients(False, False)
    recomputed = gradients(True, True)
    assert stored.keys() == recomputed.keys()
    for name, grad in stored.items():
        torch.testing.assert_close(recomputed[name], grad, rtol=1e-5, atol=1e-8, msg=name)
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        gradients(True, False)  # the rerun writes into, and differentiates through, the cache later blocks moved


def test_micro_batches_add_up_to_one_pass(one: Path, tmp_path: Path) -> None:
    """Two passes of one sequence each train as one pass of both."""
    run_stage("long", smoke(tmp_path, micro_batch=1), tmp_path / "run")
    close_records(one, tmp_path / "run")
    close_weights(one, tmp_path / "run")


def test_bfloat16_run_keeps_float32_weights(tmp_path: Path) -> None:
    """bf16 compute: finite losses, and the exported generator is float32 like its master weights."""
    run_stage("long", smoke(tmp_path, precision="bfloat16", steps=1), tmp_path / "run")
    assert all(math.isfinite(v) for v in records(tmp_path / "run" / "long")[1].values())
    weights = dit_weights(tmp_path / "run")
    assert {v.dtype for v in weights.values()} == {torch.float32}


@pytest.mark.parametrize(
    "changes", [{"ema": 0.5, "ema_start": 0}, {"lora": {"rank": 2, "alpha": 4}}], ids=["ema", "lora"]
)
def test_resume_is_bit_exact_with_an_ema_or_lora(tmp_path: Path, changes: dict) -> None:
    """The EMA is sharded like the weights and comes back too; a LoRA checkpoint holds the adapters and their
    optimizer state alone (the frozen weights come back from the model files)."""
    recipe = smoke(tmp_path, **changes)
    run_stage("long", recipe, tmp_path / "straight")
    run_stage("long", recipe, tmp_path / "split", steps=2)
    stored = shapes(tmp_path / "split" / "long" / "checkpoints" / "step-00000002")
    models = [k for k in stored if k.startswith(("gen.", "critic.", "gen_opt.state.", "critic_opt.state."))]
    if "lora" in changes:
        assert models and all(".lora_A." in k or ".lora_B." in k for k in models)
    else:
        assert any(k.startswith("ema.") for k in stored) and "gen.head.head.weight" in stored
    run_stage("long", recipe, tmp_path / "split", resume=True)
    assert records(tmp_path / "split" / "long") == records(tmp_path / "straight" / "long")
    assert same_weights(tmp_path / "split", tmp_path / "straight")
