"""Stage ``teacher``: the bidirectional Wan DiT and the tiny umT5, trained by flow matching (jointly or after it).

Clips are latent frames of the pool under their first prompt (from clips that keep it that long), freshly worded
each time, or the empty prompt for a share of them so that classifier-free guidance has an unconditional model to
push away from. A share of the clips start later than frame 0, their first latent made into a lone frame's (as a
window of a long video is scored in the ``long`` stage), so the teacher knows objects anywhere and moving from the
first frame, not only the pool's centred starts. The object covers a few latent cells, so its cells weigh more in
the loss (else backgrounds come first and the object much later). With ``text_attributes``, linear heads read every
attribute a prompt states from each of its tokens' features, on the batch's prompts and on as many follow-up wordings
of the pool's changes ("the red ball turns blue", labelled with what they say of the new attributes), and their loss
trains the text encoder too (``text.AttributeHeads``). With ``text_pretrain`` the heads train the text encoder alone
first, on many more prompts per step, and it then stays frozen through the teacher and the student, as Wan's umT5
does: the DiT learns from features that name each attribute of combinations it never saw. Timesteps are drawn
uniformly from the shift-5 table, which puts most of the weight on high noise, where the student's four warped steps
live.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from longlive_cli.models.dit import CausalWanDiT, DiTConfig
from longlive_cli.models.text import UMT5TextEncoder
from longlive_cli.schedule import FlowMatchSchedule
from longlive_cli.train import text as text_lib
from longlive_cli.train.artifacts import FINAL, load_weights, save_weights, write_summary
from longlive_cli.train.checkpoint import Randomness
from longlive_cli.train.data import LatentPool, build_pool, pool_path
from longlive_cli.train.latents import image_latent
from longlive_cli.train.loop import Session, TrainState, pick_device
from longlive_cli.train.optim import EMA, adamw
from longlive_cli.train.recipe import PoolRecipe, TeacherRecipe, recipe_dict
from longlive_cli.train.vae import load_vae, vae_config_of
from longlive_cli.world.grammar import describe

UNCOND = ""  # the unconditional prompt of classifier-free guidance


def init_dit(dit: CausalWanDiT) -> None:
    """Wan's initialisation: xavier linears, small text/time embeddings, a zero output head."""
    for module in dit.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    nn.init.xavier_uniform_(dit.patch_embedding.weight.flatten(1))
    for module in (*dit.text_embedding, *dit.time_embedding):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
    nn.init.zeros_(dit.head.head.weight)


def load_pool(run_dir: Path, pool: PoolRecipe, size: int, note) -> LatentPool:
    """The run's latent pool for these settings, normalised with the run's VAE statistics, made on first use."""
    cfg = load_vae(run_dir).cfg
    return build_pool(pool_path(Path(run_dir), pool, size, cfg), pool, size, cfg, note)


def load_dit_and_text(path: Path, device: torch.device | str = "cpu") -> tuple[CausalWanDiT, UMT5TextEncoder, dict]:
    """A trained DiT and text encoder from a ``teacher`` or ``student`` weights file, with the stored configs."""
    parts, config = load_weights(path)
    dit = CausalWanDiT(DiTConfig.from_dict(config["dit"]))
    dit.load_state_dict(parts["dit"])
    text = text_lib.load_text_encoder(config["text"], config["text_len"], parts["text"])
    text.model.to(device)
    return dit.to(device), text, config


def run(recipe: TeacherRecipe, run_dir: Path, resume: bool = False, console=None) -> Path:
    """Train the teacher on the run's pool and write ``teacher/final.safetensors`` (EMA weights)."""
    device = pick_device()
    torch.manual_seed(recipe.seed)
    text = text_lib.text_encoder(recipe.text, recipe.text_len)
    text.model.to(device)
    channels = vae_config_of(run_dir).z_dim  # read without building a VAE, which would draw from the seeded RNG
    dit_cfg = DiTConfig.from_dict(
        {**recipe.dit, "text_dim": text.text_dim, "text_len": recipe.text_len, "in_dim": channels, "out_dim": channels}
    )
    dit = CausalWanDiT(dit_cfg)
    init_dit(dit)
    dit.to(device)
    modules: dict[str, nn.Module] = {"dit": dit, "text": text.model}
    if recipe.text_attributes:
        modules["attribute_heads"] = text_lib.AttributeHeads(text.text_dim).to(device)
    frozen = bool(recipe.text_pretrain)
    params = [p for name, m in modules.items() if not (frozen and name == "text") for p in m.parameters()]
    optimizer, scheduler = adamw(params, recipe.lr, recipe.warmup, recipe.steps, recipe.restarts, recipe.restart_lr)
    emas = {"dit": EMA(dit, recipe.ema)}
    if not frozen:
        emas["text"] = EMA(text.model, recipe.ema)
    rand = Randomness(recipe.seed)
    state = TrainState(modules, optimizer, scheduler, rand, emas)
    schedule = FlowMatchSchedule(recipe.shift)

    with Session(run_dir, "teacher", recipe, resume, console) as session:
        pool = load_pool(run_dir, recipe.pool, recipe.size, session.log.note)
        single = np.array([i for i, c in enumerate(pool.change) if c < 0 or c >= recipe.frames])
        changed = np.array([i for i, c in enumerate(pool.change) if c >= 0])
        length = pool.latents.shape[1]
        pretrained = session.folder / "text_pretrain.json"  # what the pretrained encoder names, kept across resumes
        if frozen:
            if session.checkpoint is None:
                named = text_lib.pretrain(
                    text,
                    pool.attributes,
                    recipe.text_pretrain,
                    recipe.text_pretrain_batch,
                    recipe.text_pretrain_lr,
                    recipe.seed,
                    recipe.text_pretrain_weight_decay,
                )
                pretrained.write_text(json.dumps({k: round(v, 4) for k, v in named.items()}))
                shares = ", ".join(f"{k} {v:.0%}" for k, v in named.items())
                session.log.note(f"text encoder pretrained and frozen; held-out descriptions' tokens name {shares}")
            text.model.eval().requires_grad_(False)

        def window(i: int) -> torch.Tensor:
            """``frames`` latents of clip i under its first prompt, from the start or (offset_prob) a later frame."""
            last = (pool.change[i] if pool.change[i] >= 0 else length) - recipe.frames
            start = int(rand.np.integers(0, last + 1)) if rand.np.random() < recipe.offset_prob else 0
            clip = pool.latents[i, start : start + recipe.frames]
            return torch.cat([image_latent(clip[:1], pool.mean, pool.std), clip[1:]])

        def step(_: int) -> dict[str, float]:
            idx = single[rand.np.integers(0, len(single), size=recipe.batch)]
            x0 = torch.stack([window(i) for i in idx]).to(device)
            attributes = [pool.attributes[i][0] for i in idx]
            prompts = [describe(a, rand.np) for a in attributes]
            if recipe.uncond_prob:
                drop = rand.np.random(recipe.batch) < recipe.uncond_prob
                prompts = [UNCOND if d else p for p, d in zip(prompts, drop, strict=True)]
                attributes = [None if d else a for a, d in zip(attributes, drop, strict=True)]
            t = schedule.timesteps[rand.np.integers(0, schedule.num_train_timesteps, size=recipe.batch)]
            t = t[:, None].expand(-1, recipe.frames).to(device)
            noise = rand.randn(*x0.shape).to(device)
            with torch.set_grad_enabled(not frozen):
                features, mask = text_lib.encode_with_mask(text, prompts)
            flow = dit(schedule.add_noise(x0, noise, t), t, dit.encode_prompt(features))
            weight = pool.weights(x0, recipe.foreground_weight)[:, :, None]
            loss = (weight * (flow - schedule.flow_target(x0, noise)).pow(2)).mean() / weight.mean()
            metrics = {"loss": loss.item()}
            if recipe.text_attributes:
                heads = modules["attribute_heads"]
                labels = [None if a is None else text_lib.labels_of(a) for a in attributes]
                named, share = heads.loss(features, mask, labels)
                if len(changed):
                    pairs = [pool.attributes[i][:2] for i in changed[rand.np.integers(0, len(changed), recipe.batch)]]
                    followed, followed_share = text_lib.follow_up_loss(heads, text, pairs, rand.np)
                    named, share = (named + followed) / 2, (share + followed_share) / 2
                loss = loss + recipe.text_attributes * named
                metrics.update(attribute_loss=named.item(), attributes_named=share)
            loss.backward()
            return {**metrics, "grad": state.step(params, recipe.grad_clip)}

        session.train(state, step, recipe.precision)
        path = session.folder / FINAL
        config = {"dit": dit_cfg.to_dict(), "text": asdict(text.model.cfg), "text_len": recipe.text_len}
        text_weights = text.model.state_dict() if frozen else emas["text"].weights(text.model)
        if frozen:
            config["text_frozen"] = True
        save_weights(path, {"dit": emas["dit"].weights(dit), "text": text_weights}, config)
        write_summary(
            session.folder,
            {
                "stage": "teacher",
                "steps": recipe.steps,
                "wall_s": round(session.log.wall_s, 1),
                "params": sum(p.numel() for p in dit.parameters()),
                "text_params": sum(p.numel() for p in text.model.parameters()),
                "recipe": recipe_dict(recipe),
                **({"text_held_out_named": json.loads(pretrained.read_text())} if pretrained.is_file() else {}),
            },
        )
    return path
