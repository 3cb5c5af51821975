"""The step loop every stage shares: resume from the checkpoint, log, checkpoint, and time the whole stage."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from longlive_cli.train.checkpoint import CHECKPOINT, Randomness, load_checkpoint, save_checkpoint
from longlive_cli.train.log import TrainLog
from longlive_cli.train.optim import EMA
from longlive_cli.train.recipe import Recipe, recipe_dict


class TrainError(RuntimeError):
    """A run that cannot start as asked (an existing checkpoint without --resume, a missing earlier stage)."""


def pick_device() -> torch.device:
    """The GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class TrainState:
    """Everything a resumed run needs to continue bit-exactly."""

    def __init__(
        self,
        modules: dict[str, nn.Module],
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LambdaLR,
        rand: Randomness,
        emas: dict[str, EMA] | None = None,
    ):
        self.modules = modules
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.rand = rand
        self.emas = emas or {}

    def state_dict(self) -> dict:
        return {
            "modules": {name: m.state_dict() for name, m in self.modules.items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rand": self.rand.state_dict(),
            "ema": {name: e.state_dict() for name, e in self.emas.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        for name, module in self.modules.items():
            module.load_state_dict(state["modules"][name])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        step, schedule = self.scheduler.last_epoch, self.scheduler.lr_lambdas
        for group, base, factor in zip(self.optimizer.param_groups, self.scheduler.base_lrs, schedule, strict=True):
            group["lr"] = base * factor(step)  # this recipe's rate, which a lengthened one changes from the saved one
        self.rand.load_state_dict(state["rand"])
        for name, ema in self.emas.items():
            ema.load_state_dict(state["ema"][name])

    def step(self, params: list[nn.Parameter], grad_clip: float | None = None) -> float:
        """Clip, step, schedule, average; returns the gradient norm before clipping."""
        norm = torch.nn.utils.clip_grad_norm_(params, grad_clip or float("inf"))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        for name, ema in self.emas.items():
            ema.update(self.modules[name])
        return float(norm)


# Temporary files of an atomic write (``.NAME.1a2b3c4d.tmp``), left behind only when a process was killed mid-write.
ORPHAN = re.compile(r"\..+\.[0-9a-f]{8}\.tmp")


def remove_orphans(folder: Path) -> list[Path]:
    """Delete what killed writes left in a stage folder, before a new run writes there; returns what went."""
    if not folder.is_dir():
        return []
    orphans = [p for p in folder.iterdir() if ORPHAN.fullmatch(p.name) and p.is_file()]
    for path in orphans:
        path.unlink(missing_ok=True)
    return orphans


class FileCheckpoint:
    """One process's whole state in ``<stage>/checkpoint.pt`` (torch.save, written atomically)."""

    def __init__(self, folder: Path, main: bool = True):
        self.path = Path(folder) / CHECKPOINT
        self.main = main
        self.saved: dict | None = None

    def find(self) -> Path | None:
        return self.path if self.path.exists() else None

    def meta(self, path: Path) -> dict:
        self.saved = load_checkpoint(path)
        return {"step": self.saved["step"], "wall_s": self.saved["wall_s"]}

    def restore(self, path: Path, state: TrainState) -> None:
        state.load_state_dict(self.saved["state"])

    def save(self, step: int, meta: dict, state: TrainState) -> Path:
        snapshot = state.state_dict()
        if self.main:
            save_checkpoint(self.path, {"step": step, **meta, "state": snapshot})
        return self.path


class Session:
    """One run of one stage in ``run_dir/<stage>``: its log, its checkpoint and its wall time across resumes."""

    def __init__(
        self,
        run_dir: Path,
        stage: str,
        recipe: Recipe,
        resume: bool,
        console=None,
        main: bool = True,
        checkpoints: Callable[[Path], object] | None = None,
    ):
        self.folder = Path(run_dir) / stage
        self.recipe = recipe
        self.main = main  # only the main process of a distributed run logs
        if main:
            remove_orphans(self.folder)
        self.checkpoints = checkpoints(self.folder) if checkpoints else FileCheckpoint(self.folder, main)
        self.checkpoint = self.checkpoints.find()
        saved = {"step": 0, "wall_s": 0.0}
        if self.checkpoint is not None:
            if not resume:
                raise TrainError(
                    f"{self.checkpoint} exists: pass --resume to continue that run, or choose another --out"
                )
            saved = self.checkpoints.meta(self.checkpoint)
        self.start = saved["step"]
        self.log = TrainLog(self.folder, stage, recipe.steps, self.start, saved["wall_s"], console, enabled=main)

    def __enter__(self) -> Session:
        self.log.__enter__()
        if self.checkpoint is not None:
            self.log.note(f"resuming from step {self.start} ({self.checkpoint})")
        return self

    def __exit__(self, *exc) -> None:
        self.log.__exit__(*exc)

    def train(self, state, step_fn: Callable[[int], dict[str, float]], precision: str = "float32") -> None:
        """Run ``step_fn`` for the remaining steps; each metric is averaged over the steps that reported it.

        ``precision`` bfloat16 runs each step under autocast: matrix products in bf16 (AMX on recent x86 CPUs,
        tensor cores on GPUs), everything the optimizer keeps in float32."""
        recipe = self.recipe
        if self.checkpoint is not None:
            self.checkpoints.restore(self.checkpoint, state)
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        device = pick_device().type
        for step in range(self.start, recipe.steps):
            with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
                metrics = step_fn(step)
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + value
                counts[key] = counts.get(key, 0) + 1
            done = step + 1
            if done % recipe.log_every == 0 or done == recipe.steps:
                self.log.step(done, {k: v / counts[k] for k, v in sums.items()})
                sums, counts = {}, {}
            if done % recipe.checkpoint_every == 0 or done == recipe.steps:
                meta = {"wall_s": self.log.wall_s, "recipe": recipe_dict(recipe)}
                self.checkpoint = self.checkpoints.save(done, meta, state)  # every process: each writes its part
