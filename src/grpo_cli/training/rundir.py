"""The run directory `outputs/<run_name>/`: everything `eval` and `merge` need, and nothing that
could hold a secret.

    config.yaml        the resolved config (extends, overrides and defaults applied)
    env.json           library versions, device, GPU, git commit of the project
    data.json          what happened to the rows (counts, drops, held-out size)
    heldout.json       ids of the training rows set aside for evaluation (data.heldout_size)
    metrics.jsonl      one line per logged step
    completions.jsonl  sampled prompts, golds and completions with their rewards
    checkpoints/       trainer checkpoints (optimizer, scheduler, RNG, step)
                       each complete one holds checkpoint_complete.json
    adapter/           the final LoRA adapter and the tokenizer
    model/             grpo sft with full fine-tuning: the whole model and the tokenizer
    tensorboard/ wandb/  tracker files, when logging.report_to names one
    eval.json          written by `grpo eval`: {split name: metrics}, read by `grpo merge`
    run.lock           pid, host, start and command of the process training it (while it runs)
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from grpo_cli.config import dump_config
from grpo_cli.config.schema import GrpoConfig, mask_secrets
from grpo_cli.errors import GrpoError
from grpo_cli.files import append_jsonl, umask_mode, write_atomic
from grpo_cli.training.checkpoints import complete_checkpoints

LOCK = "run.lock"
LIBRARIES = (
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "unsloth",
    "unsloth_zoo",
    "vllm",
    "bitsandbytes",
    "grpo-cli",
)


class RunDir:
    def __init__(self, path: Path):
        self.path = path
        self.lock: RunLock | None = None

    config = property(lambda self: self.path / "config.yaml")
    env = property(lambda self: self.path / "env.json")
    data = property(lambda self: self.path / "data.json")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    completions = property(lambda self: self.path / "completions.jsonl")
    checkpoints = property(lambda self: self.path / "checkpoints")
    adapter = property(lambda self: self.path / "adapter")
    model = property(lambda self: self.path / "model")  # grpo sft's full fine-tuning output
    evals = property(lambda self: self.path / "eval.json")

    @property
    def command(self) -> str:
        """The command that trains this run (grpo train, grpo sft), for the hints that say how
        to go on: env.json's stage; a run without one is grpo train's."""
        try:
            stage = json.loads(self.env.read_text(encoding="utf-8")).get("stage", "grpo")
        except (OSError, ValueError, AttributeError):
            stage = "grpo"
        return STAGE_COMMANDS.get(stage, "grpo train")

    def latest_checkpoint(self) -> Path | None:
        """The checkpoint with the highest step that the trainer finished writing."""
        complete = complete_checkpoints(self.checkpoints)
        return complete[-1] if complete else None

    def contents(self) -> list[Path]:
        """What the run holds besides its lock file."""
        if not self.path.is_dir():
            return [self.path] if self.path.exists() else []
        return [child for child in self.path.iterdir() if child.name != LOCK]

    def trained_any_step(self) -> bool:
        """Whether a step was done: a checkpoint, a metrics record of a step or an adapter. A
        run without any is what a start that failed or was stopped while loading (or in its
        first step, after the held-out figures of step 0) leaves behind."""
        if self.adapter.exists() or self.model.exists():
            return True
        if self.checkpoints.is_dir() and any(self.checkpoints.iterdir()):
            return True
        try:
            with self.metrics.open(encoding="utf-8") as f:
                return any(line.strip() and not _step_0(line) for line in f)
        except (FileNotFoundError, NotADirectoryError):
            return False

    def release(self) -> None:
        """Let another process take the run (the end of the process does it too)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def write_json(self, path: Path, record: dict[str, Any]) -> None:
        write_atomic(path, json.dumps(record, indent=1, default=str) + "\n")

    def append_jsonl(self, path: Path, record: dict[str, Any]) -> None:
        append_jsonl(path, [record])


STAGE_COMMANDS = {"grpo": "grpo train", "sft": "grpo sft"}


def run_name(
    cfg: GrpoConfig, config_path: Path, now: datetime | None = None, stage: str = "grpo"
) -> str:
    """The run directory's name. grpo sft's differs from grpo train's of the same config, so
    that one config can warm a model up and then train it with GRPO: sft.run_name, else
    <output.run_name>-sft, else <config name>-sft-<date>-<time>."""
    if stage == "sft" and cfg.sft.run_name:
        return cfg.sft.run_name
    if cfg.output.run_name:
        return cfg.output.run_name + ("-sft" if stage == "sft" else "")
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    return f"{stamped_prefix(config_path, stage)}{stamp}"


def named_run(cfg: GrpoConfig, stage: str = "grpo") -> bool:
    """Whether the config names STAGE's run directory (else it is stamped with the time)."""
    return bool(cfg.output.run_name or (stage == "sft" and cfg.sft.run_name))


def stamped_prefix(config_path: Path, stage: str = "grpo") -> str:
    return f"{config_path.stem}-sft-" if stage == "sft" else f"{config_path.stem}-"


def check(path: Path, *, resume: bool, overwrite: bool) -> None:
    """The refusals `prepare` would make, found without writing anything or importing the ML
    libraries, so that they come at once. `prepare` decides again, under the lock."""
    holder = lock_holder(path / LOCK)
    if holder is not None:
        raise in_use(path, holder, overwrite)
    refusal = _refusal(RunDir(path), resume=resume, overwrite=overwrite)
    if refusal is not None:
        raise refusal


def prepare(path: Path, *, resume: bool, overwrite: bool, note: Callable[[str], None]) -> RunDir:
    """The run directory, created and locked for this process; an existing one is kept for
    --resume, replaced with --overwrite or when an earlier start left it before its first step,
    and refused otherwise. Nothing is deleted before the lock is held."""
    run = RunDir(path)
    try:
        if path.exists() and not path.is_dir():
            refusal = _refusal(run, resume=resume, overwrite=overwrite)
            if refusal is not None:
                raise refusal
            note(f"note: --overwrite: replacing the file {path}")
            path.unlink()
        path.mkdir(parents=True, exist_ok=True)
        run.lock = RunLock.acquire(path / LOCK, overwrite, note)
        try:
            refusal = _refusal(run, resume=resume, overwrite=overwrite)
            if refusal is not None:
                raise refusal
            if not resume and run.contents():
                note(
                    f"note: --overwrite: replacing {path}"
                    if overwrite
                    else f"note: replacing {path}: an earlier start stopped before its first step"
                )
                for child in run.contents():
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        except BaseException:
            run.release()
            raise
    except PermissionError as exc:
        raise not_writable(path, exc) from None
    except OSError as exc:
        if exc.errno != errno.EROFS:
            raise
        raise not_writable(path, exc) from None
    return run


def _refusal(run: RunDir, *, resume: bool, overwrite: bool) -> GrpoError | None:
    path = run.path
    if path.exists() and not path.is_dir() and not overwrite:
        return GrpoError(
            f"{path} is a file, not a run directory",
            "set another output.run_name, or replace the file with --overwrite",
        )
    if resume:
        if not run.contents():
            return GrpoError(
                f"--resume: {path} does not exist",
                "resume names the run through output.run_name (or --set output.run_name=...)",
            )
        return None
    if run.contents() and not overwrite and run.trained_any_step():
        return GrpoError(
            f"run directory {path} already exists",
            "continue it with --resume, replace it with --overwrite, or set another "
            "output.run_name",
        )
    return None


def not_writable(path: Path, exc: OSError) -> GrpoError:
    where = "" if exc.filename in (None, str(path)) else f"{exc.filename}: "
    return GrpoError(
        f"cannot create the run directory {path}: {where}{exc.strerror or exc}",
        "set output.dir to a folder you can write, e.g. --set output.dir=$HOME/grpo-outputs",
    )


def in_use(path: Path, holder: dict[str, Any], overwrite: bool) -> GrpoError:
    pid, host = holder.get("pid"), holder.get("host")
    if pid is None:  # its owner has just taken it and not yet written its name
        message = f"run directory {path} is in use by another process"
        stop = "stop it"
    else:
        command = " ".join(holder.get("argv") or [])
        message = (
            f"run directory {path} is in use by pid {pid} on host {host} since "
            f"{holder.get('started', '?')}" + (f" ({command})" if command else "")
        )
        stop = f"stop it (kill -INT {pid} on {host} saves a checkpoint first)"
    hint = f"wait for it to finish or {stop}; to train beside it, set another output.run_name"
    if overwrite:
        message = f"--overwrite: {message}"
        hint = f"--overwrite never replaces a run that is still training; {hint}"
    return GrpoError(message, hint)


class RunLock:
    """One process owns a run directory: an exclusive flock on RUN/run.lock, held for as long as
    the run lives. The kernel drops it when the process dies, even on kill -9, so a lock file
    nobody holds is one its owner left behind. The file says who holds it."""

    def __init__(self, path: Path, fd: int | None):
        self.path, self.fd = path, fd

    @classmethod
    def acquire(cls, path: Path, overwrite: bool, note: Callable[[str], None]) -> RunLock:

        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, umask_mode())
            try:
                locked = _lock_within(fd, seconds=0.2)
            except OSError as exc:  # a file system without locks (some network mounts)
                os.close(fd)
                note(
                    f"Warning: cannot lock {path} ({exc.strerror}); nothing stops a second "
                    "grpo train from writing into this run at the same time"
                )
                return cls(path, None)
            if not locked:
                holder = _owner(fd)
                os.close(fd)
                raise in_use(path.parent, holder, overwrite) from None
            # The previous owner unlinks the file when it releases it: if that happened between
            # our open and our flock, we hold a lock on a file nobody else will ever open.
            try:
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        previous = _owner(fd)
        if previous:
            note(
                f"note: the previous owner of {path.parent} (pid {previous.get('pid', '?')} on "
                f"host {previous.get('host', '?')}, since {previous.get('started', '?')}) ended "
                "without releasing it; taking it over"
            )
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now().isoformat(timespec="seconds"),
            "argv": [mask_secrets(a) for a in sys.argv],
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        """Remove the lock file, then let go: a lock file that outlives its owner means the
        owner died."""
        if self.fd is None:
            return
        try:
            if os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                self.path.unlink()
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None


def _lock_within(fd: int, seconds: float) -> bool:
    """Take the exclusive lock, trying for a moment: `check()` of another start holds a shared
    lock for microseconds while it looks, which must not read as a run in progress."""
    import fcntl
    import time

    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)


def lock_holder(path: Path) -> dict[str, Any] | None:
    """Who holds the lock file `path` ({} when its file says nothing), or None when it is free."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _owner(fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    return None


def _owner(fd: int) -> dict[str, Any]:
    try:
        record = json.loads(os.pread(fd, 65536, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def write_config(run: RunDir, cfg: GrpoConfig, source: str, command: str = "grpo train") -> None:
    header = f"# Resolved from {source} by {command}; `{command}` accepts this file as is.\n"
    body = yaml.safe_dump(dump_config(cfg), sort_keys=False, allow_unicode=True)
    write_atomic(run.config, header + body)


def environment(
    hardware: dict[str, Any], backend: str, reason: str, precision: str, stage: str = "grpo"
) -> dict:
    """Versions, device and project commit: what a reader needs to reproduce the run. STAGE is
    the command that made the run: `grpo` (grpo train) or `sft` (grpo sft); a run written
    before stages existed has none and is a grpo run."""
    from grpo_cli.stack import installed_version

    versions = {name: installed_version(name) for name in LIBRARIES}
    return {
        "stage": stage,
        "python": sys.version.split()[0],
        "platform": sys.platform,
        "versions": versions,
        "hardware": hardware,
        "backend": backend,
        "backend_reason": reason,
        "precision": precision,
        "git": git_commit(Path(__file__).resolve().parents[3]),
        "argv": [mask_secrets(a) for a in sys.argv],
        "started": datetime.now().isoformat(timespec="seconds"),
    }


def git_commit(folder: Path) -> dict[str, Any] | None:
    """The project's commit and whether the tree had changes, or None outside a git checkout."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty)}


def _step_0(line: str) -> bool:
    """A metrics.jsonl line of step 0, the held-out figures before the first step, whole or
    cut short by a hard stop (RunRecorder writes "step" first)."""
    try:
        record = json.loads(line)
    except ValueError:
        return line.startswith('{"step": 0,')
    return isinstance(record, dict) and record.get("step") == 0
