"""`longlive bench` on a small random model: every figure present, ratios to the first variant, bad variants."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from longlive_cli.bench import BenchSettings
from longlive_cli.bundle import build_modules
from longlive_cli.cli import app

from .fakes import FAST_SPEC, write_converted

runner = CliRunner()


def test_variants_side_by_side(tmp_path):
    model = write_converted(tmp_path / "m.safetensors", FAST_SPEC)
    out = tmp_path / "bench.json"
    args = ["bench", "--model", str(model), "--device", "cpu", "--frames", "12", "--json", str(out)]
    variants = [
        "base",
        "decoder=wan",
        "window=9,sink=0,positions=relative,quantize=int8",
        "decoder=wan,decode_step=0,channels_last=true",
    ]
    result = runner.invoke(app, [*args, *(a for v in variants for a in ("-V", v)), "--write"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["environment"]["torch"]
    base, wan, full, wan_whole_chunk = report["variants"]
    assert wan_whole_chunk["settings"]["decode_step"] == 0 and wan_whole_chunk["settings"]["channels_last"]
    assert base["decoder"] == "TAEHV" and wan["decoder"] == "WanVAE"
    assert (full["engine"]["window"], full["engine"]["sink"], full["engine"]["positions"]) == (9, 0, "relative")
    assert base["engine"]["positions"] == "absolute"
    # keys + values, 2 layers x 2 heads x 16 channels, float32, 4 tokens a latent frame, window frames
    assert (base["kv_cache_bytes"], full["kv_cache_bytes"]) == (2 * 2 * 2 * 16 * 4 * 4 * 6, 2 * 2 * 2 * 16 * 4 * 4 * 9)
    # int8 keeps the parameter count and shrinks the block weights (float32 to int8 plus scales).
    assert full["params"] == base["params"] and full["dit_weight_bytes"] < 0.7 * base["dit_weight_bytes"]
    for v in report["variants"]:
        assert v["steady_chunks"] == 2 and v["frames_per_chunk"] == 12
        dit_s, decode_s = v["dit_s_per_chunk"], v["decode_s_per_chunk"]
        assert dit_s > 0 and decode_s > 0 and v["write_s_per_chunk"] > 0
        assert v["dit_fps"] == pytest.approx(12 / dit_s, rel=0.01)
        assert v["e2e_fps"] == pytest.approx(12 / (dit_s + decode_s), rel=0.01)
        assert v["e2e_ratio"] == pytest.approx(v["e2e_fps"] / base["e2e_fps"], abs=0.002)
        assert v["dit_ratio"] == pytest.approx(v["dit_fps"] / base["dit_fps"], abs=0.002)
        assert v["peak_memory_bytes"] > 0 and v["recache_s"] > 0 and v["time_to_first_frame_s"] > 0
        assert v["new_video_first_frame_s"] > 0
    assert "5 forwards" in report["measured"]


def test_bad_variant_and_missing_confirmation(tmp_path):
    with pytest.raises(ValueError, match="key=value"):
        BenchSettings().with_overrides("speed=fast")
    assert runner.invoke(app, ["bench", "--preset", "longlive-1.3b"]).exit_code == 2
    model = write_converted(tmp_path / "m.safetensors")
    result = runner.invoke(app, ["bench", "--model", str(model), "-V", "nonsense"])
    assert result.exit_code == 1 and "key=value" in result.output


def test_preset_with_random_weights_runs_in_process(monkeypatch):
    from longlive_cli import bench

    from .fakes import TINY_SPEC

    monkeypatch.setitem(bench.PRESETS, "test-tiny", TINY_SPEC)
    for decoder in ("wan", "fast"):
        result = bench.run_variant(BenchSettings(preset="test-tiny", frames=9, warmup_chunks=1, decoder=decoder))
        assert result["steady_chunks"] == 2 and result["e2e_fps"] > 0
        assert result["params"] == sum(p.numel() for p in build_modules(TINY_SPEC)[0].parameters())


def test_a_variant_over_its_time_limit_is_reported_and_the_json_keeps_what_finished(tmp_path):
    from longlive_cli import bench

    model = write_converted(tmp_path / "m.safetensors", FAST_SPEC)
    out = tmp_path / "bench.json"
    seen = []

    def save(report: dict) -> None:
        seen.append([v["variant"] for v in report["variants"]])
        out.write_text(json.dumps(report))

    base = BenchSettings(model=str(model), frames=6, warmup_chunks=1)
    report = bench.run_all(base, ["base", "window=9"], timeout_s=0.01, on_variant=save)
    assert seen == [["base"], ["base", "window=9"]]
    assert all("limit per variant" in v["error"][0] for v in report["variants"])
    assert json.loads(out.read_text())["variants"][1]["variant"] == "window=9"
    with pytest.raises(ValueError, match="key=value"):
        bench.run_all(base, ["base", "nonsense"], on_variant=save)
    assert len(seen) == 2, "a bad variant is refused before anything runs"


def test_peak_breakdown_sums_what_is_alive_at_the_peak_by_source_line():
    from longlive_cli.bench import peak_breakdown

    def alloc(addr: int, size: int, line: int) -> dict:
        frames = [{"filename": "/x/torch/nn/functional.py", "line": 1, "name": "linear"},
                  {"filename": "/x/longlive_cli/models/dit.py", "line": line, "name": "forward"}]  # fmt: skip
        return {"action": "alloc", "addr": addr, "size": size, "frames": frames}

    trace = [
        alloc(1, 100, 10),
        alloc(2, 50, 20),
        alloc(3, 30, 20),
        {"action": "free_completed", "addr": 2},
        alloc(4, 10, 30),  # the peak (180) was before this: 100 + 50 + 30
        {"action": "free_completed", "addr": 99},  # freed before the trace began: ignored
        {"action": "alloc", "addr": 5, "size": 5, "frames": []},
    ]
    assert peak_breakdown(trace) == [
        {"site": "dit.py:10 forward", "bytes": 100},
        {"site": "dit.py:20 forward", "bytes": 80},
    ]


def test_the_table_names_what_holds_memory_at_the_peak(tmp_path, capsys):
    from rich.console import Console

    from longlive_cli.report import print_bench

    model = write_converted(tmp_path / "m.safetensors", FAST_SPEC)
    report = bench_report(model)
    report["variants"][0]["memory_at_peak"] = {
        "allocated_before_tracing_bytes": 3 * 2**30,
        "sites": [{"site": "kv_cache.py:62 __init__", "bytes": 2**31}],
    }
    print_bench(report, Console(highlight=False))
    printed = capsys.readouterr().out
    assert "memory at the peak, base: 3.00 GiB before tracing" in printed
    assert "2.00 GiB  kv_cache.py:62 __init__" in printed


def bench_report(model) -> dict:
    from longlive_cli.bench import run_all

    return run_all(BenchSettings(model=str(model), frames=6, warmup_chunks=1), ["base"])


def test_decode_behind_returns_each_chunk_in_order_as_a_direct_decode_would():
    import torch

    from longlive_cli.models.taehv import TAEHV
    from longlive_cli.pipeline import DecodeBehind
    from longlive_cli.video import to_uint8_frames

    torch.manual_seed(0)
    decoder = TAEHV(FAST_SPEC.fast_decoder).eval()
    chunks = [torch.randn(1, 3, 16, 4, 4) for _ in range(3)]
    direct = decoder.stream()
    expected = [to_uint8_frames(direct(c.transpose(1, 2))) for c in chunks]
    behind = DecodeBehind(decoder.stream(), torch.device("cpu"))
    behind.submit(chunks[0])
    behind.submit(chunks[1])
    got = [behind.collect()]
    behind.submit(chunks[2])
    got += [behind.collect(), behind.collect()]
    assert not behind.pending
    assert all((g == e).all() for g, e in zip(got, expected, strict=True))


def test_overlap_variant_counts_the_same_steady_chunks(tmp_path):
    from longlive_cli import bench

    model = write_converted(tmp_path / "m.safetensors", FAST_SPEC)
    result = bench.run_variant(BenchSettings(model=str(model), frames=15, warmup_chunks=1, overlap=True))
    assert result["steady_chunks"] == 3 and result["frames_per_chunk"] == 12 and result["e2e_fps"] > 0


def test_a_size_the_model_refuses_to_render_is_not_measured():
    """The embedded model renders only the size it was trained at; bench refuses the others as render does."""
    from longlive_cli import bench

    with pytest.raises(ValueError, match="tiny renders only 96x96"):
        bench.run_variant(BenchSettings(model="tiny", frames=6, size="128x128"))
    result = runner.invoke(app, ["bench", "--model", "tiny", "--frames", "6", "--size", "160x96"])
    assert result.exit_code == 1 and "renders only 96x96" in result.output
