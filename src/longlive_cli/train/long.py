"""Stage ``long``: streaming long tuning, LongLive's second training stage (train long, test long).

Each sequence is rolled out by the student exactly as the engine generates: chunks of 3 latent frames, 4 warped
steps with fresh re-noising, a clean cache-write pass, window + frame-sink KV cache carried across chunks without
gradient. A sequence is produced in training chunks (the first ``first_chunk`` frames, then ``new_frames`` at a
time up to ``max_length``), one or two per optimizer step, and persists across steps. Every block of a chunk stops
at one random exit step shared by the chunk; only that forward runs with autograd.

Each chunk is scored on a ``loss_window`` of latents: [the last pixel frame before the window, re-encoded as a
first-frame latent; the overlap frames; the new frames], with gradient on the new frames only. The loss is DMD:
a frozen bidirectional teacher (real score, classifier-free guidance) and a critic initialised from it (fake score,
trained on the generator's chunks by flow matching), the generator pulled along their normalised difference. The
generator steps once every ``critic_steps`` steps, the critic every step. One prompt change per sequence lands on a
chunk boundary with the engine's KV recache (the sink kept); the teacher and critic follow the new prompt from it.

Randomness is drawn per slot of the global batch and once for all (exit step, switch frame), so ``torchrun`` with N
processes trains on the same numbers as one process with the whole batch. The three DiTs are sharded with FSDP2 (see
``parallel``), one process or many; a process may roll its slots out in several micro-batches whose gradients add
up, and checkpoints are DCP folders every process writes its shards of (see ``sharded``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict
from torch.distributed.tensor import DTensor, Shard

from longlive_cli.bundle import PRESETS, load_bundle, save_bundle
from longlive_cli.checkpoints import save_safetensors
from longlive_cli.models.dit import CausalWanDiT, PromptKV
from longlive_cli.models.taehv import TAEHV
from longlive_cli.models.text import UMT5TextEncoder
from longlive_cli.models.vae import WanVAE
from longlive_cli.sampler import ChunkSampler, SlotNoise
from longlive_cli.schedule import FlowMatchSchedule
from longlive_cli.train import text as text_lib
from longlive_cli.train.artifacts import FINAL, save_weights, write_summary
from longlive_cli.train.checkpoint import Randomness
from longlive_cli.train.data import prompts_for
from longlive_cli.train.decoder import load_fast_decoder
from longlive_cli.train.loop import Session, pick_device
from longlive_cli.train.lora import add_lora, merged_state, peft_state
from longlive_cli.train.optim import EMA
from longlive_cli.train.parallel import (
    DTYPES,
    World,
    full_state,
    full_tensor,
    grad_norm,
    init_world,
    local_device,
    shard,
    shutdown,
)
from longlive_cli.train.recipe import LongRecipe, RecipeError, recipe_dict
from longlive_cli.train.sharded import ShardedCheckpoints, load, shapes
from longlive_cli.train.student import engine_config, engine_settings
from longlive_cli.train.teacher import load_dit_and_text
from longlive_cli.world.grammar import describe
from longlive_cli.world.timelines import random_attributes, random_change

LORA_FILE = "lora.safetensors"


def slot_randomness(seed: int, slot: int) -> Randomness:
    """The generators of one slot of the global batch: the same on whichever process trains that slot."""
    return Randomness(seed * 1_000_003 + 1 + slot)


def switch_frames(recipe: LongRecipe) -> list[int]:
    """Chunk starts after the first chunk where a sequence may change prompt (21, 39, 57, ... for the defaults)."""
    return list(range(recipe.first_chunk, recipe.max_length - recipe.new_frames + 1, recipe.new_frames))


def chunk_starts(recipe: LongRecipe) -> list[int]:
    """First latent frame of every training chunk of a sequence."""
    return [0, *switch_frames(recipe)]


@dataclass
class Sequence:
    """What a rolled-out sequence needs besides the cache: prompts, change frame, and the frames kept as context."""

    texts: list[list[str]]  # per local slot: the generator's prompt per segment
    teacher_texts: list[list[str]]  # per local slot: full descriptions the teacher and critic read
    switch: int  # latent frame of the prompt change; -1 for none
    frame: int = 0
    segment: int = 0
    history: Tensor | None = None  # the last ``window`` clean frames (for recache)
    previous: Tensor | None = None  # the last ``loss_window`` frames (for the next loss window)


class Rollout:
    """The student generating long sequences chunk by chunk, as ``StreamingGenerator`` does, for training."""

    def __init__(
        self,
        dit: CausalWanDiT,
        text,
        decoder: TAEHV,
        recipe: LongRecipe,
        latent_shape: tuple[int, int, int],
        slots: list[Randomness],
        shared: Randomness,
        device: torch.device,
        pairs: list[tuple[str, str | None]] | None = None,
    ):
        self.dit, self.text, self.decoder, self.recipe = dit, text, decoder, recipe
        self.pairs = pairs  # a prompts file's lines; None: ShapesWorld prompts
        self.latent_shape = latent_shape
        self.slots, self.shared, self.device = slots, shared, device
        noise = SlotNoise([r.torch for r in slots])
        self.sampler = ChunkSampler(dit, engine_config(recipe), noise, noisy_context=True)
        self.cache = self.sampler.new_cache(len(slots), latent_shape, training=True, dtype=DTYPES[recipe.precision])
        self.seq: Sequence | None = None

    @property
    def finished(self) -> bool:
        """No sequence under way, or the current one has no room for another chunk."""
        return self.seq is None or self.seq.frame + self.recipe.new_frames > self.recipe.max_length

    def start(self) -> None:
        """A new sequence: fresh prompts per slot, one shared change frame (or none), an empty cache."""
        recipe = self.recipe
        choices = switch_frames(recipe)
        switch = -1
        if choices and self.shared.np.random() < recipe.switch_prob:
            switch = int(choices[self.shared.np.integers(len(choices))])
        texts, teacher_texts = [], []
        for rand in self.slots:
            if self.pairs is not None:
                first, then = self.pairs[rand.np.integers(len(self.pairs))]
                pair = [first, then or self.pairs[rand.np.integers(len(self.pairs))][0]]
                texts.append(pair)
                teacher_texts.append(pair)
                continue
            first = random_attributes(rand.np, held_out=False)
            attrs = [first, random_change(first, rand.np, held_out=False)]
            texts.append(prompts_for(rand.np, attrs, recipe.describe_change_prob))
            teacher_texts.append([describe(a, rand.np) for a in attrs])
        self.cache.reset()
        self.seq = Sequence(texts, teacher_texts, switch)

    def prompt(self, segment: int) -> PromptKV:
        feats = text_lib.encode(self.text, [t[segment] for t in self.seq.texts])
        return self.dit.encode_prompt(feats)

    def teacher_prompts(self) -> list[str]:
        """What the teacher and critic read for the chunk just made."""
        return [t[self.seq.segment] for t in self.seq.teacher_texts]

    def exit_step(self) -> int:
        """The denoising step at which the next chunk stops, and the one that carries gradient: a random draw from
        the generator every process shares, so all processes stop at the same step."""
        return int(self.shared.np.integers(len(self.sampler.timesteps)))

    def chunk(self, grad: bool) -> tuple[Tensor, Tensor]:
        """Generate the next training chunk; returns its loss window [B, W, C, h, w] and gradient mask [W]."""
        recipe, seq = self.recipe, self.seq
        start = seq.frame
        n = recipe.first_chunk if start == 0 else recipe.new_frames
        if start == seq.switch:
            seq.segment = 1
            with torch.no_grad():
                self.sampler.recache(self.prompt(seq.segment), self.cache, seq.history, start)
        stop = self.exit_step()
        with torch.set_grad_enabled(grad):
            prompt = self.prompt(seq.segment)
        shape = (len(self.slots), n, *self.latent_shape)
        new = self.sampler.generate(prompt, self.cache, start, shape, stop=stop, grad=grad)
        seq.history = self.sampler.remember(seq.history, new.detach())
        seq.frame += n
        return self.loss_window(new)

    def loss_window(self, new: Tensor) -> tuple[Tensor, Tensor]:
        """[re-encoded last frame before the window, overlap, new] and the mask of the new frames."""
        seq, w = self.seq, self.recipe.loss_window
        n = new.shape[1]
        if seq.previous is None:
            window = new
        else:
            joined = torch.cat((seq.previous, new), 1)
            with torch.no_grad():
                pixels = self.decoder.decode(joined[:, : n + 1].transpose(1, 2).float())
                image = self.decoder.encode(pixels[:, :, -1:]).transpose(1, 2).to(new.dtype)
            window = torch.cat((image, joined[:, n + 1 :]), 1)
        seq.previous = torch.cat((seq.previous, new.detach()), 1)[:, -w:] if seq.previous is not None else new.detach()
        mask = torch.zeros(w, dtype=torch.bool, device=new.device)
        mask[w - n :] = True
        return window, mask

    def state_dict(self) -> dict:
        seq = self.seq
        return {
            "cache": {
                "k": self.cache.k,
                "v": self.cache.v,
                "global_end": self.cache.global_end,
                "local_end": self.cache.local_end,
            },
            "seq": None if seq is None else asdict(seq),
        }

    def load_state_dict(self, state: dict) -> None:
        cache = state["cache"]
        self.cache.k.copy_(cache["k"])
        self.cache.v.copy_(cache["v"])
        self.cache.global_end = cache["global_end"]
        self.cache.local_end = cache["local_end"]
        seq = state["seq"]
        self.seq = None if seq is None else Sequence(**seq)


class DMD:
    """Distribution matching: teacher (real score, with CFG) and critic (fake score) on a noised loss window."""

    def __init__(self, teacher: CausalWanDiT, critic: CausalWanDiT, text, recipe: LongRecipe):
        self.teacher, self.critic, self.text, self.recipe = teacher, critic, text, recipe
        self.schedule = FlowMatchSchedule(recipe.shift)

    def features(self, prompts: list[str]) -> Tensor:
        with torch.no_grad():
            return text_lib.encode(self.text, prompts)

    def noised(self, x: Tensor, slots: list[Randomness]) -> tuple[Tensor, Tensor, Tensor]:
        """x_t, t [B, F] and the noise: per sample, t uniform then shifted, clamped, shared by all frames."""
        recipe = self.recipe
        u = torch.tensor([float(r.np.integers(0, 1000)) for r in slots]) / 1000
        t = 1000 * recipe.shift * u / (1 + (recipe.shift - 1) * u)
        t = t.clamp(recipe.min_timestep, recipe.max_timestep).to(x.device)[:, None].expand(-1, x.shape[1])
        noise = torch.stack([r.randn(*x.shape[1:]) for r in slots]).to(x.device, x.dtype)
        return self.schedule.add_noise(x.detach(), noise, t), t, noise

    def generator_loss(self, x: Tensor, mask: Tensor, prompts: list[str], slots: list[Randomness]) -> Tensor:
        """0.5 * MSE(x, stopgrad(x - grad)) over the masked frames, grad the normalised fake - real score."""
        xt, t, _ = self.noised(x, slots)
        with torch.no_grad():
            features = self.features(prompts)
            cond = self.teacher.encode_prompt(features)
            uncond = self.teacher.encode_prompt(self.features([self.recipe.negative_prompt] * len(prompts)))
            critic_cond = self.critic.encode_prompt(features)
            fake = self.schedule.x0_from_flow(self.critic(xt, t, critic_cond), xt, t)
            real_cond = self.schedule.x0_from_flow(self.teacher(xt, t, cond), xt, t)
            real_uncond = self.schedule.x0_from_flow(self.teacher(xt, t, uncond), xt, t)
            real = real_cond + self.recipe.guidance * (real_cond - real_uncond)
            scale = (x.detach() - real).abs().mean(dim=(1, 2, 3, 4), keepdim=True)
            grad = torch.nan_to_num((fake - real) / scale)
        target = (x.detach() - grad).double()
        return 0.5 * (x.double() - target)[:, mask].pow(2).mean()

    def critic_loss(self, x: Tensor, mask: Tensor, prompts: list[str], slots: list[Randomness]) -> Tensor:
        """Flow matching of the critic on the generator's (detached) frames, over the masked frames."""
        x = x.detach()
        xt, t, noise = self.noised(x, slots)
        flow = self.critic(xt, t, self.critic.encode_prompt(self.features(prompts)))
        return (flow - self.schedule.flow_target(x, noise))[:, mask].pow(2).mean()


def trainable(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


def join_rollouts(parts: list[dict]) -> dict:
    """Rollout states of consecutive slot groups as one state (batch dimensions concatenated)."""
    first = parts[0]
    cache = {**first["cache"], "k": torch.cat([p["cache"]["k"] for p in parts], 1)}
    cache["v"] = torch.cat([p["cache"]["v"] for p in parts], 1)
    if first["seq"] is None:
        return {"cache": cache, "seq": None}
    seq = dict(first["seq"])
    for key in ("texts", "teacher_texts"):
        seq[key] = [t for p in parts for t in p["seq"][key]]
    for key in ("history", "previous"):
        seq[key] = None if seq[key] is None else torch.cat([p["seq"][key] for p in parts])
    return {"cache": cache, "seq": seq}


def rollout_share(state: dict, share: range) -> dict:
    """The slots ``share`` of a rollout state."""
    cut = slice(share.start, share.stop)
    cache = {**state["cache"], "k": state["cache"]["k"][:, cut], "v": state["cache"]["v"][:, cut]}
    if state["seq"] is None:
        return {"cache": cache, "seq": None}
    seq = dict(state["seq"])
    for key in ("texts", "teacher_texts"):
        seq[key] = seq[key][cut]
    for key in ("history", "previous"):
        seq[key] = None if seq[key] is None else seq[key][cut]
    return {"cache": cache, "seq": seq}


def micro_groups(share: range, micro_batch: int) -> list[range]:
    """A process's slots in consecutive micro-batches of ``micro_batch`` (0: one group)."""
    size = micro_batch or len(share)
    if len(share) % size:
        raise RecipeError(f"micro_batch {micro_batch} does not divide the {len(share)} sequences of a process")
    return [range(start, start + size) for start in range(share.start, share.stop, size)]


# Frozen weights come back from the model files, so a checkpoint of a LoRA run holds the adapters alone.
OPTIONS = StateDictOptions(ignore_frozen_params=True)
LOADING = StateDictOptions(ignore_frozen_params=True, strict=False)  # the frozen keys are missing: checked below
BATCH_DIM = {"cache_k": 1, "cache_v": 1, "history": 0, "previous": 0, "slot_rng": 0}


class LongState:
    """Both models, optimizers, EMA, every generator of randomness and the sequences under way: a bit-exact resume.

    Written through DCP: model and optimizer shards as FSDP holds them, each process's slots (KV caches, context
    frames, generator states) as tensors sharded over the batch, and the rest (prompts, positions, numpy generator
    states, gathered from every process) as one JSON document. A checkpoint resumes with any number of processes
    that divides the batch.
    """

    def __init__(self, gen, critic, gen_opt, critic_opt, rollouts, shared, ema_decay: float, world: World):
        self.gen, self.critic = gen, critic
        self.gen_opt, self.critic_opt = gen_opt, critic_opt
        self.rollouts, self.shared = rollouts, shared
        self.slots = [r for rollout in rollouts for r in rollout.slots]
        self.ema_decay = ema_decay
        self.ema: EMA | None = None
        self.world = world

    def _sharded(self, local: Tensor, name: str) -> DTensor:
        return DTensor.from_local(local, self.world.mesh, [Shard(BATCH_DIM[name])], run_check=False)

    def _models(self) -> dict:
        gen, gen_opt = get_state_dict(self.gen, self.gen_opt, options=OPTIONS)
        critic, critic_opt = get_state_dict(self.critic, self.critic_opt, options=OPTIONS)
        return {"gen": gen, "gen_opt": gen_opt, "critic": critic, "critic_opt": critic_opt}

    def checkpoint_state(self) -> dict:
        local = join_rollouts([r.state_dict() for r in self.rollouts])
        seq = local["seq"]
        parts = self.world.gather(
            {
                "np": [r.np.bit_generator.state for r in self.slots],
                "texts": None if seq is None else seq["texts"],
                "teacher_texts": None if seq is None else seq["teacher_texts"],
            }
        )
        doc = {
            "slot_np": [s for p in parts for s in p["np"]],
            "shared_np": self.shared.np.bit_generator.state,
            "global_end": local["cache"]["global_end"],
            "local_end": local["cache"]["local_end"],
            "seq": None,
        }
        tensors = {
            "cache_k": local["cache"]["k"],
            "cache_v": local["cache"]["v"],
            "slot_rng": torch.stack([r.torch.get_state() for r in self.slots]).to(local["cache"]["k"].device),
        }
        if seq is not None:
            doc["seq"] = {
                "texts": [t for p in parts for t in p["texts"]],
                "teacher_texts": [t for p in parts for t in p["teacher_texts"]],
                **{k: seq[k] for k in ("switch", "frame", "segment")},
            }
            tensors.update({k: seq[k] for k in ("history", "previous") if seq[k] is not None})
        state = {
            **self._models(),
            **{name: self._sharded(t, name) for name, t in tensors.items()},
            "shared_rng": self.shared.torch.get_state(),
            "doc": json.dumps(doc),
        }
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def restore(self, path: Path) -> None:
        """Load the checkpoint at ``path`` into this process's models, optimizers and share of the slots."""
        stored = shapes(path)
        if any(name.startswith("ema.") for name in stored) and self.ema is None:
            self.ema = EMA(self.gen, self.ema_decay)
        device = self.rollouts[0].cache.k.device
        locals_ = {}
        for name, dim in BATCH_DIM.items():
            if name in stored:
                size, dtype = stored[name]
                size = [n // self.world.size if d == dim else n for d, n in enumerate(size)]
                locals_[name] = torch.zeros(size, dtype=dtype, device=device)
        state = {
            **self._models(),
            **{name: self._sharded(t, name) for name, t in locals_.items()},
            "shared_rng": torch.zeros_like(self.shared.torch.get_state()),
            "doc": "",
        }
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        load(state, path)
        for name in ("gen", "critic"):
            model = getattr(self, name)
            keys = set_state_dict(
                model,
                getattr(self, f"{name}_opt"),
                model_state_dict=state[name],
                optim_state_dict=state[f"{name}_opt"],
                options=LOADING,
            )
            trained = {k for k, p in model.named_parameters() if p.requires_grad}
            if keys.unexpected_keys or trained & set(keys.missing_keys):
                raise RuntimeError(f"{path}: {name} does not match this run's model ({keys})")
        doc = json.loads(state["doc"])
        self.shared.np.bit_generator.state = doc["shared_np"]
        self.shared.torch.set_state(state["shared_rng"])
        mine = self.world.split(len(doc["slot_np"]))
        for rand, np_state, torch_state in zip(
            self.slots, doc["slot_np"][mine.start : mine.stop], locals_["slot_rng"], strict=True
        ):
            rand.np.bit_generator.state = np_state
            rand.torch.set_state(torch_state.cpu().clone())  # a whole tensor: set_state reads its storage
        cache = {"k": locals_["cache_k"], "v": locals_["cache_v"]}
        cache.update(global_end=doc["global_end"], local_end=doc["local_end"])
        seq = doc["seq"]
        if seq is not None:
            seq["texts"], seq["teacher_texts"] = (seq[k][mine.start : mine.stop] for k in ("texts", "teacher_texts"))
            seq.update({k: locals_.get(k) for k in ("history", "previous")})
        whole = {"cache": cache, "seq": seq}
        offset = 0
        for rollout in self.rollouts:
            n = len(rollout.slots)
            rollout.load_state_dict(rollout_share(whole, range(offset, offset + n)))
            offset += n


def optimizer(params: list[nn.Parameter], lr: float, recipe: LongRecipe) -> torch.optim.AdamW:
    return torch.optim.AdamW(params, lr=lr, betas=tuple(recipe.betas), weight_decay=recipe.weight_decay)


def apply_step(params: list[nn.Parameter], opt: torch.optim.Optimizer, clip: float) -> float:
    """Clip the (FSDP-averaged) gradients and step; returns the gradient norm before clipping."""
    norm = torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return grad_norm(norm)


def run(recipe: LongRecipe, run_dir: Path, resume: bool = False, console=None) -> Path:
    """Long-tune the student of ``run_dir`` (or the recipe's ``models``) and write ``long/final.safetensors``."""
    device = local_device(pick_device())  # each GPU process on its own device before NCCL starts
    world = init_world(device)
    try:
        return _run(recipe, Path(run_dir), resume, console, world, device)
    finally:
        shutdown()


@dataclass
class Models:
    """What the stage tunes and scores with, and how the tuned generator is written back in its source's format."""

    gen: CausalWanDiT
    gen_text: UMT5TextEncoder
    teacher: CausalWanDiT
    teacher_text: UMT5TextEncoder
    codec: TAEHV | WanVAE  # decode + encode: the loss window's first frame
    latent_shape: tuple[int, int, int]
    save: Callable[[Path, dict[str, Tensor], dict], None]  # (path, tuned DiT weights, engine settings)
    critic: CausalWanDiT | None = None  # None: a copy of the teacher


def run_models(run_dir: Path, recipe: LongRecipe, device: torch.device) -> Models:
    """The run folder's student, teacher and fast decoder (the embedded model's recipe)."""
    gen, gen_text, config = load_dit_and_text(run_dir / "student" / FINAL, device)
    teacher, teacher_text, _ = load_dit_and_text(run_dir / "teacher" / FINAL, device)
    codec = load_fast_decoder(run_dir)[0].to(device)
    side = recipe.size // 8

    def save(path: Path, weights: dict[str, Tensor], engine: dict) -> None:
        save_weights(path, {"dit": weights, "text": gen_text.model.state_dict()}, {**config, "engine": engine})

    return Models(gen, gen_text, teacher, teacher_text, codec, (gen.cfg.in_dim, side, side), save)


def bundle_models(recipe: LongRecipe, device: torch.device) -> Models:
    """Generator, teacher (and critic) from model files or folders ``longlive`` loads (``models:`` in the recipe)."""
    for role, name in recipe.models.items():
        if name in PRESETS:
            raise RecipeError(
                f"models.{role}: '{name}' names an architecture, not weights: it serves --plan; give a model file or "
                "folder to train"
            )
    gen_bundle = load_bundle(recipe.models["generator"], device)
    teacher_bundle = load_bundle(recipe.models["teacher"], device, DTYPES[recipe.precision])  # frozen: as it computes
    critic = load_bundle(recipe.models["critic"], device).dit if "critic" in recipe.models else None
    spec = gen_bundle.spec

    def save(path: Path, weights: dict[str, Tensor], engine: dict) -> None:
        tuned = replace(spec, engine=replace(spec.engine, **{**engine, "steps": tuple(engine["steps"])}))
        fast = gen_bundle.fast_decoder.state_dict() if gen_bundle.fast_decoder is not None else None
        text = gen_bundle.text
        save_bundle(
            path, tuned, weights, gen_bundle.vae.state_dict(), text.model.state_dict(), text.tokenizer.to_str(),
            fast_decoder=fast,
        )  # fmt: skip

    return Models(
        gen_bundle.dit,
        gen_bundle.text,
        teacher_bundle.dit,
        gen_bundle.text if same_text_encoder(gen_bundle.text, teacher_bundle.text) else teacher_bundle.text,
        gen_bundle.decoder(),
        spec.latent_shape,
        save,
        critic,
    )


def same_text_encoder(a: UMT5TextEncoder, b: UMT5TextEncoder) -> bool:
    """Whether two loaded text encoders are one (Wan's 1.3B and 14B ship the same umT5): then only one is kept."""
    x, y = a.model.state_dict(), b.model.state_dict()
    if a.tokenizer.to_str() != b.tokenizer.to_str() or x.keys() != y.keys():
        return False
    return all(x[k].shape == y[k].shape and torch.equal(x[k].to(y[k].dtype), y[k]) for k in x)


def read_prompt_pairs(path: Path) -> list[tuple[str, str | None]]:
    """A prompts file: one prompt a line, optionally a TAB and the prompt it changes to; blank and # lines skipped."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise RecipeError(f"{path}: cannot read prompts ({e.strerror})") from None
    pairs = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = [p.strip() for p in line.split("\t")]
        if len(parts) > 2 or not all(parts):
            raise RecipeError(f"{path} line {number}: expected 'prompt' or 'prompt<TAB>prompt after the change'")
        pairs.append((parts[0], parts[1] if len(parts) == 2 else None))
    if not pairs:
        raise RecipeError(f"{path}: no prompts")
    return pairs


def prepare(
    models: Models, recipe: LongRecipe, world: World, device: torch.device
) -> tuple[CausalWanDiT, CausalWanDiT, CausalWanDiT]:
    """Generator and critic trainable with float32 masters (and LoRA if asked), the teacher frozen; all sharded.

    The models arrive on the CPU: FSDP moves each DiT's shards to the device; text encoders and codec go whole.
    """
    gen, teacher = models.gen, models.teacher
    for module in (teacher, models.gen_text.model, models.teacher_text.model):
        module.eval().requires_grad_(False)
    critic = models.critic if models.critic is not None else copy.deepcopy(teacher)
    gen, critic = gen.float().train().requires_grad_(True), critic.float().train().requires_grad_(True)
    teacher = teacher.to(DTYPES[recipe.precision])
    for module in (models.gen_text.model, models.teacher_text.model):
        module.to(device, DTYPES[recipe.precision])
    models.codec = models.codec.to(device)
    if recipe.lora:
        add_lora(gen, recipe.lora["rank"], recipe.lora["alpha"])
        add_lora(critic, recipe.lora["rank"], recipe.lora["alpha"])
    for model in (gen, critic):
        shard(model, world, recipe.precision, recipe.checkpointing)
    shard(teacher, world, recipe.precision)
    return gen, critic, teacher


def _run(recipe: LongRecipe, run_dir: Path, resume: bool, console, world: World, device: torch.device) -> Path:
    torch.manual_seed(recipe.seed)
    cpu = torch.device("cpu")
    models = bundle_models(recipe, cpu) if recipe.models else run_models(run_dir, recipe, cpu)
    pairs = read_prompt_pairs(Path(recipe.prompts)) if recipe.prompts else None
    gen, critic, teacher = prepare(models, recipe, world, device)
    gen_params, critic_params = trainable(gen), trainable(critic)
    gen_opt = optimizer(gen_params, recipe.lr, recipe)
    critic_opt = optimizer(critic_params, recipe.lr_critic, recipe)

    shared = Randomness(recipe.seed)
    rollouts = []
    for group in micro_groups(world.split(recipe.batch), recipe.micro_batch):
        slots = [slot_randomness(recipe.seed, i) for i in group]
        rollout = Rollout(gen, models.gen_text, models.codec, recipe, models.latent_shape, slots, shared, device, pairs)
        rollout.cache.recomputable = recipe.checkpointing
        rollouts.append(rollout)
    share = sum(len(r.slots) for r in rollouts)
    dmd = DMD(teacher, critic, models.teacher_text, recipe)
    state = LongState(gen, critic, gen_opt, critic_opt, rollouts, shared, recipe.ema, world)

    def passes(model: CausalWanDiT, loss_of: Callable[[Rollout], Tensor]) -> float:
        """One backward per micro-batch, each with the same shared draws; FSDP reduces after the last."""
        start = shared.state_dict()
        total = 0.0
        for i, rollout in enumerate(rollouts):
            shared.load_state_dict(start)
            model.set_requires_gradient_sync(i == len(rollouts) - 1)
            if rollout.finished:
                rollout.start()
            loss = loss_of(rollout) * (len(rollout.slots) / share)
            loss.backward()
            total += loss.item()
        return world.average(total)

    def gen_loss(rollout: Rollout) -> Tensor:
        window, mask = rollout.chunk(grad=True)
        return dmd.generator_loss(window, mask, rollout.teacher_prompts(), rollout.slots)

    def critic_loss(rollout: Rollout) -> Tensor:
        with torch.no_grad():
            window, mask = rollout.chunk(grad=False)
        return dmd.critic_loss(window, mask, rollout.teacher_prompts(), rollout.slots)

    def step(i: int) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if i % recipe.critic_steps == 0:
            metrics["gen_loss"] = passes(gen, gen_loss)
            metrics["gen_grad"] = apply_step(gen_params, gen_opt, recipe.grad_clip)
            if recipe.ema and i >= recipe.ema_start:
                if state.ema is None:
                    state.ema = EMA(gen, recipe.ema)
                state.ema.update(gen)
        metrics["critic_loss"] = passes(critic, critic_loss)
        metrics["critic_grad"] = apply_step(critic_params, critic_opt, recipe.grad_clip)
        metrics["frame"] = float(rollouts[0].seq.frame)
        return metrics

    checkpoints = lambda folder: ShardedCheckpoints(folder, world)  # noqa: E731
    with Session(run_dir, "long", recipe, resume, console, main=world.main, checkpoints=checkpoints) as session:
        session.log.note(
            f"{world.size} process(es), FSDP2 in {recipe.precision}; sequences per process and step: {share}"
            f" in {len(rollouts)} pass(es)"
        )
        session.train(state, step)
        path = session.folder / FINAL
        tuned = full_state(gen)
        averaged = {k: full_tensor(v) for k, v in state.ema.state_dict().items()} if state.ema else None
        if world.main:
            weights = {k: averaged.get(k, v) for k, v in tuned.items()} if averaged else tuned
            if recipe.lora:
                weights = merged_state(tuned, recipe.lora["alpha"] / recipe.lora["rank"])
                save_safetensors(peft_state(tuned), session.folder / LORA_FILE, {"alpha": str(recipe.lora["alpha"])})
            models.save(path, weights, engine_settings(recipe))
            write_summary(
                session.folder,
                {
                    "stage": "long",
                    "steps": recipe.steps,
                    "wall_s": round(session.log.wall_s, 1),
                    "processes": world.size,
                    "params": sum(v.numel() for v in weights.values()),
                    "trained_params": sum(p.numel() for p in gen_params),
                    "recipe": recipe_dict(recipe),
                    "objective": "streaming long tuning: DMD against the teacher (CFG "
                    f"{recipe.guidance}) on {recipe.loss_window}-frame windows of {recipe.max_length}-frame rollouts",
                },
            )
        world.barrier()
    return path
