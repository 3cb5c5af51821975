"""Weight quantization of the DiT's block Linears through torchao: int8 weight-only (memory) or fp8 (speed).

As LongLive's successor does, the embeddings, time projection and head stay in bf16: they are numerically
sensitive and too small to gain from quantization. Linears whose sizes are not multiples of 16 are skipped.
"""

from __future__ import annotations

import logging
import warnings

import torch
from torch import nn

MODES = ("none", "int8", "fp8")
KEEP_HIGH_PRECISION = frozenset(
    {"text_embedding.0", "text_embedding.2", "time_embedding.0", "time_embedding.2", "time_projection.1", "head.head"}
)


class QuantizeError(ValueError):
    """A quantization mode that this model, device or installation cannot run."""


def eligible(module: nn.Module, fqn: str) -> bool:
    """Block Linears with sizes divisible by 16; never the six sensitive layers."""
    return (
        isinstance(module, nn.Linear)
        and fqn not in KEEP_HIGH_PRECISION
        and module.in_features % 16 == 0
        and module.out_features % 16 == 0
    )


def fp8_supported(device: torch.device) -> bool:
    """fp8 matmuls need a CUDA GPU of compute capability 8.9 (Ada) or newer."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)


def quantize_dit(model: nn.Module, mode: str) -> int:
    """Quantize ``model`` in place; returns how many Linears were converted."""
    if mode not in MODES:
        raise QuantizeError(f"unknown quantization '{mode}'; choose one of {', '.join(MODES)}")
    if mode == "none":
        return 0
    device = next(model.parameters()).device
    if mode == "fp8" and not fp8_supported(device):
        raise QuantizeError(
            f"fp8 needs a CUDA GPU with compute capability >= 8.9 (Ada, Hopper or newer); this run is on {device}. "
            "Use --quantize int8 for smaller weights instead."
        )
    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchao.quantization import (
                Float8DynamicActivationFloat8WeightConfig,
                Int8WeightOnlyConfig,
                PerRow,
                quantize_,
            )
    except ImportError as e:
        raise QuantizeError(f"quantization needs torchao (pip install torchao): {e}") from e
    if mode == "fp8" and next(model.parameters()).dtype != torch.bfloat16:
        raise QuantizeError("fp8 quantization starts from bf16 weights; run with --dtype bf16")
    names = [fqn for fqn, m in model.named_modules() if eligible(m, fqn)]
    if mode == "int8":
        config = Int8WeightOnlyConfig()
    else:
        config = Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())
    quantize_(model, config, filter_fn=eligible)
    return len(names)


def weight_bytes(model: nn.Module) -> int:
    """Bytes held by parameters and buffers, counting the inner tensors of quantized weights."""
    total = 0
    for t in [*model.parameters(), *model.buffers()]:
        data = t.data if isinstance(t, nn.Parameter) else t
        if hasattr(data, "__tensor_flatten__"):
            inner, _ = data.__tensor_flatten__()
            total += sum(getattr(data, n).numel() * getattr(data, n).element_size() for n in inner)
        else:
            total += data.numel() * data.element_size()
    return total
