"""ShapesWorld quality numbers for a rendered video against its prompt timeline: adherence, switch latency,
continuity across changes and drift over a long render, as a JSON-able dict; ``summarise`` folds a suite."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from longlive_cli.world.detector import LABELS, Detections, detect
from longlive_cli.world.grammar import ATTRIBUTE_NAMES, Attributes, parse
from longlive_cli.world.timelines import change_frame, prompt_index

Prompt = str | Attributes
UNSCORED = -2  # expected label of an attribute the prompt does not mention (detector's "unknown" is -1)
NOTHING = "nothing"  # the reading of a frame in which the detector found no object


@dataclass(frozen=True)
class MetricsConfig:
    """Windows and floors of the metrics, in frames at the video's rate unless named otherwise."""

    grace_s: float = 0.5  # after a change, frames this close are 'transition', not 'steady'
    hold_frames: int = 8  # a switch has landed once every scored attribute matches this many frames in a row
    continuity_frames: int = 8  # steps each side of a change whose median is the typical motion
    motion_floor_px: float = 1.0  # typical motion and jump never count as less, so still objects score 1.0
    drift_share: float = 0.2  # first and last share of the video compared for drift


def scored_labels(prompt: Prompt) -> dict[str, int]:
    """Label index per attribute the prompt pins down; a text prompt pins only what it mentions."""
    values = parse(prompt).mentioned() if isinstance(prompt, str) else {n: getattr(prompt, n) for n in ATTRIBUTE_NAMES}
    return {name: LABELS[name].index(value) for name, value in values.items()}


def _share(hits: np.ndarray, rows: np.ndarray) -> float | None:
    return float(hits[rows].mean()) if rows.any() else None


def _adherence(match: np.ndarray, scored: np.ndarray, rows: np.ndarray) -> dict[str, float | None]:
    """Per attribute over frames that score it, and 'all' over frames that score anything."""
    result = {name: _share(match[:, k], rows & scored[:, k]) for k, name in enumerate(ATTRIBUTE_NAMES)}
    all_ok = (match | ~scored).all(1)
    result["all"] = _share(all_ok, rows & scored.any(1))
    return result


def _readings(expected: np.ndarray, detected: np.ndarray, scored: np.ndarray, rows: np.ndarray) -> dict:
    """Per attribute, asked value -> value read (or ``NOTHING``) -> frames, over ``rows`` that score it: what a miss
    was drawn as, which a share alone does not say."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for k, name in enumerate(ATTRIBUTE_NAMES):
        keep = rows & scored[:, k]
        table: dict[str, dict[str, int]] = {}
        pairs = Counter(zip(expected[keep, k].tolist(), detected[keep, k].tolist(), strict=True))
        for (want, got), count in sorted(pairs.items()):
            table.setdefault(LABELS[name][want], {})[LABELS[name][got] if got >= 0 else NOTHING] = count
        out[name] = table
    return out


def merge_readings(results: Sequence[dict]) -> dict[str, dict[str, dict[str, int]]]:
    """The steady readings of several ``evaluate`` results added up."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for result in results:
        for name, table in result["adherence"]["readings"].items():
            for want, reads in table.items():
                row = out.setdefault(name, {}).setdefault(want, {})
                for got, count in reads.items():
                    row[got] = row.get(got, 0) + count
    return out


def misreads(readings: dict[str, dict[str, dict[str, int]]], floor: float = 0.05) -> list[tuple[str, str, list]]:
    """(attribute, asked value, [(value read instead, share of the asked value's frames)]) for every misreading of
    at least ``floor``, the asked values with the most missed frames first."""
    found = []
    for name, table in readings.items():
        for want, reads in table.items():
            total = sum(reads.values())
            wrong = sorted(((got, n / total) for got, n in reads.items() if got != want), key=lambda kv: -kv[1])
            kept = [(got, share) for got, share in wrong if share >= floor]
            if kept:
                found.append((total - reads.get(want, 0), name, want, kept))
    return [(name, want, kept) for _, name, want, kept in sorted(found, key=lambda item: -item[0])]


def misread_text(readings: dict[str, dict[str, dict[str, int]]], floor: float = 0.05) -> str:
    """``misreads`` in words, biggest first: 'motion horizontal as still 10.0 %, circling 13.5 %; ...' ('' if none)."""
    return "; ".join(
        f"{name} {want} as " + ", ".join(f"{got} {100 * share:.1f} %" for got, share in reads)
        for name, want, reads in misreads(readings, floor)
    )


def _latency(ok: np.ndarray, start: int, end: int, hold: int) -> tuple[int, bool]:
    """Frames from ``start`` until ``ok`` holds for ``hold`` frames (or to ``end``); the stretch length if never."""
    run = 0
    runs = np.zeros(end - start, dtype=np.int64)  # consecutive ok frames from each frame on, within the stretch
    for i in range(end - 1, start - 1, -1):
        run = run + 1 if ok[i] else 0
        runs[i - start] = run
    need = np.minimum(hold, end - np.arange(start, end))
    landed = np.flatnonzero(runs >= need)
    return (int(landed[0]), True) if landed.size else (end - start, False)


def _continuity(centroid: np.ndarray, at: int, window: int, floor: float) -> float | None:
    """Jump across the change over the typical step on the busier side of it (median of ``window`` steps), both
    floored: 1.0 is seamless whether the object keeps moving, starts, stops or stays still."""
    if at < 1 or at >= len(centroid):
        return None
    steps = np.linalg.norm(np.diff(centroid, axis=0), axis=1)  # steps[i]: frame i -> i + 1
    jump = steps[at - 1]
    sides = [steps[max(0, at - 1 - window) : at - 1], steps[at : at + window]]
    typical = [float(np.median(side[np.isfinite(side)])) for side in sides if np.isfinite(side).any()]
    if not np.isfinite(jump) or not typical:
        return None
    return float(max(jump, floor) / max(*typical, floor))


def _sharpness(frames: np.ndarray) -> float:
    """Mean absolute gradient of the grey image: falls as a render blurs or fades."""
    grey = frames.astype(np.float32).mean(-1)
    return float(np.abs(np.diff(grey, axis=1)).mean() + np.abs(np.diff(grey, axis=2)).mean())


def _image_stats(
    frames: np.ndarray, det: Detections, rows: slice, match: np.ndarray, scored: np.ndarray, steady: np.ndarray
) -> dict:
    area = det.area[rows][det.found[rows]]
    adherence = _adherence(match[rows], scored[rows], steady[rows])
    return {
        "adherence_all": adherence["all"],
        "adherence": adherence,
        "mean_rgb": [round(float(v), 2) for v in frames[rows].reshape(-1, 3).mean(0)],
        "object_area": float(area.mean()) if area.size else None,
        "sharpness": _sharpness(frames[rows]),
    }


def _drift(
    frames: np.ndarray, det: Detections, match: np.ndarray, scored: np.ndarray, steady: np.ndarray, share: float
) -> dict:
    """The last ``share`` of the video against the first: adherence, colour, object area and sharpness."""
    n = len(frames)
    k = max(1, round(share * n))
    first = _image_stats(frames, det, slice(0, k), match, scored, steady)
    last = _image_stats(frames, det, slice(n - k, n), match, scored, steady)

    def delta(key: str) -> float | None:
        return None if first[key] is None or last[key] is None else last[key] - first[key]

    def ratio(key: str) -> float | None:
        return None if not first[key] or last[key] is None else last[key] / first[key]

    return {
        "first": first,
        "last": last,
        "adherence_delta": delta("adherence_all"),
        "color_shift": float(np.linalg.norm(np.subtract(last["mean_rgb"], first["mean_rgb"]))),
        "area_ratio": ratio("object_area"),
        "sharpness_ratio": ratio("sharpness"),
    }


def evaluate(
    frames: np.ndarray, fps: float, timeline: Sequence[tuple[float, Prompt]], config: MetricsConfig = MetricsConfig()
) -> dict:
    """All metrics for uint8 [N, H, W, 3] frames rendered from ``timeline`` [(start seconds, text or Attributes)]."""
    n = len(frames)
    timeline = sorted(timeline, key=lambda item: item[0])
    starts = [change_frame(at, fps) for at, _ in timeline]
    active = prompt_index([at for at, _ in timeline], n, fps)
    det = detect(frames, fps, cuts=starts)

    labels = [scored_labels(prompt) for _, prompt in timeline]
    table = np.array([[lab.get(name, UNSCORED) for name in ATTRIBUTE_NAMES] for lab in labels + [{}]])
    expected = table[active]  # active == -1 (before the first prompt) picks the all-unscored last row
    detected = np.stack([getattr(det, name) for name in ATTRIBUTE_NAMES], axis=1)
    scored = expected != UNSCORED
    match = detected == expected
    all_ok = (match | ~scored).all(1) & scored.any(1)

    grace = np.zeros(n, dtype=bool)
    for start in starts[1:]:
        grace[start : start + round(config.grace_s * fps)] = True
    steady = ~grace & scored.any(1)

    floor = config.motion_floor_px / frames.shape[2]
    frame_ids = np.arange(n)
    segments = []
    for k, ((at, prompt), start) in enumerate(zip(timeline, starts, strict=True)):
        end = min(starts[k + 1], n) if k + 1 < len(starts) else n
        if start >= n:
            break
        segment: dict = {
            "at_s": float(at),
            "frame": start,
            "prompt": prompt if isinstance(prompt, str) else None,
            "scored": {name: LABELS[name][i] for name, i in labels[k].items()},
            "adherence_all": _share(all_ok, (frame_ids >= start) & (frame_ids < end) & steady),
        }
        if k:
            latency, settled = _latency(all_ok, start, end, config.hold_frames)
            previous = labels[k - 1]
            segment |= {
                "changed": [name for name, i in labels[k].items() if previous.get(name) != i],
                "latency_frames": latency,
                "latency_s": latency / fps,
                "settled": settled,
                "continuity": _continuity(det.centroid, start, config.continuity_frames, floor),
            }
        segments.append(segment)

    return {
        "frames": n,
        "fps": fps,
        "seconds": n / fps,
        "detected": float(det.found.mean()) if n else 0.0,
        "adherence": {
            "steady": _adherence(match, scored, steady),
            "transition": _adherence(match, scored, grace & scored.any(1)),
            "steady_frames": int(steady.sum()),
            "readings": _readings(expected, detected, scored, steady),
        },
        "segments": segments,
        "drift": _drift(frames, det, match, scored, steady, config.drift_share),
    }


def _mean(values: list[float | None], weights: list[float] | None = None) -> float | None:
    weights = [1.0] * len(values) if weights is None else weights
    pairs = [(v, w) for v, w in zip(values, weights, strict=True) if v is not None]
    total = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / total if total else None


def summarise(results: Sequence[dict]) -> dict[str, float | int | None]:
    """One flat row for a suite of ``evaluate`` results: frame-weighted adherence, latency, continuity, drift."""
    weights = [r["adherence"]["steady_frames"] for r in results]
    row: dict[str, float | int | None] = {"runs": len(results), "frames": sum(r["frames"] for r in results)}
    for name in (*ATTRIBUTE_NAMES, "all"):
        row[f"adherence_{name}"] = _mean([r["adherence"]["steady"][name] for r in results], weights)
    row["transition_all"] = _mean([r["adherence"]["transition"]["all"] for r in results])
    changes = [s for r in results for s in r["segments"][1:]]
    latency = np.array([s["latency_frames"] for s in changes], dtype=np.float64)
    continuity = np.array([s["continuity"] for s in changes if s["continuity"] is not None], dtype=np.float64)
    row["changes"] = len(changes)
    row["unsettled"] = sum(not s["settled"] for s in changes)
    for label, values in (("latency_frames", latency), ("continuity", continuity)):
        stats = (np.mean, np.median, lambda v: np.percentile(v, 95), np.max)
        for stat, fn in zip(("mean", "median", "p95", "max"), stats, strict=True):
            row[f"{label}_{stat}"] = float(fn(values)) if values.size else None
    for key in ("adherence_delta", "color_shift", "area_ratio", "sharpness_ratio"):
        row[f"drift_{key}"] = _mean([r["drift"][key] for r in results])
    for end in ("first", "last"):
        row[f"drift_{end}_all"] = _mean([r["drift"][end]["adherence_all"] for r in results])
        for name in ("shape", "color", "size", "motion"):
            row[f"drift_{end}_{name}"] = _mean([r["drift"][end]["adherence"][name] for r in results])
    return row
