"""Training recipes: one YAML file per stage, read into a frozen dataclass; every error names the file and key."""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from longlive_cli import safe_yaml


class RecipeError(ValueError):
    """A recipe file that cannot be used, with the file and key in the message."""


@dataclass(frozen=True)
class PoolRecipe:
    """Pre-rendered, VAE-encoded training clips shared by the teacher and the student (cached per settings)."""

    clips: int = 320
    latent_frames: int = 21
    change_prob: float = 0.6  # share of clips with one prompt change, landing on a chunk boundary
    first_change_chunk: int = 2  # earliest chunk a change may land on; the teacher trains on the frames before
    centred_start: bool = True  # every clip starts its object at the frame centre (see data.centred_start)
    rest_frames: int = 0  # pixel frames a centred object rests before it sets off (see data.centred_start)
    seed: int = 1


@dataclass(frozen=True)
class VAERecipe:
    """Narrow Wan-layout VAE into and out of the tiny latent space, on short ShapesWorld clips."""

    steps: int
    vae: dict  # WanVAEConfig fields (z_dim 16, or 17 for the latent space with the shape code)
    seed: int = 0
    size: int = 96
    batch: int = 2
    frames: int = 9  # pixel frames per clip: 1 + 4k
    crop: int = 64  # random square crop the VAE trains on (it is fully convolutional)
    lr: float = 1e-3
    latent_noise: float = 0.05  # std of the noise on the (raw) latents the decoder learns from
    encoder_weight: float = 1.0
    foreground_weight: float = 10.0  # loss weight of object pixels relative to background ones
    stats_clips: int = 16
    precision: str = "float32"  # autocast compute dtype; weights, gradients and optimizer state stay float32
    log_every: int = 10
    checkpoint_every: int = 50


@dataclass(frozen=True)
class DecoderRecipe:
    """TAEHV-class fast decoder (and encoder) for the trained VAE's normalised latent space."""

    steps: int
    taehv: dict  # TAEHVConfig fields
    seed: int = 0
    size: int = 96
    batch: int = 4
    frames: int = 9
    lr: float = 1e-3
    warmup: int = 20
    restarts: list = field(default_factory=list)  # steps where another, shorter cosine starts (none: one cosine)
    restart_lr: float = 0.5  # each later cosine's peak, as a share of lr
    latent_noise: float = 0.05  # decoder robustness to imperfect generated latents
    foreground_weight: float = 10.0  # loss weight of object pixels relative to background ones
    encoder_weight: float = 1.0
    precision: str = "float32"  # autocast compute dtype; weights, gradients and optimizer state stay float32
    log_every: int = 10
    checkpoint_every: int = 50


@dataclass(frozen=True)
class TeacherRecipe:
    """Bidirectional DiT + tiny umT5 trained jointly with flow matching on ground-truth latent clips."""

    steps: int
    dit: dict  # DiTConfig fields; text_dim, text_len and in/out channels are filled in
    text: dict  # UMT5Config fields; vocab comes from the tokenizer
    seed: int = 0
    size: int = 96
    text_len: int = 24
    frames: int = 6  # latent frames per clip, from clips that keep their first prompt at least this long
    batch: int = 8
    lr: float = 3e-4
    warmup: int = 50
    restarts: list = field(default_factory=list)  # steps where another, shorter cosine starts (none: one cosine)
    restart_lr: float = 0.5  # each later cosine's peak, as a share of lr
    grad_clip: float = 1.0
    ema: float = 0.995
    shift: float = 5.0
    foreground_weight: float = 10.0  # loss weight of latent cells on and around the object
    uncond_prob: float = 0.0  # share of clips trained on the empty prompt, for classifier-free guidance
    offset_prob: float = 0.0  # share of clips taken from a later start (first latent re-made as a lone frame's)
    text_attributes: float = 0.0  # weight of the loss that makes every prompt token name every attribute
    text_pretrain: int = 0  # steps of that loss on the text encoder alone before the DiT starts; it then stays frozen
    text_pretrain_batch: int = 64  # descriptions and as many follow-up wordings per pretraining step
    text_pretrain_lr: float = 1e-3
    text_pretrain_weight_decay: float = 1.0  # keeps held-out combinations' tokens naming them (0: as often not)
    pool: PoolRecipe = field(default_factory=PoolRecipe)
    precision: str = "float32"  # autocast compute dtype; weights, gradients and optimizer state stay float32
    log_every: int = 10
    checkpoint_every: int = 50


@dataclass(frozen=True)
class StudentRecipe:
    """Causal few-step student trained in streaming mode over the real KV cache, initialised from the teacher."""

    steps: int
    seed: int = 0
    size: int = 96
    batch: int = 4
    lr: float = 2e-4
    warmup: int = 20
    restarts: list = field(default_factory=list)  # steps where another, shorter cosine starts (none: one cosine)
    restart_lr: float = 0.5  # each later cosine's peak, as a share of lr
    grad_clip: float = 1.0
    ema: float = 0.99
    chunk_frames: int = 3
    window: int = 12
    sink: int = 3
    timesteps: list = field(default_factory=lambda: [1000, 750, 500, 250])
    shift: float = 5.0
    context_noise: float = 0.05  # noise on the clean frames written to the cache, against exposure bias
    own_context_prob: float = 0.0  # share of samples whose cache gets the model's own version of a chunk
    own_context_step: str = "drawn"  # that version: x0 at the chunk's drawn timestep, or at the sampler's "last" step
    unroll_prob: float = 0.0  # share of chunks whose drawn step starts from the sampler's own earlier steps
    describe_change_prob: float = 0.5  # share of changes prompted as "the red ball turns blue" rather than in full
    foreground_weight: float = 10.0  # loss weight of latent cells on and around the object
    pool: PoolRecipe = field(default_factory=PoolRecipe)
    precision: str = "float32"  # autocast compute dtype; weights, gradients and optimizer state stay float32
    log_every: int = 5
    checkpoint_every: int = 20


@dataclass(frozen=True)
class LongRecipe:
    """Streaming long tuning: the student rolled out over long sequences, trained by DMD against the teacher."""

    steps: int
    seed: int = 0
    size: int = 96
    batch: int = 1  # sequences per step over all processes
    lr: float = 1e-5  # generator
    lr_critic: float = 2e-6
    betas: list = field(default_factory=lambda: [0.0, 0.999])
    weight_decay: float = 0.01
    grad_clip: float = 10.0
    ema: float = 0.0  # generator EMA decay; 0 keeps the live weights
    ema_start: int = 200
    critic_steps: int = 5  # the generator steps once every this many steps; the critic every step
    guidance: float = 3.0  # classifier-free guidance of the teacher's (real) score
    chunk_frames: int = 3
    window: int = 12
    sink: int = 3
    timesteps: list = field(default_factory=lambda: [1000, 750, 500, 250])
    shift: float = 5.0
    max_length: int = 240  # latent frames per rolled-out sequence
    first_chunk: int = 21  # latent frames of a sequence's first chunk
    new_frames: int = 18  # new latent frames of every later chunk
    loss_window: int = 21  # latent frames the teacher and critic score; new frames carry the gradient
    min_timestep: float = 20.0  # DMD noise level range, after the shift
    max_timestep: float = 980.0
    switch_prob: float = 1.0  # share of sequences that change prompt once, at a random chunk boundary
    describe_change_prob: float = 0.5  # share of changes prompted as "the red ball turns blue" rather than in full
    lora: dict = field(default_factory=dict)  # {rank, alpha}: LoRA on every block Linear; empty: full fine-tuning
    models: dict = field(default_factory=dict)  # {generator, teacher[, critic]}: models; empty: the run folder's
    precision: str = "float32"  # compute dtype of all three DiTs (float32 master weights, gradients reduced in fp32)
    checkpointing: bool = False  # recompute each block's activations in the backward pass (less memory, more time)
    micro_batch: int = 0  # sequences per process and pass; gradients of a step's passes add up (0: all at once)
    prompts: str = ""  # prompts file (a line: prompt, or prompt<TAB>prompt after the change); empty: ShapesWorld's
    negative_prompt: str = ""  # the unconditional prompt of the teacher's guidance
    log_every: int = 1
    checkpoint_every: int = 50


STAGES: dict[str, type] = {
    "vae": VAERecipe,
    "decoder": DecoderRecipe,
    "teacher": TeacherRecipe,
    "student": StudentRecipe,
    "long": LongRecipe,
}
Recipe = VAERecipe | DecoderRecipe | TeacherRecipe | StudentRecipe | LongRecipe


def _check_type(value: object, kind: object, where: str) -> object:
    if dataclasses.is_dataclass(kind):
        return _build(kind, value, where)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    expected = {int: int, float: float, str: str, bool: bool, dict: dict, list: list}[kind]
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise RecipeError(f"{where}: expected {expected.__name__}, got {type(value).__name__} {value!r}")
    return value


def _build(cls: type, data: object, where: str) -> object:
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; expected one of {', '.join(names)}"
            raise RecipeError(f"{where}: unknown key '{key}'{hint}")
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise RecipeError(f"{where}: missing key '{missing[0]}'")
    return cls(**{k: _check_type(v, hints[k], f"{where}.{k}") for k, v in data.items()})


def _validate(recipe: Recipe, where: str) -> None:
    positive = [name for name in ("steps", "batch", "lr") if getattr(recipe, name) <= 0]
    if positive:
        raise RecipeError(f"{where}.{positive[0]}: must be positive, got {getattr(recipe, positive[0])}")
    if recipe.size % 16:
        raise RecipeError(f"{where}.size: must be a multiple of 16, got {recipe.size}")
    if isinstance(recipe, VAERecipe | DecoderRecipe) and (recipe.frames - 1) % 4:
        raise RecipeError(f"{where}.frames: pixel frames must be 1 + 4k, got {recipe.frames}")
    if isinstance(recipe, VAERecipe) and not (8 <= recipe.crop <= recipe.size and recipe.crop % 8 == 0):
        raise RecipeError(f"{where}.crop: must be a multiple of 8 between 8 and size {recipe.size}, got {recipe.crop}")
    if isinstance(recipe, TeacherRecipe | StudentRecipe):
        pool = recipe.pool
        if pool.first_change_chunk < 1:
            raise RecipeError(f"{where}.pool.first_change_chunk: must be at least 1, got {pool.first_change_chunk}")
        if not 0.0 <= pool.change_prob <= 1.0:
            raise RecipeError(f"{where}.pool.change_prob: must be between 0 and 1, got {pool.change_prob}")
    if isinstance(recipe, TeacherRecipe) and not 1 <= recipe.frames <= recipe.pool.latent_frames:
        raise RecipeError(
            f"{where}.frames: must be between 1 and the pool's {recipe.pool.latent_frames} latent frames, "
            f"got {recipe.frames}"
        )
    if isinstance(recipe, DecoderRecipe | TeacherRecipe | StudentRecipe):
        _validate_restarts(recipe, where)
    if isinstance(recipe, TeacherRecipe) and recipe.text_pretrain and recipe.text_attributes:
        raise RecipeError(
            f"{where}.text_attributes: trains the text encoder beside the DiT, which text_pretrain freezes; keep one"
        )
    if recipe.precision not in ("float32", "bfloat16"):
        raise RecipeError(f"{where}.precision: expected 'float32' or 'bfloat16', got '{recipe.precision}'")
    if isinstance(recipe, LongRecipe):
        _validate_long(recipe, where)
    if isinstance(recipe, StudentRecipe):
        if recipe.pool.latent_frames % recipe.chunk_frames:
            raise RecipeError(
                f"{where}.pool.latent_frames: {recipe.pool.latent_frames} is not a whole number of "
                f"{recipe.chunk_frames}-frame chunks"
            )
        if not 0 <= recipe.sink < recipe.window or recipe.window - recipe.sink < recipe.chunk_frames:
            raise RecipeError(f"{where}.window: need 0 <= sink < window and room for a chunk beside the sink")
        for name in ("own_context_prob", "unroll_prob"):
            if not 0.0 <= getattr(recipe, name) <= 1.0:
                raise RecipeError(f"{where}.{name}: must be between 0 and 1, got {getattr(recipe, name)}")
        if recipe.own_context_step not in ("drawn", "last"):
            raise RecipeError(f"{where}.own_context_step: expected 'drawn' or 'last', got '{recipe.own_context_step}'")
        if not recipe.timesteps or any(not 0 < t <= 1000 for t in recipe.timesteps):
            raise RecipeError(f"{where}.timesteps: need one or more steps in 1..1000, got {recipe.timesteps}")


def _validate_restarts(recipe: DecoderRecipe | TeacherRecipe | StudentRecipe, where: str) -> None:
    restarts = recipe.restarts
    if restarts != sorted(set(restarts)) or any(not recipe.warmup < r < recipe.steps for r in restarts):
        raise RecipeError(
            f"{where}.restarts: need increasing steps between warmup and steps ({recipe.steps}), got {restarts}"
        )
    if not 0.0 < recipe.restart_lr <= 1.0:
        raise RecipeError(f"{where}.restart_lr: must be in (0, 1], got {recipe.restart_lr}")


def _validate_long(recipe: LongRecipe, where: str) -> None:
    n = recipe.chunk_frames
    for name in ("first_chunk", "new_frames"):
        if getattr(recipe, name) <= 0 or getattr(recipe, name) % n:
            raise RecipeError(f"{where}.{name}: must be a positive multiple of chunk_frames {n}")
    if recipe.first_chunk != recipe.loss_window:
        raise RecipeError(f"{where}.first_chunk: must equal loss_window ({recipe.loss_window}): it is trained whole")
    if not recipe.new_frames < recipe.loss_window:
        raise RecipeError(f"{where}.new_frames: must be below loss_window ({recipe.loss_window}) to leave context")
    if recipe.max_length < recipe.first_chunk:
        raise RecipeError(f"{where}.max_length: shorter than first_chunk ({recipe.first_chunk})")
    if not 0 <= recipe.sink < recipe.window or recipe.window - recipe.sink < n:
        raise RecipeError(f"{where}.window: need 0 <= sink < window and room for a chunk beside the sink")
    if recipe.critic_steps < 1:
        raise RecipeError(f"{where}.critic_steps: must be at least 1, got {recipe.critic_steps}")
    if len(recipe.betas) != 2:
        raise RecipeError(f"{where}.betas: need two numbers, got {recipe.betas}")
    if recipe.lora and (set(recipe.lora) != {"rank", "alpha"} or recipe.lora["rank"] < 1):
        raise RecipeError(f"{where}.lora: give rank (>= 1) and alpha, or leave it out for full fine-tuning")
    if recipe.models and not {"generator", "teacher"} <= set(recipe.models) <= {"generator", "teacher", "critic"}:
        raise RecipeError(f"{where}.models: give generator and teacher (and optionally critic), or leave it out")
    if recipe.micro_batch < 0 or (recipe.micro_batch and recipe.batch % recipe.micro_batch):
        raise RecipeError(f"{where}.micro_batch: must divide batch ({recipe.batch}), got {recipe.micro_batch}")
    if recipe.lora and recipe.ema:
        raise RecipeError(f"{where}.ema: LoRA training keeps no EMA (as LongLive's); set ema: 0 or drop lora")
    if not 0 <= recipe.min_timestep < recipe.max_timestep <= 1000:
        raise RecipeError(f"{where}.min_timestep: need 0 <= min_timestep < max_timestep <= 1000")


def load_recipe(path: str | Path, stage: str) -> Recipe:
    """Read and check ``path`` as the recipe of ``stage``; the file's own ``stage:`` key must agree."""
    path = Path(path)
    if stage not in STAGES:
        raise RecipeError(f"unknown stage '{stage}'; expected one of {', '.join(STAGES)}")
    try:
        data = safe_yaml.load(path.read_text())
    except OSError as e:
        raise RecipeError(f"{path}: cannot read recipe ({e.strerror})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise RecipeError(f"{path}{line}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of settings")
    data = dict(data)
    declared = data.pop("stage", None)
    if declared != stage:
        raise RecipeError(f"{path}: stage: the file is a '{declared}' recipe, not '{stage}'")
    recipe = _build(STAGES[stage], data, f"{path}: {stage}")
    _validate(recipe, f"{path}: {stage}")
    return recipe


def recipe_from_dict(data: dict, stage: str) -> Recipe:
    """A recipe back from ``recipe_dict`` (a summary's or checkpoint's), checked as a file's would be."""
    return _build(STAGES[stage], data, f"stored {stage} recipe")


def recipe_dict(recipe: Recipe) -> dict:
    """Plain dict of a recipe, for checkpoints, logs and the model card."""
    return dataclasses.asdict(recipe)
