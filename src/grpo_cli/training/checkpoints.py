"""Which trainer checkpoints a run can trust, and what --resume does with the rest.

A checkpoint counts once the trainer finished writing it (a marker file written after the save);
before resuming, the chosen one is checked cheaply, half-written ones past it are removed and the
records logged after it are dropped, so a hard stop never leaves a step twice in the run's files.
A full disk while saving, or a checkpoint that does not load, ends as a user error that says
what to do.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grpo_cli.config.yamlio import display_path
from grpo_cli.errors import GrpoError, causes, first_line
from grpo_cli.files import file_damage, free_space, json_reads, size_text, write_atomic

if TYPE_CHECKING:
    from grpo_cli.training.rundir import RunDir

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
MARKER = "checkpoint_complete.json"
TRAINER_STATE = "trainer_state.json"
WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin", "model.safetensors")
# Where transformers' Trainer reads a checkpoint back (pinned 5.x); a failure inside one of them
# is the checkpoint's, not the training's.
LOADERS = frozenset(
    {"_load_from_checkpoint", "_load_optimizer_and_scheduler", "_load_rng_state", "_load_scaler"}
    | {"_load_callback_state", "load_from_json"}
)


def checkpoint_step(folder: Path) -> int | None:
    match = CHECKPOINT.match(folder.name)
    return int(match.group(1)) if match else None


def complete_checkpoints(folder: Path) -> list[Path]:
    """The checkpoints in FOLDER that the trainer finished writing, oldest first.

    A checkpoint is complete once it holds the marker, written after the trainer's last write to
    it. Checkpoints without one that are older than every marked one (all of them, in a run
    from before the marker) were written by an earlier grpo-cli: they count when their
    trainer_state.json, which the Trainer writes after weights, optimizer and RNG state, reads.
    """
    if not folder.is_dir():
        return []
    found = sorted(
        (step, child)
        for child in folder.iterdir()
        if (step := checkpoint_step(child)) is not None and child.is_dir()
    )
    first_marked = min((s for s, c in found if (c / MARKER).is_file()), default=None)
    return [
        child
        for step, child in found
        if (child / MARKER).is_file()
        or ((first_marked is None or step < first_marked) and json_reads(child / TRAINER_STATE))
    ]


def is_complete(checkpoint: Path) -> bool:
    return checkpoint.resolve() in [c.resolve() for c in complete_checkpoints(checkpoint.parent)]


def refuse_unfinished(folder: Path, what: str) -> None:
    """`grpo eval` and `grpo merge` take a checkpoint by the rule --resume uses: one the trainer
    did not finish writing is refused, naming the newest one it did. The path is resolved first:
    `grpo merge .` inside a checkpoint is that checkpoint too."""
    folder = folder.resolve()
    if checkpoint_step(folder) is None or folder.parent.name != "checkpoints":
        return
    if is_complete(folder):
        return
    complete = complete_checkpoints(folder.parent)
    raise GrpoError(
        f"{what}: {display_path(folder)} is a checkpoint the trainer did not finish writing "
        f"(it has no {MARKER}: the run stopped while saving it)",
        f"use the newest complete one: {display_path(complete[-1])}"
        if complete
        else "the run has no complete checkpoint yet",
    )


def mark_complete(checkpoint: Path) -> None:
    """Record that the trainer finished writing CHECKPOINT, with each file's size so that a file
    cut short afterwards (an interrupted copy) shows. The files are flushed to disk first, so a
    marked checkpoint is whole even after a power cut."""
    files = {}
    for path in sorted(checkpoint.rglob("*")):
        if path.is_file() and path.name != MARKER:
            with path.open("rb") as f:
                os.fsync(f.fileno())
            files[path.relative_to(checkpoint).as_posix()] = path.stat().st_size
    step = checkpoint_step(checkpoint)
    write_atomic(checkpoint / MARKER, json.dumps({"step": step, "files": files}, indent=1) + "\n")


def checkpoint_damage(checkpoint: Path) -> str | None:
    """What is wrong with a checkpoint's files, or None. Cheap, no tensor is read: sizes against
    the marker, JSON parses, safetensors headers against the file size, and the zip directory
    that ends every torch .pt/.pth/.bin file; cutting a file short breaks each of them."""
    marker = checkpoint / MARKER
    if marker.is_file():
        try:
            recorded = json.loads(marker.read_text(encoding="utf-8"))["files"]
        except (ValueError, KeyError, TypeError):
            return f"{MARKER} is damaged"
        for name, size in recorded.items():
            path = checkpoint / name
            if not path.is_file():
                return f"{name} is missing"
            if path.stat().st_size != size:
                return f"{name} is cut short ({path.stat().st_size} bytes, {size} when saved)"
    if not (checkpoint / TRAINER_STATE).is_file():
        return f"{TRAINER_STATE} is missing"
    if not any((checkpoint / name).is_file() for name in WEIGHTS):
        return "the adapter weights (adapter_model.safetensors) are missing"
    for path in sorted(p for p in checkpoint.rglob("*") if p.is_file()):
        problem = file_damage(path)
        if problem:
            return f"{path.relative_to(checkpoint).as_posix()} {problem}"
    return None


# --- resuming --------------------------------------------------------------------------------


def resume_point(run: RunDir, say: Callable[[str], Any]) -> Path | None:
    """The checkpoint --resume continues from, checked, or None to start from step 0 when no
    checkpoint was completed. What the run holds past it is removed, and said: half-written
    checkpoints, and the records logged after it (they would otherwise appear twice, with the
    values of the lost steps and then of the replayed ones)."""
    complete = complete_checkpoints(run.checkpoints)
    checkpoint = complete[-1] if complete else None
    step = 0
    if checkpoint is not None:
        problem = checkpoint_damage(checkpoint)
        if problem:
            raise damaged(checkpoint, problem, run, complete[:-1])
        step = checkpoint_step(checkpoint) or 0
    since = checkpoint.name if checkpoint is not None else "the start (no complete checkpoint)"
    for child in sorted(run.checkpoints.iterdir()) if run.checkpoints.is_dir() else []:
        if (checkpoint_step(child) or 0) > step and child.is_dir():
            shutil.rmtree(child)
            say(f"removed {child.name}: half-written, the run stopped while saving it")
    from grpo_cli.training.health import HEALTH_FILE

    # a warning raised past the checkpoint is raised again, if it still holds, as the run redoes
    for path in (run.metrics, run.completions, run.path / HEALTH_FILE):
        past, cut = trim_records(path, step)
        if past:
            say(f"dropped {_count(past, 'record')} of {path.name} past {since}")
        if cut:
            say(f"dropped {_count(cut, 'cut-short line')} of {path.name} (a hard stop)")
    return checkpoint


def load_if_finished(trainer: Any, checkpoint: Path | None) -> bool:
    """Load a checkpoint of the last step (the run stopped while saving its adapter) into the
    trainer without training: on resume the Trainer always runs one more step, past max_steps."""
    if checkpoint is None:
        return False
    from transformers import TrainerState

    state = TrainerState.load_from_json(str(checkpoint / TRAINER_STATE))
    if not 0 < trainer.args.max_steps <= state.global_step:
        return False
    trainer._load_from_checkpoint(str(checkpoint))
    trainer.state = state
    return True


def trim_records(path: Path, step: int) -> tuple[int, int]:
    """Drop the records of a JSON-lines file logged after STEP, and lines a hard stop cut short;
    the file is replaced whole. Returns (records past STEP, cut lines)."""
    if not path.is_file():
        return 0, 0
    kept, past, cut = [], 0, 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            cut += 1
            continue
        if (
            isinstance(record, dict)
            and isinstance(record.get("step"), int)
            and record["step"] > step
        ):
            past += 1
            continue
        kept.append(line)
    if past or cut:
        write_atomic(path, "".join(f"{line}\n" for line in kept))
    return past, cut


def damaged(checkpoint: Path, problem: str, run: RunDir, earlier: list[Path]) -> GrpoError:
    """The error for a checkpoint that cannot be resumed from, offering the newest earlier one
    that is whole."""
    usable = next((c for c in reversed(earlier) if checkpoint_damage(c) is None), None)
    where = display_path(checkpoint)
    if usable is None:
        hint = (
            f"no earlier checkpoint is whole; start over: "
            f"{run.command} {display_path(run.config)} --overwrite"
        )
    else:
        aside = display_path(run.path / f"{checkpoint.name}.damaged")
        hint = (
            f"move it aside to resume from {usable.name}: mv {where} {aside} && "
            f"{run.command} {display_path(run.config)} --resume"
        )
    return GrpoError(f"checkpoint {where} is damaged: {problem}", hint)


# --- failures while training -----------------------------------------------------------------


@contextmanager
def failures_explained(
    run: RunDir, trainer: Any, resumed_from: Path | None = None, staged: Path | None = None
) -> Iterator[None]:
    """Failures the user can fix (see `explain_failure`) become user errors; the rest pass.
    STAGED: the final folder, when the save writes it beside and renames it into place."""
    try:
        yield
    except Exception as exc:
        error = explain_failure(exc, run, trainer, resumed_from, staged)
        if error is None:
            raise
        raise error from exc


def explain_failure(
    exc: BaseException,
    run: RunDir,
    trainer: Any,
    resumed_from: Path | None,
    staged: Path | None = None,
) -> GrpoError | None:
    """A user error for a failure the user can fix: a checkpoint that does not load, or a full
    disk while saving a checkpoint or the adapter (or writing a record); None for the rest."""
    frames = {name for e in causes(exc) for name in _frame_names(e)}
    if resumed_from is not None and frames & LOADERS:
        earlier = [c for c in complete_checkpoints(resumed_from.parent) if c != resumed_from]
        problem = f"it does not load ({type(exc).__name__}: {first_line(exc)})"
        return damaged(resumed_from, problem, run, earlier)
    if "_save_checkpoint" in frames:
        target = Path(trainer.args.output_dir) / f"checkpoint-{trainer.state.global_step}"
    elif "save_model" in frames:
        target = staged or run.adapter
    else:  # a record of the run, or a file the error names
        filename = next((f for e in causes(exc) if (f := getattr(e, "filename", None))), None)
        target = Path(filename) if filename else run.path
    final = target in (run.adapter, staged)
    saving = final or checkpoint_step(target) is not None
    complete = complete_checkpoints(run.checkpoints)
    needed = space_needed(complete, trainer, adapter_only=final) if saving else 0
    free = free_space(target) or 0
    if not _disk_full(exc, saving and free < needed):
        return None
    # Half-written: never to be resumed from, and it holds the space. A staged folder is the
    # finished one the failed save was to replace: kept.
    if saving and target != staged and target.is_dir() and target not in complete:
        shutil.rmtree(target)
    message = f"the disk is full: writing {display_path(target)} failed; "
    message += f"{size_text(free)} free there"
    message += f", about {size_text(needed)} needed" if saving else ""
    if complete:
        hint = (
            f"free some space, then resume from {complete[-1].name}: "
            f"{run.command} {display_path(run.config)} --resume"
        )
    else:
        hint = (
            "free some space, then start over: "
            + f"{run.command} {display_path(run.config)} --overwrite"
        )
    return GrpoError(message, hint)


def space_needed(complete: list[Path], trainer: Any, *, adapter_only: bool) -> int:
    """About what a save writes: the size of the last complete checkpoint (less the optimizer and
    RNG state for the adapter), else the trainable weights (times three for a checkpoint: AdamW
    keeps two moments per weight)."""
    if complete:
        files = [p for p in complete[-1].rglob("*") if p.is_file()]
        if adapter_only:
            files = [p for p in files if p.suffix not in (".pt", ".pth")]
        return sum(p.stat().st_size for p in files)
    weights = sum(
        p.numel() * p.element_size() for p in trainer.model.parameters() if p.requires_grad
    )
    return weights if adapter_only else 3 * weights


def _disk_full(exc: BaseException, short_of_space: bool) -> bool:
    for e in causes(exc):
        if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            return True
        # safetensors' Rust writer keeps only the message of the OS error
        if any(s in str(e) for s in ("No space left on device", "os error 28", "quota exceeded")):
            return True
    # torch.save's C++ writer drops the OS error ("unexpected pos", "iostream error"): a save that
    # fails with less space free than it needs is taken for a full disk
    return isinstance(exc, RuntimeError) and short_of_space


def _frame_names(exc: BaseException) -> Iterator[str]:
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        yield frame.f_code.co_name


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("s" if n != 1 else "")
