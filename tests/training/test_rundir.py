"""The run directory: one owner at a time, what a failed start leaves is replaced, and nothing
is deleted before the lock is held."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path
from unittest import mock

import pytest

from grpo_cli.errors import GrpoError
from grpo_cli.training import rundir


def leftover(path: Path, *files: str) -> Path:
    """A run folder holding `files` (a line of text each); a name ending in / is a folder."""
    path.mkdir(parents=True)
    for name in files:
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        if not name.endswith("/"):
            (path / name).write_text("x\n")
    return path


@pytest.mark.parametrize("resume, overwrite", [(False, False), (False, True), (True, False)])
def test_a_run_in_use_is_refused_and_left_alone(run_in_use, resume, overwrite):
    run, proc = run_in_use
    notes: list[str] = []
    for attempt in (rundir.check, rundir.prepare):
        kwargs = {"note": notes.append} if attempt is rundir.prepare else {}
        with pytest.raises(GrpoError) as err:
            attempt(run, resume=resume, overwrite=overwrite, **kwargs)
        message = err.value.message
        assert f"{run} is in use by pid {proc.pid} on host {socket.gethostname()}" in message
        assert "since 20" in message and "-c" in message  # start time and command
        assert "output.run_name" in err.value.hint
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "metrics.jsonl", "run.lock"]
    assert json.loads((run / "run.lock").read_text())["pid"] == proc.pid
    assert not notes


def test_a_lock_left_by_a_killed_owner_is_reported_then_taken(run_in_use):
    run, proc = run_in_use
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    notes: list[str] = []
    taken = rundir.prepare(run, resume=True, overwrite=False, note=notes.append)
    try:
        assert len(notes) == 1, notes
        assert f"(pid {proc.pid} on host {socket.gethostname()}" in notes[0]
        assert "ended without releasing it" in notes[0]
        assert json.loads((run / "run.lock").read_text())["pid"] != proc.pid
        with pytest.raises(GrpoError, match="in use by pid"):
            rundir.check(run, resume=True, overwrite=False)
    finally:
        taken.release()
    assert not (run / "run.lock").exists()  # a clean end leaves no lock behind
    rundir.check(run, resume=True, overwrite=False)


def test_a_start_that_did_no_step_is_replaced_with_a_note(tmp_path):
    path = leftover(tmp_path / "run", "config.yaml", "env.json", "data.json", "checkpoints/")
    (path / "metrics.jsonl").write_text("")
    rundir.check(path, resume=False, overwrite=False)
    notes: list[str] = []
    run = rundir.prepare(path, resume=False, overwrite=False, note=notes.append)
    run.release()
    assert notes == [f"note: replacing {path}: an earlier start stopped before its first step"]
    assert list(path.iterdir()) == []


STEP_0 = '{"step": 0, "eval/strict_accuracy": 0.305}\n'


@pytest.mark.parametrize("logged", [STEP_0, STEP_0[:20]], ids=["step 0", "step 0 cut short"])
def test_a_start_that_failed_in_its_first_step_is_replaced(tmp_path, logged):
    """The held-out figures of step 0 come before the first step: a run that failed in step 1
    (a reward that raises, memory) trained nothing, and the same command starts it again."""
    path = leftover(tmp_path / "run", "config.yaml", "env.json")
    (path / "metrics.jsonl").write_text(logged)
    notes: list[str] = []
    rundir.prepare(path, resume=False, overwrite=False, note=notes.append).release()
    assert notes == [f"note: replacing {path}: an earlier start stopped before its first step"]
    (path / "metrics.jsonl").write_text(STEP_0 + '{"step": 1, "loss": 0.1}\n')
    with pytest.raises(GrpoError, match="already exists"):
        rundir.check(path, resume=False, overwrite=False)


@pytest.mark.parametrize(
    "done", ["metrics.jsonl", "checkpoints/checkpoint-2/trainer_state.json", "adapter/x"]
)
def test_a_run_that_did_a_step_is_refused_without_overwrite(tmp_path, done):
    path = leftover(tmp_path / "run", "config.yaml", "env.json", done)
    for attempt in (rundir.check, lambda p, **kw: rundir.prepare(p, note=print, **kw)):
        with pytest.raises(GrpoError, match="already exists"):
            attempt(path, resume=False, overwrite=False)
    assert (path / done).is_file()


def test_resume_of_a_run_without_a_checkpoint_keeps_it(tmp_path):
    path = leftover(tmp_path / "run", "config.yaml", "env.json")
    run = rundir.prepare(path, resume=True, overwrite=False, note=print)
    run.release()
    assert run.latest_checkpoint() is None
    assert sorted(p.name for p in path.iterdir()) == ["config.yaml", "env.json"]


def test_an_unwritable_output_folder_names_the_folder(tmp_path, monkeypatch):
    target = tmp_path / "readonly" / "run"
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self == target:
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    with pytest.raises(GrpoError) as err:
        rundir.prepare(target, resume=False, overwrite=False, note=print)
    assert f"cannot create the run directory {target}" in err.value.message
    assert "Permission denied" in err.value.message and "output.dir" in err.value.hint


def test_a_file_system_without_locks_warns_and_goes_on(tmp_path):
    notes: list[str] = []
    with mock.patch("fcntl.flock", side_effect=OSError(38, "Function not implemented")):
        run = rundir.prepare(tmp_path / "run", resume=False, overwrite=False, note=notes.append)
    run.release()
    assert len(notes) == 1 and "cannot lock" in notes[0] and "at the same time" in notes[0]
