"""Tables and lines that ``longlive bench`` and ``longlive eval`` print from their reports."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from .terminal import markup_safe
from .world.metrics import misread_text


def print_bench(report: dict, out: Console) -> None:
    """The bench table: one row per variant, then where the memory was at the peak."""
    env = report["environment"]
    first = next((v for v in report["variants"] if "error" not in v), None)
    head = f"{env['card']} ({env['device']}), torch {env['torch']}"
    if first:
        e = first["engine"]
        head += (
            f"; {first['size']}, {e['steps']} steps + cache pass, chunk {e['chunk']}, "
            f"{first['frames_per_chunk']} frames per chunk"
        )
    table = Table(title=head)
    cols = ("variant", "DiT fps", "end-to-end fps", "ratio", "first frame: first / new video", "recache",
            "peak memory", "weights", "warm-up")  # fmt: skip
    for c in cols:
        table.add_column(c)
    for v in report["variants"]:
        if "error" in v:
            table.add_row(markup_safe(v["variant"]), f"[red]failed: {markup_safe(' '.join(v['error']))}[/]")
            continue
        e = v["engine"]
        table.add_row(
            f"{v['variant']} ({v['settings']['dtype']}, window {e['window']}/sink {e['sink']}, {v['decoder']})",
            f"{v['dit_fps']:.1f}",
            f"{v['e2e_fps']:.1f}",
            f"{v['e2e_ratio']:.2f}x",
            f"{v['time_to_first_frame_s']:.2f} / {v['new_video_first_frame_s']:.2f} s",
            f"{v['recache_s'] * 1000:.0f} ms",
            _bytes(v["peak_memory_bytes"]),
            _bytes(v["dit_weight_bytes"]),
            f"{v['compile_s']:.1f} s compile + {v['warmup_s']:.2f} s" if v["compile_s"] else f"{v['warmup_s']:.2f} s",
        )
    print_table(table, out)
    for v in report["variants"]:
        if "memory_at_peak" in v:
            at_peak = v["memory_at_peak"]
            out.print(f"memory at the peak, {v['variant']}: "
                      f"{_bytes(at_peak['allocated_before_tracing_bytes'])} before tracing (weights)")  # fmt: skip
            for site in at_peak["sites"]:
                out.print(f"  {_bytes(site['bytes']):>10}  {site['site']}")
    out.print(f"[dim]{' '.join(report['measured'].split())}[/]")


def print_table(table: Table, out: Console) -> None:
    """Tables to a terminal fit it; piped into a file or log, they get room enough not to wrap every cell."""
    console = out if out.is_terminal else Console(highlight=False, width=max(out.width, 200))
    console.print(table)


def _bytes(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def misread_line(readings: dict) -> str:
    """What the misses were read as, as shares of the asked value's steady frames."""
    return "misread (steady frames): " + (misread_text(readings) or "nothing of 5 % or more")


def print_video_metrics(report: dict, out: Console) -> None:
    """One video's scores: a row per prompt segment, then steady adherence and drift."""
    steady = report["adherence"]["steady"]
    table = Table(title=f"{report['seconds']:.1f} s, object found in {_pct(report['detected'])} of frames")
    for col in ("segment", "at", "adherence", "latency", "continuity"):
        table.add_column(col)
    for i, seg in enumerate(report["segments"]):
        latency = f"{seg['latency_s']:.2f} s" + ("" if seg["settled"] else " (never)") if i else "-"
        continuity = f"{seg['continuity']:.2f}" if i and seg["continuity"] is not None else "-"
        table.add_row(str(i), f"{seg['at_s']:g} s", _pct(seg["adherence_all"]), latency, continuity)
    print_table(table, out)
    out.print("steady adherence: " + ", ".join(f"{k} {_pct(v)}" for k, v in steady.items()))
    out.print(misread_line(report["adherence"]["readings"]))
    first, last = report["drift"]["first"]["adherence_all"], report["drift"]["last"]["adherence_all"]
    out.print(f"drift: all-attribute adherence {_pct(first)} in the first part, {_pct(last)} in the last")


def print_suite(report: dict, name: str, out: Console) -> None:
    """The held-out suite: a row per part."""
    table = Table(title=f"ShapesWorld held-out suite: {name}, switch policy {report['policy']}")
    cols = ("part", "runs", "all", "shape", "color", "size", "motion", "background", "latency med / p95",
            "unsettled", "continuity med / max", "all: first / last 20 %", "colour drift")  # fmt: skip
    for c in cols:
        table.add_column(c)
    for part, row in report["rows"].items():
        fps = report["runs"][part][0]["fps"]
        lat = row["latency_frames_median"]
        latency = "-" if lat is None else f"{lat / fps:.2f} / {row['latency_frames_p95'] / fps:.2f} s"
        cont = row["continuity_median"]
        continuity = "-" if cont is None else f"{cont:.2f} / {row['continuity_max']:.2f}"
        table.add_row(
            part,
            str(row["runs"]),
            *(_pct(row[f"adherence_{k}"]) for k in ("all", "shape", "color", "size", "motion", "background")),
            latency,
            f"{row['unsettled']} of {row['changes']}",
            continuity,
            f"{_pct(row['drift_first_all'])} / {_pct(row['drift_last_all'])}",
            "-" if row["drift_color_shift"] is None else f"{row['drift_color_shift']:.1f}",
        )
    print_table(table, out)
    for part, readings in report["readings"].items():
        out.print(f"{part}: {misread_line(readings)}")
