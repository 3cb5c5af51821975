"""Device, dtype and model caching for the commands, and when a compiled model is warmed up."""

from __future__ import annotations

import pytest
import torch

from longlive_cli import runtime
from longlive_cli.models.dit import CausalWanDiT
from longlive_cli.render import RenderSettings
from longlive_cli.runtime import BundleCache, resolve_dtype
from longlive_cli.timeline import single_prompt_timeline

from .fakes import write_converted


def test_dtype_names_and_device_defaults():
    assert resolve_dtype(None, "cpu") is torch.float32
    assert resolve_dtype(None, "cuda:0") is torch.bfloat16
    assert resolve_dtype("bf16", "cpu") is torch.bfloat16
    with pytest.raises(ValueError, match="fp16"):
        resolve_dtype("half-ish", "cpu")


def test_a_compiled_model_warms_up_once_per_rendered_shape_and_window(tmp_path, monkeypatch):
    met = []
    monkeypatch.setattr(runtime, "warm_up", lambda dit, cfg, shape, context: met.append((cfg.window, shape)))
    monkeypatch.setattr(CausalWanDiT, "compile_blocks", lambda self: None)  # nothing compiled here
    model = write_converted(tmp_path / "m.safetensors")
    cache = BundleCache("cpu", torch.float32, compile=True)
    bundle = cache.get(str(model), "none")
    assert cache.get(str(model), "none") is bundle
    timeline = single_prompt_timeline("a red circle", "1s", model=str(model))
    for size, window in [(None, None), ((48, 32), None), (None, 9), (None, None), ((48, 32), None)]:
        cache.warm_up(bundle, RenderSettings.resolve(timeline, bundle, size=size, window=window))
    z = bundle.spec.vae.z_dim
    assert met == [(6, (z, 4, 4)), (6, (z, 4, 6)), (9, (z, 4, 4))]
    eager = BundleCache("cpu", torch.float32)
    eager.warm_up(bundle, RenderSettings.resolve(timeline, bundle, size=(64, 64)))
    assert len(met) == 3
