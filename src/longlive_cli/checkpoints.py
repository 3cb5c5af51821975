"""Read, check, convert, merge and save weight files, accepting only plain tensors and failing with clear messages."""

from __future__ import annotations

import json
import os
import pickle
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .atomic import temporary_beside

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
SHARD_INDEX_SUFFIX = ".index.json"

# Dict keys that hold the DiT state dict inside LongLive training checkpoints, in order of preference.
DIT_CHECKPOINT_KEYS = ("generator", "model")
EMA_CHECKPOINT_KEY = "generator_ema"
LORA_CHECKPOINT_KEYS = ("generator_lora",)

# Name segments inserted by FSDP, activation checkpointing and torch.compile wrappers.
WRAPPER_SEGMENTS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")
# Prefixes added by the LongLive `WanDiffusionWrapper` (`model.`) and by single-file repacks (`diffusion_model.`).
DIT_PREFIXES = ("model.", "diffusion_model.")
# Tensors some writers save although Wan recomputes them at construction.
DIT_UNSAVED_KEYS = ("freqs",)

# (original Wan, diffusers WanTransformer3DModel) substrings, applied in this order to go original -> diffusers and
# in reverse order, swapped, to go back. The block-level `.modulation` pair keeps its leading dot so that the
# top-level `scale_shift_table` maps back to `head.modulation`. Diffusers swaps norm2 and norm3.
DIFFUSERS_DIT_KEYS: list[tuple[str, str]] = [
    ("time_embedding.0", "condition_embedder.time_embedder.linear_1"),
    ("time_embedding.2", "condition_embedder.time_embedder.linear_2"),
    ("text_embedding.0", "condition_embedder.text_embedder.linear_1"),
    ("text_embedding.2", "condition_embedder.text_embedder.linear_2"),
    ("time_projection.1", "condition_embedder.time_proj"),
    ("head.modulation", "scale_shift_table"),
    ("head.head", "proj_out"),
    (".modulation", ".scale_shift_table"),
    ("ffn.0", "ffn.net.0.proj"),
    ("ffn.2", "ffn.net.2"),
    ("norm2", "norm__placeholder"),
    ("norm3", "norm2"),
    ("norm__placeholder", "norm3"),
    ("self_attn.q", "attn1.to_q"),
    ("self_attn.k", "attn1.to_k"),
    ("self_attn.v", "attn1.to_v"),
    ("self_attn.o", "attn1.to_out.0"),
    ("self_attn.norm_q", "attn1.norm_q"),
    ("self_attn.norm_k", "attn1.norm_k"),
    ("cross_attn.q", "attn2.to_q"),
    ("cross_attn.k", "attn2.to_k"),
    ("cross_attn.v", "attn2.to_v"),
    ("cross_attn.o", "attn2.to_out.0"),
    ("cross_attn.norm_q", "attn2.norm_q"),
    ("cross_attn.norm_k", "attn2.norm_k"),
]
# Substrings that only occur in diffusers-named DiT keys.
DIFFUSERS_DIT_MARKERS = ("condition_embedder.", "scale_shift_table", ".attn1.", ".attn2.", "proj_out.")

PEFT_PREFIX = "base_model.model."
LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<part>[AB])(?:\.(?P<adapter>[^.]+))?\.weight$")

PREVIEW = 5
ZIP_MAGIC = b"PK\x03\x04"


class CheckpointError(Exception):
    """A weight file or state dict is unreadable or does not fit; the message names the file and the keys."""


@dataclass(frozen=True)
class LoraWeights:
    """Low-rank deltas per target module (`blocks.0.self_attn.q`), applied as W + (alpha / rank) * B @ A."""

    targets: dict[str, tuple[torch.Tensor, torch.Tensor]]
    rank: int
    alpha: float
    source: str = "LoRA"

    @property
    def scale(self) -> float:
        """The factor PEFT applies to B @ A."""
        return self.alpha / self.rank


def _preview(items: Sequence[str]) -> str:
    """First few items of a list, so messages about 825-key state dicts stay readable."""
    shown = ", ".join(items[:PREVIEW])
    return shown + (f", ... ({len(items) - PREVIEW} more)" if len(items) > PREVIEW else "")


def _fail_if(source: str, headline: str, groups: Sequence[tuple[str, Sequence[str]]]) -> None:
    """Raise one CheckpointError listing the first few items and the total of every non-empty group."""
    found = [(label, items) for label, items in groups if items]
    if found:
        lines = [f"{source}: {headline}"] + [f"  {label} ({len(items)}): {_preview(items)}" for label, items in found]
        raise CheckpointError("\n".join(lines))


def _reason(exc: BaseException) -> str:
    """One line from a library exception; torch's unpickler buries the cause in a long help text."""
    text = str(exc)
    marker = "WeightsUnpickler error: "
    if marker in text:
        text = text.split(marker, 1)[1].split(". Please", 1)[0]
    line = text.strip().splitlines()[0].split(". ", 1)[0] if text.strip() else ""
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


@contextmanager
def _reading(path: Path, what: str) -> Iterator[None]:
    """Turn any failure of a third-party reader into a CheckpointError naming the file."""
    try:
        yield
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{path}: {what} ({_reason(exc)})") from exc


def _require_file(path: Path) -> None:
    """Fail early on paths that cannot be a weight file, before a reader reports something cryptic."""
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a regular file (a directory?); expected a weight file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: file is empty")


def check_finite(state: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse weights holding NaN or infinity, which would render as noise or black without a word."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    _fail_if(source, "weights hold NaN or infinite values (a damaged or diverged checkpoint)", [("tensors", bad)])


def _refusal(text: str) -> str | None:
    """What the weights-only unpickler refused, or None when the failure was something else."""
    if "Weights only load failed" not in text and "Unsupported global" not in text:
        return None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(("Trying to load unsupported GLOBAL", "Unsupported global", "Unsupported operand")):
            return line.split(" whose module")[0].rstrip(".")
        if "WeightsUnpickler error: " in line and line.split("WeightsUnpickler error: ", 1)[1].strip():
            return line.split("WeightsUnpickler error: ", 1)[1].strip()
    return "an object that is not a tensor or a plain container"


def _read_pickle(path: Path) -> object:
    """Load a torch file with the weights-only unpickler, memory-mapping the zip format to avoid a full copy."""
    with path.open("rb") as f:
        is_zip = f.read(len(ZIP_MAGIC)) == ZIP_MAGIC
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except Exception as exc:
        refused = _refusal(str(exc)) if isinstance(exc, pickle.UnpicklingError) else None
        if refused is not None:
            raise CheckpointError(
                f"{path}: refused as unsafe: the file asks the unpickler for more than tensors and plain containers "
                f"({refused}); only load it with other tools if you trust where it came from"
            ) from exc
        what = "not a readable torch file, truncated or corrupt?"
        raise CheckpointError(f"{path}: {what} ({_reason(exc)})") from exc


def _unwrap(path: Path, obj: object, keys: Sequence[str]) -> Mapping:
    """Select the nested state dict of a training checkpoint, or the object itself when it is a bare one."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, expected a dict of tensors")
    for key in keys:
        if isinstance(obj.get(key), Mapping):
            return obj[key]
    return obj


def _as_tensor_dict(path: Path, obj: Mapping) -> dict[str, torch.Tensor]:
    """Check that a loaded dict maps names to tensors only."""
    bad = [f"{k!r} ({type(v).__name__})" for k, v in obj.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    _fail_if(str(path), "expected a dict of name -> tensor", [("other entries", bad)])
    return dict(obj)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Read every tensor of one safetensors file onto the CPU."""
    with (
        _reading(path, "not a readable safetensors file, truncated or corrupt?"),
        safe_open(path, framework="pt", device="cpu") as f,
    ):
        names = f.keys()
        return {name: f.get_tensor(name) for name in names}


def _read_sharded(index: Path) -> dict[str, torch.Tensor]:
    """Read the shards named by a Hugging Face `weight_map` index and check that each holds exactly its keys."""
    with _reading(index, "not a readable shard index"):
        weight_map = json.loads(index.read_text()).get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(f"{index}: shard index has no 'weight_map' of tensor name -> shard file")
    by_shard: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        by_shard.setdefault(shard, []).append(name)
    tensors: dict[str, torch.Tensor] = {}
    for shard, names in by_shard.items():
        if Path(shard).name != shard:
            raise CheckpointError(f"{index}: shard {shard!r} is not a file name in the index's folder")
        part = read_tensors(index.parent / shard)
        missing = [n for n in names if n not in part]
        extra = [n for n in part if n not in weight_map]
        _fail_if(
            str(index),
            f"shard {shard} does not match the index",
            [("listed but absent", missing), ("present but unlisted", extra)],
        )
        tensors.update((n, part[n]) for n in names)
    return tensors


def read_tensors(path: str | Path, *, unwrap: Sequence[str] = ()) -> dict[str, torch.Tensor]:
    """Read a name -> tensor dict from safetensors, a shard index or a torch file, never running pickled code.

    For torch files holding a dict of dicts, the first key of `unwrap` whose value is a dict is returned instead.
    """
    path = Path(path)
    _require_file(path)
    if path.name.endswith(SHARD_INDEX_SUFFIX):
        return _read_sharded(path)
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    if path.suffix in TORCH_SUFFIXES:
        return _as_tensor_dict(path, _unwrap(path, _read_pickle(path), unwrap))
    raise CheckpointError(
        f"{path}: unknown weight format; expected .safetensors, *{SHARD_INDEX_SUFFIX} or {', '.join(TORCH_SUFFIXES)}"
    )


def read_safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata stored in a safetensors header (empty when there is none)."""
    path = Path(path)
    _require_file(path)
    with _reading(path, "not a readable safetensors file"), safe_open(path, framework="pt") as f:
        return dict(f.metadata() or {})


def _rename(state: Mapping[str, torch.Tensor], fn: Callable[[str], str], source: str) -> dict[str, torch.Tensor]:
    """Apply a key renaming, refusing two keys that collapse onto one name."""
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, value in state.items():
        new = fn(key)
        if new in out:
            raise CheckpointError(f"{source}: keys {origin[new]!r} and {key!r} both map to {new!r}")
        out[new], origin[new] = value, key
    return out


def _strip_wrappers(key: str) -> str:
    """Remove wrapper segments wherever they occur in a key."""
    for segment in WRAPPER_SEGMENTS:
        key = key.replace(segment, "")
    return key


def is_diffusers_dit(keys: Iterable[str]) -> bool:
    """Whether DiT keys follow the diffusers `WanTransformer3DModel` naming."""
    return any(marker in key for key in keys for marker in DIFFUSERS_DIT_MARKERS)


def _from_diffusers(key: str) -> str:
    """Map one diffusers DiT key back to the original Wan name."""
    for original, diffusers in reversed(DIFFUSERS_DIT_KEYS):
        key = key.replace(diffusers, original)
    return key


def to_wan_keys(state: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Normalise a DiT state dict from LongLive, FSDP, single-file or diffusers layouts to original Wan names."""
    out = _rename(state, _strip_wrappers, source)
    for prefix in DIT_PREFIXES:
        if out and all(k.startswith(prefix) for k in out):
            out = _rename(out, lambda k, p=prefix: k.removeprefix(p), source)
    if is_diffusers_dit(out):
        out = _rename(out, _from_diffusers, source)
    return {k: v for k, v in out.items() if k not in DIT_UNSAVED_KEYS}


def read_dit_state_dict(path: str | Path, *, prefer_ema: bool = False) -> dict[str, torch.Tensor]:
    """Read DiT weights from any supported file and layout, returning original Wan key names.

    LongLive checkpoints are unwrapped from `generator` (or `generator_ema` first when `prefer_ema`, falling back
    to `generator` when the file has no EMA copy), else `model`; a bare state dict is used as is.
    """
    keys = (EMA_CHECKPOINT_KEY, *DIT_CHECKPOINT_KEYS) if prefer_ema else DIT_CHECKPOINT_KEYS
    return to_wan_keys(read_tensors(path, unwrap=keys), source=str(path))


def read_lora(path: str | Path, *, alpha: float | None = None) -> LoraWeights:
    """Read a PEFT LoRA (`generator_lora` or a bare PEFT dict); `alpha` defaults to the rank, as LongLive ships it."""
    source = str(path)
    state = read_tensors(path, unwrap=LORA_CHECKPOINT_KEYS)
    parts: dict[str, dict[str, torch.Tensor]] = {}
    adapters: set[str] = set()
    unknown: list[str] = []
    for key, tensor in state.items():
        match = LORA_KEY.match(_strip_wrappers(key))
        if match is None:
            unknown.append(key)
            continue
        module = match["module"].removeprefix(PEFT_PREFIX)
        adapters.add(match["adapter"] or "")
        parts.setdefault(module, {})[match["part"]] = tensor
    _fail_if(source, "expected only PEFT lora_A / lora_B weights", [("other keys", unknown)])
    if not parts:
        raise CheckpointError(f"{source}: no LoRA weights found")
    if len(adapters) > 1:
        raise CheckpointError(f"{source}: expected a single adapter, found names {sorted(adapters)}")
    incomplete = [f"{m} (only {''.join(p)})" for m, p in parts.items() if set(p) != {"A", "B"}]
    _fail_if(source, "every LoRA target needs lora_A and lora_B", [("incomplete targets", incomplete)])
    targets = {m: (p["A"], p["B"]) for m, p in parts.items()}
    not_2d = [m for m, (a, b) in targets.items() if a.ndim != 2 or b.ndim != 2]
    _fail_if(source, "LoRA A and B must be matrices", [("targets", not_2d)])
    rank = next(iter(targets.values()))[0].shape[0]
    odd = [
        f"{m} (A {list(a.shape)}, B {list(b.shape)})"
        for m, (a, b) in targets.items()
        if a.shape[0] != rank or b.shape[1] != rank
    ]
    _fail_if(source, f"expected one rank ({rank}, from the first target) everywhere", [("other ranks", odd)])
    return LoraWeights(targets, rank, float(rank) if alpha is None else float(alpha), source)


def merge_lora(
    state: Mapping[str, torch.Tensor], lora: LoraWeights, scale: float | None = None
) -> dict[str, torch.Tensor]:
    """Fold a LoRA into the weights, W' = W + scale * B @ A in float32, so inference needs no extra matmuls.

    `scale` replaces `lora.alpha / lora.rank` when given. Returns a new dict: merged weights are new tensors, all
    other entries are the input tensors themselves; the input dict and its tensors are left unchanged.
    """
    factor = lora.scale if scale is None else scale
    missing = [f"{m}.weight" for m in lora.targets if f"{m}.weight" not in state]
    wrong = [
        f"{m}.weight (weight {list(state[f'{m}.weight'].shape)}, LoRA {[b.shape[0], a.shape[1]]})"
        for m, (a, b) in lora.targets.items()
        if f"{m}.weight" in state and tuple(state[f"{m}.weight"].shape) != (b.shape[0], a.shape[1])
    ]
    _fail_if(lora.source, "LoRA does not fit the weights", [("missing", missing), ("wrong shape", wrong)])
    merged = dict(state)
    for module, (a, b) in lora.targets.items():
        weight = state[f"{module}.weight"]
        delta = b.to(weight.device, torch.float32) @ a.to(weight.device, torch.float32)
        merged[f"{module}.weight"] = delta.mul_(factor).add_(weight.float()).to(weight.dtype)
    return merged


def check_state_dict(
    state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Size] | nn.Module, source: str
) -> None:
    """Strictly compare names and shapes, listing the first offenders of each kind before any tensor is copied."""
    if isinstance(expected, nn.Module):
        expected = {k: v.shape for k, v in expected.state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} (expected {list(shape)}, found {list(state[k].shape)})"
        for k, shape in expected.items()
        if k in state and tuple(state[k].shape) != tuple(shape)
    ]
    _fail_if(
        source,
        "weights do not match the model",
        [("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)],
    )


def load_state_dict_into(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Check, then load strictly; a module built on the meta device takes the tensors as is, cast to its dtypes."""
    check_state_dict(state, module, source)
    targets = module.state_dict(keep_vars=True)
    assign = any(t.is_meta for t in targets.values())
    if assign:
        state = {
            k: v.to(dtype=targets[k].dtype, device=None if targets[k].is_meta else targets[k].device)
            for k, v in state.items()
        }
    module.load_state_dict(state, strict=True, assign=assign)


def _owned_contiguous(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous tensors with one storage each, since safetensors refuses views that share memory."""
    seen: set[int] = set()
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        tensor = tensor.detach().contiguous()
        ptr = tensor.untyped_storage().data_ptr()
        if ptr in seen and tensor.numel() > 0:
            tensor = tensor.clone()
        seen.add(ptr)
        out[key] = tensor
    return out


def _umask() -> int:
    """The process's file-creation mask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_safetensors(
    state: Mapping[str, torch.Tensor], path: str | Path, metadata: Mapping[str, str] | None = None
) -> None:
    """Write a safetensors file atomically: a crash leaves the old file or the new one, never half of one."""
    path = Path(path)
    tmp = temporary_beside(path)
    try:
        save_file(_owned_contiguous(state), tmp, metadata=dict(metadata) if metadata else None)
        os.chmod(tmp, 0o666 & ~_umask())  # safetensors creates files readable by their owner only
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
