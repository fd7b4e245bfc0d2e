"""Which checkpoints a run trusts, how a damaged one is found, and what --resume trims: on
checkpoint folders laid out as the Trainer writes them, without training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grpo_cli.training.checkpoints import (
    MARKER,
    checkpoint_damage,
    complete_checkpoints,
    explain_failure,
    mark_complete,
    trim_records,
)
from grpo_cli.training.rundir import RunDir

FILES = (
    "adapter_model.safetensors",
    "optimizer.pt",
    "scheduler.pt",
    "rng_state.pth",
    "trainer_state.json",
    "adapter_config.json",
)


def checkpoint(folder: Path, step: int, *, marked: bool = True) -> Path:
    """A checkpoint with the files the Trainer writes, in their real formats."""
    import torch
    from safetensors.torch import save_file

    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    save_file(
        {"lora_A": torch.ones(64, 8), "lora_B": torch.zeros(8, 64)},
        path / "adapter_model.safetensors",
    )
    torch.save({"state": {0: {"exp_avg": torch.ones(512)}}}, path / "optimizer.pt")
    torch.save({"last_epoch": step}, path / "scheduler.pt")
    torch.save({"cpu": torch.get_rng_state()}, path / "rng_state.pth")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step, "log": [1] * 50}))
    (path / "adapter_config.json").write_text(json.dumps({"r": 8}))
    if marked:
        mark_complete(path)
    return path


def cut_short(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_checkpoint_counts_once_the_trainer_finished_writing_it(tmp_path):
    run = RunDir(tmp_path)
    for step in (2, 4):
        checkpoint(run.checkpoints, step)
    half = checkpoint(run.checkpoints, 6, marked=False)  # stopped before the marker
    assert run.latest_checkpoint() == run.checkpoints / "checkpoint-4"
    assert json.loads((run.checkpoints / "checkpoint-4" / MARKER).read_text())["step"] == 4
    mark_complete(half)
    assert run.latest_checkpoint() == half


def test_runs_from_before_the_marker_still_resume(tmp_path):
    """No checkpoint marked: one counts when its trainer_state.json (written last) reads."""
    run = RunDir(tmp_path)
    for step in (2, 4, 6):
        checkpoint(run.checkpoints, step, marked=False)
    (run.checkpoints / "checkpoint-6" / "trainer_state.json").write_text('{"global_st')
    assert run.latest_checkpoint() == run.checkpoints / "checkpoint-4"
    # resumed by this version: the old ones below its first marked checkpoint still count
    mark_complete(checkpoint(run.checkpoints, 8, marked=False))
    assert [p.name for p in complete_checkpoints(run.checkpoints)] == [
        "checkpoint-2",
        "checkpoint-4",
        "checkpoint-8",
    ]


@pytest.mark.parametrize("marked", [True, False], ids=["marked", "before-the-marker"])
@pytest.mark.parametrize("name", FILES)
def test_a_file_cut_short_is_named(tmp_path, name, marked):
    path = checkpoint(tmp_path, 4, marked=marked)
    assert checkpoint_damage(path) is None
    cut_short(path / name)
    problem = checkpoint_damage(path)
    assert problem is not None and problem.startswith(name), problem


def test_the_formats_alone_find_a_cut_file(tmp_path):
    """Without the marker's sizes (a run from before it), each format shows the cut."""
    path = checkpoint(tmp_path, 4, marked=False)
    cut_short(path / "optimizer.pt")
    assert "zip directory" in checkpoint_damage(path)
    path = checkpoint(tmp_path / "b", 4, marked=False)
    weights = path / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    assert "header declares" in checkpoint_damage(path)
    path = checkpoint(tmp_path / "c", 4)
    (path / "scheduler.pt").unlink()
    assert checkpoint_damage(path) == "scheduler.pt is missing"


def test_resume_trims_records_past_the_checkpoint_and_a_cut_line(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": s, "loss": s / 10}) for s in range(1, 6)]
    metrics.write_text("\n".join(lines) + '\n{"step": 6, "lo')
    assert trim_records(metrics, 3) == (2, 1)
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [1, 2, 3]
    assert trim_records(metrics, 3) == (0, 0)
    assert trim_records(tmp_path / "absent.jsonl", 3) == (0, 0)


def test_an_append_after_a_cut_line_starts_a_line_of_its_own(tmp_path):
    run = RunDir(tmp_path)
    run.metrics.write_text('{"step": 1}\n{"step": 2, "lo')
    run.append_jsonl(run.metrics, {"step": 2, "loss": 0.5})
    run.append_jsonl(run.metrics, {"step": 3, "loss": 0.4})
    lines = run.metrics.read_text().splitlines()
    assert lines[1] == '{"step": 2, "lo'
    assert [json.loads(line)["step"] for line in lines[2:]] == [2, 3]


def test_a_full_disk_writing_a_record_is_a_user_error_and_other_failures_pass(tmp_path):
    import errno

    run = RunDir(tmp_path)
    checkpoint(run.checkpoints, 2)
    try:
        raise OSError(errno.ENOSPC, "No space left on device", str(run.metrics))
    except OSError as exc:
        error = explain_failure(exc, run, trainer=None, resumed_from=None)
    assert error is not None and f"writing {run.metrics} failed" in error.message
    assert "free there" in error.message and "resume from checkpoint-2" in error.hint
    try:
        raise RuntimeError("CUDA error: device-side assert triggered")
    except RuntimeError as exc:
        assert explain_failure(exc, run, trainer=None, resumed_from=None) is None
