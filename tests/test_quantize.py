"""torchao quantization of the DiT: which layers, how small, how close, and clear refusals."""

from __future__ import annotations

import pytest
import torch

from longlive_cli.models.dit import CausalWanDiT, DiTConfig
from longlive_cli.quantize import KEEP_HIGH_PRECISION, QuantizeError, quantize_dit, weight_bytes

CFG = DiTConfig(dim=64, ffn_dim=128, num_heads=2, num_layers=2, text_dim=32, text_len=8, freq_dim=32)


def model() -> CausalWanDiT:
    torch.manual_seed(0)
    return CausalWanDiT(CFG).to(torch.bfloat16).eval()


def test_int8_converts_block_linears_only_and_halves_weights():
    m = model()
    x = torch.randn(1, 3, 16, 4, 4, dtype=torch.bfloat16)
    t = torch.full((1, 3), 500.0)
    prompt = m.encode_prompt(torch.randn(1, 8, 32))
    before_bytes, before = weight_bytes(m), m(x, t, prompt)
    assert quantize_dit(m, "int8") == 2 * 10
    for name, mod in m.named_modules():
        if name in KEEP_HIGH_PRECISION:
            assert type(mod.weight) is torch.nn.Parameter and mod.weight.dtype == torch.bfloat16
    assert "Int8" in type(m.blocks[0].ffn[0].weight).__name__
    block_before = sum(p.numel() * 2 for p in CausalWanDiT(CFG).blocks.parameters())
    assert weight_bytes(m) < before_bytes - 0.4 * block_before
    after = m(x, t, m.encode_prompt(torch.randn(1, 8, 32)))
    assert after.shape == before.shape


def test_int8_output_stays_close():
    m = model()
    x = torch.randn(1, 3, 16, 4, 4, dtype=torch.bfloat16)
    t = torch.full((1, 3), 500.0)
    ctx = torch.randn(1, 8, 32)
    ref = m(x, t, m.encode_prompt(ctx)).float()
    quantize_dit(m, "int8")
    out = m(x, t, m.encode_prompt(ctx)).float()
    assert 0 < (out - ref).abs().mean() < 0.05 * ref.abs().mean(), "close, and really quantized"


def test_fp8_refused_on_cpu_with_a_reason():
    with pytest.raises(QuantizeError, match="compute capability"):
        quantize_dit(model(), "fp8")


def test_unknown_mode():
    with pytest.raises(QuantizeError, match="unknown quantization"):
        quantize_dit(model(), "int4")
