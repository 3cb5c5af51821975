"""A killed training run leaves no trace that the next run repeats: orphan temp files go, logged steps after the
checkpoint are dropped before the resumed run logs them again."""

from __future__ import annotations

import json
from types import SimpleNamespace

from longlive_cli.train.log import TrainLog
from longlive_cli.train.loop import Session


def test_orphan_temp_files_are_removed_when_a_stage_starts(tmp_path):
    stage = tmp_path / "teacher"
    stage.mkdir()
    orphans = [stage / ".checkpoint.pt.1a2b3c4d.tmp", stage / ".log.jsonl.00ff00ff.tmp"]
    for path in orphans:
        path.write_bytes(b"half a file")
    kept = [stage / "notes.tmp", stage / "model.safetensors"]
    for path in kept:
        path.write_bytes(b"mine")
    Session(tmp_path, "teacher", SimpleNamespace(steps=4), resume=False)
    assert not any(p.exists() for p in orphans)
    assert all(p.exists() for p in kept)


def test_resumed_log_does_not_repeat_steps(tmp_path):
    log = tmp_path / "log.jsonl"
    lines = [json.dumps({"stage": "s", "note": "start"})]
    lines += [json.dumps({"stage": "s", "step": step, "loss": 1.0 / step}) for step in range(1, 11)]
    log.write_text("\n".join(lines) + '\n{"stage": "s", "step": 11, "lo')  # killed mid-line after step 10
    with TrainLog(tmp_path, "s", total=12, start=6, enabled=True) as resumed:
        for step in range(7, 13):
            resumed.step(step, {"loss": 0.5})
    steps = [json.loads(line).get("step") for line in log.read_text().splitlines()]
    assert steps == [None, *range(1, 13)]


def test_other_processes_of_a_distributed_run_leave_the_log_alone(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps({"stage": "s", "step": 9}) + "\n")
    TrainLog(tmp_path, "s", total=12, start=6, enabled=False)
    assert json.loads(log.read_text())["step"] == 9
