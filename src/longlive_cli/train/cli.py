"""``longlive train``: run one stage of the embedded model's recipe, or export the finished run into the package."""

from __future__ import annotations

import importlib
import os
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from longlive_cli.extras import MissingExtra
from longlive_cli.terminal import markup_safe
from longlive_cli.train.loop import TrainError
from longlive_cli.train.recipe import STAGES, RecipeError, load_recipe

EXPORT = "export"
err = Console(stderr=True, highlight=False)

train_app = typer.Typer(
    add_completion=False, pretty_exceptions_enable=False, context_settings={"help_option_names": ["-h", "--help"]}
)


def run_stage(stage: str, config: Path, out: Path, resume: bool = False, steps: int | None = None) -> Path:
    """Run ``stage`` with the recipe at ``config`` in the run folder ``out``; returns the stage's weights file."""
    recipe = load_recipe(config, stage)
    if steps is not None:
        recipe = replace(recipe, steps=steps)
    module = importlib.import_module(f"longlive_cli.train.{stage}")
    return module.run(recipe, out, resume=resume, console=err)


def print_plan(config: Path | None, stage: str, gpus: int, gpu_memory: str) -> None:
    """``--plan``: the long recipe's memory per GPU, on stdout."""
    from longlive_cli.train.plan import parse_memory, plan, render

    if config is None:
        raise typer.BadParameter("give the long recipe to plan", param_hint="--config")
    if stage not in ("", "long"):
        raise typer.BadParameter("--plan covers the long stage", param_hint="--stage")
    memory = parse_memory(gpu_memory)
    print(render(plan(load_recipe(config, "long"), gpus, memory)))


@train_app.command()
def train(
    stage: Annotated[str, typer.Option(help=f"{' | '.join(STAGES)} | {EXPORT}")] = "",
    config: Annotated[Path | None, typer.Option(help="Recipe YAML of the stage (not needed for export).")] = None,
    out: Annotated[
        Path,
        typer.Option(
            "-o",
            "--output",
            "--out",
            metavar="RUN",
            help="Run folder: each stage reads the earlier ones' results here.",
        ),
    ] = Path("runs/tiny"),
    resume: Annotated[bool, typer.Option(help="Continue the stage's checkpoint in the run folder.")] = False,
    steps: Annotated[
        int | None, typer.Option(help="Override the recipe's step count (the schedule follows it).")
    ] = None,
    assets: Annotated[Path | None, typer.Option(help="Export: folder for tiny.safetensors and MODEL_CARD.md.")] = None,
    command: Annotated[str, typer.Option(help="Export: the command line recorded in the model card.")] = "",
    total_s: Annotated[
        float | None, typer.Option(help="Export: wall time of the whole recipe, for the model card.")
    ] = None,
    generator: Annotated[
        str | None, typer.Option(help="Export: the DiT to ship, student | long (default: long once it has run).")
    ] = None,
    threads: Annotated[
        int, typer.Option(help="CPU threads (0: PyTorch's default); 1 avoids OpenMP stalls on a busy shared CPU.")
    ] = 0,
    plan: Annotated[
        bool, typer.Option("--plan", help="Print the memory per GPU of a long recipe's run and exit (no GPU needed).")
    ] = False,
    gpus: Annotated[int, typer.Option(min=1, help="Plan: number of GPUs.")] = 1,
    gpu_memory: Annotated[str, typer.Option(help="Plan: memory of one GPU, e.g. 80GB.")] = "80GB",
) -> None:
    """Train a stage (vae, decoder, teacher, student, long) or export a finished run as the embedded model.

    Every stage runs under ``torchrun`` too; ``long`` then splits its batch over the processes.
    """
    if threads:
        import torch

        torch.set_num_threads(threads)
    try:
        if plan:
            print_plan(config, stage, gpus, gpu_memory)
            return
        if stage == EXPORT:
            from longlive_cli.train.export import export

            path = export(out, assets, command=command, total_s=total_s, console=err, generator=generator)
        elif stage in STAGES:
            if config is None:
                raise typer.BadParameter("give the stage's recipe file", param_hint="--config")
            path = run_stage(stage, config, out, resume, steps)
        else:
            raise typer.BadParameter(f"choose one of {', '.join(STAGES)}, {EXPORT}", param_hint="--stage")
    except (RecipeError, TrainError, FileNotFoundError, ValueError, MissingExtra) as e:
        err.print(f"[bold red]error:[/] {markup_safe(str(e))}", soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        where = markup_safe(str(out / stage))
        err.print(f"[yellow]interrupted:[/] continue with --resume (checkpoints are in {where})")
        raise typer.Exit(130) from None
    if os.environ.get("RANK", "0") == "0":  # under torchrun, once
        err.print(f"[green]done:[/] {markup_safe(str(path))}")


def main() -> None:
    train_app()


if __name__ == "__main__":
    main()
