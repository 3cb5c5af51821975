"""Stage ``student``: the causal few-step generator, trained in streaming mode over the real KV cache.

Teacher forcing, chunk by chunk as the engine generates: the chunk is noised to one of the four warped timesteps
(fresh noise per sample) and trained on the flow target with the cache as context; then the clean ground-truth
chunk is written to the cache by a t=0 pass without gradients, as the engine's cache pass does. For a share of the
samples the cache gets the model's own version of the chunk instead (its x0 at the drawn timestep, or what the
sampler's last step returns from freshly noised ground truth, which is what the engine caches when the earlier
steps went right), so it learns to continue and correct imperfect context as it meets it when generating, rather
than letting blobs spread chunk after chunk. For a share of the chunks (``unroll_prob``) the drawn step starts not
from noised ground truth but from what the sampler's earlier steps make of pure noise on this context, so the later
steps learn to correct the errors they meet when generating. Clips that change prompt switch at a chunk boundary,
the whole batch at once, with the engine's KV recache. Gradients of a clip's chunks add up to one optimizer step.
Initialised from the teacher (same architecture).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from longlive_cli.engine import EngineConfig
from longlive_cli.models.dit import CausalWanDiT, PromptKV
from longlive_cli.models.kv_cache import KVCache
from longlive_cli.models.text import UMT5TextEncoder
from longlive_cli.sampler import ChunkSampler, GeneratorNoise
from longlive_cli.train import text as text_lib
from longlive_cli.train.artifacts import FINAL, save_weights, write_summary
from longlive_cli.train.checkpoint import Randomness
from longlive_cli.train.data import prompts_for
from longlive_cli.train.loop import Session, TrainState, pick_device
from longlive_cli.train.optim import EMA, adamw
from longlive_cli.train.recipe import StudentRecipe, recipe_dict
from longlive_cli.train.teacher import load_dit_and_text, load_pool


def engine_settings(recipe: StudentRecipe) -> dict:
    """The streaming settings the student is trained for and ships with (``EngineConfig`` fields)."""
    return {
        "chunk_frames": recipe.chunk_frames,
        "window": recipe.window,
        "sink": recipe.sink,
        "steps": list(recipe.timesteps),
        "shift": recipe.shift,
    }


def engine_config(recipe: StudentRecipe) -> EngineConfig:
    """The engine settings of ``engine_settings`` as the sampler takes them."""
    return EngineConfig(**{**engine_settings(recipe), "steps": tuple(recipe.timesteps)})


class StreamingTrainer:
    """One clip-batch of streaming teacher forcing over the engine's own sampler, cache pass and recache."""

    def __init__(self, dit: CausalWanDiT, text: UMT5TextEncoder, recipe: StudentRecipe, rand: Randomness):
        self.dit = dit
        self.text = text
        self.recipe = recipe
        self.rand = rand
        self.sampler = ChunkSampler(dit, engine_config(recipe), GeneratorNoise(rand.torch))
        self.schedule = self.sampler.schedule
        self.timesteps = torch.tensor(self.sampler.timesteps)

    def new_cache(self, batch: int, height: int, width: int) -> KVCache:
        return self.sampler.new_cache(batch, (self.dit.cfg.in_dim, height, width), training=True)

    def clip(self, x0: Tensor, prompts: list[list[str]], change: int, weights: Callable[[Tensor], Tensor]) -> float:
        """Backpropagate the mean flow loss over the chunks of clean latents x0 [B, F, C, h, w]; returns it.

        ``weights`` gives the per-cell loss weights [B, n, h, w] of a chunk's latents.
        """
        recipe, dit, sampler = self.recipe, self.dit, self.sampler
        b, frames, _, height, width = x0.shape
        n = recipe.chunk_frames
        chunks = frames // n
        cache = self.new_cache(b, height, width)
        history = x0[:, :0]
        segment = 0
        total = 0.0
        for c in range(chunks):
            start = c * n
            if start == change:
                segment = 1
                with torch.no_grad():
                    prompt = dit.encode_prompt(text_lib.encode(self.text, [p[segment] for p in prompts]))
                sampler.recache(prompt, cache, history, start)
            prompt = dit.encode_prompt(text_lib.encode(self.text, [p[segment] for p in prompts]))
            target = x0[:, start : start + n]
            drawn = self.rand.np.integers(0, len(self.timesteps), size=b)
            unrolled = bool(recipe.unroll_prob) and self.rand.np.random() < recipe.unroll_prob
            if unrolled:  # the whole batch takes one step, so the sampler's earlier steps run once
                drawn[:] = drawn[0]
            t = self.timesteps[drawn].to(x0.device)[:, None].expand(-1, n)
            noise = self.rand.randn(*target.shape).to(x0.device)
            if unrolled:
                noisy = self.sampled(noise, int(drawn[0]), prompt, cache, start)
                goal = self.schedule.flow_to(target, noisy, t)
            else:
                noisy = self.schedule.add_noise(target, noise, t)
                goal = self.schedule.flow_target(target, noise)
            flow = dit(noisy, t, prompt, cache, start)
            weight = weights(target)[:, :, None]
            loss = (weight * (flow - goal).pow(2)).mean() / weight.mean()
            (loss / chunks).backward()
            total += loss.item() / chunks
            cache.detach()
            clean = target + recipe.context_noise * self.rand.randn(*target.shape).to(x0.device)
            if recipe.own_context_prob:
                own = torch.from_numpy(self.rand.np.random(b) < recipe.own_context_prob).to(x0.device)
                if recipe.own_context_step == "last":
                    predicted = self.last_step(target, prompt, cache, start)
                else:
                    predicted = self.schedule.x0_from_flow(flow.detach(), noisy, t)
                clean = torch.where(own[:, None, None, None, None], predicted, clean)
            sampler.cache_pass(clean, prompt, cache, start)
            history = sampler.remember(history, clean)
        return total

    @torch.no_grad()
    def sampled(self, noise: Tensor, step: int, prompt: PromptKV, cache: KVCache, start: int) -> Tensor:
        """The chunk as the engine's sampler hands it to step ``step`` (0-based): its earlier steps run from pure
        noise on this context, each x0 renoised with fresh noise to the next timestep."""
        if step == 0:
            return noise
        return self.sampler.renoised(self.sampler.denoise(noise, prompt, cache, start, stop=step - 1), step)

    @torch.no_grad()
    def last_step(self, target: Tensor, prompt: PromptKV, cache: KVCache, start: int) -> Tensor:
        """The chunk as the sampler's last step would return it from freshly noised ground truth: the context the
        engine caches when the earlier steps went right."""
        last = len(self.sampler.timesteps) - 1
        return self.sampler.denoise(self.sampler.renoised(target, last), prompt, cache, start, first=last)


def objective(recipe: StudentRecipe) -> str:
    """The student's training objective in words, for the summary and the model card."""
    version = "as the sampler's last step returns it" if recipe.own_context_step == "last" else "as they predict it"
    own = f"; {recipe.own_context_prob:.0%} of samples cache the chunk {version}" if recipe.own_context_prob else ""
    rest = (
        f"; objects rest {recipe.pool.rest_frames} frames at the centre before setting off"
        if recipe.pool.rest_frames
        else ""
    )
    unroll = (
        f"; {recipe.unroll_prob:.0%} of chunks start their step from the sampler's own earlier steps"
        if recipe.unroll_prob
        else ""
    )
    return f"streaming teacher forcing (flow matching at the 4 warped timesteps over the KV cache{own}{unroll}{rest})"


def run(recipe: StudentRecipe, run_dir: Path, resume: bool = False, console=None) -> Path:
    """Train the student from the teacher of ``run_dir`` and write ``student/final.safetensors`` (EMA weights)."""
    device = pick_device()
    dit, text, config = load_dit_and_text(Path(run_dir) / "teacher" / FINAL, device)
    dit.train().requires_grad_(True)
    train_text = not config.get("text_frozen", False)  # a teacher's pretrained, frozen encoder stays frozen
    text.model.train(train_text).requires_grad_(train_text)
    params = [*dit.parameters(), *(text.model.parameters() if train_text else ())]
    optimizer, scheduler = adamw(params, recipe.lr, recipe.warmup, recipe.steps, recipe.restarts, recipe.restart_lr)
    emas = {"dit": EMA(dit, recipe.ema)}
    if train_text:
        emas["text"] = EMA(text.model, recipe.ema)
    rand = Randomness(recipe.seed)
    state = TrainState({"dit": dit, "text": text.model}, optimizer, scheduler, rand, emas)
    trainer = StreamingTrainer(dit, text, recipe, rand)

    with Session(run_dir, "student", recipe, resume, console) as session:
        pool = load_pool(run_dir, recipe.pool, recipe.size, session.log.note)
        groups = {change: pool.indices(change) for change in pool.change_frames()}
        keys = sorted(groups)
        weights = [len(groups[k]) / len(pool.change) for k in keys]

        def step(_: int) -> dict[str, float]:
            change = keys[rand.np.choice(len(keys), p=weights)]
            idx = rand.np.choice(groups[change], size=recipe.batch)
            prompts = [prompts_for(rand.np, pool.attributes[i], recipe.describe_change_prob) for i in idx]
            loss = trainer.clip(
                pool.latents[idx].to(device), prompts, change, lambda x: pool.weights(x, recipe.foreground_weight)
            )
            grad = state.step(params, recipe.grad_clip)
            return {"loss": loss, "grad": grad}

        session.train(state, step, recipe.precision)
        path = session.folder / FINAL
        config = {**config, "engine": engine_settings(recipe)}
        text_weights = emas["text"].weights(text.model) if train_text else text.model.state_dict()
        save_weights(path, {"dit": emas["dit"].weights(dit), "text": text_weights}, config)
        write_summary(
            session.folder,
            {
                "stage": "student",
                "steps": recipe.steps,
                "wall_s": round(session.log.wall_s, 1),
                "params": sum(p.numel() for p in dit.parameters()),
                "recipe": recipe_dict(recipe),
                "objective": objective(recipe),
            },
        )
    return path
