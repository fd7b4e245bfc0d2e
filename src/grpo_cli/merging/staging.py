"""Writing a model folder so that a crash never leaves a half-written model and never loses the
folder it replaces: the files go to `.<name>.tmp-<pid>-*` beside the target, which is renamed into
place; a folder being replaced waits in `.<name>.old-<pid>-*/replaced` until the new one is in.
A later merge finds what a killed one left (its pid is gone) and undoes or removes it."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from grpo_cli.files import umask_mode

REPLACED = "replaced"


@contextmanager
def staging(target: Path, force: bool) -> Iterator[Path]:
    """A temporary folder beside TARGET, renamed onto it when the block succeeds and deleted when
    it fails: a crash leaves no half-written model and keeps the folder it would replace."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=_prefix(target, "tmp")))
    os.chmod(tmp, umask_mode(directory=True))  # mkdtemp makes it 0700; a model folder is shared
    try:
        yield tmp
        if target.is_dir() and any(target.iterdir()) and force:
            old = Path(tempfile.mkdtemp(dir=target.parent, prefix=_prefix(target, "old")))
            os.replace(target, old / REPLACED)
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(old / REPLACED, target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)  # onto a missing or an empty folder
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def clean_leftovers(target: Path) -> list[str]:
    """Undo what merges into TARGET left when they were killed, and say what was done: a model
    moved aside and never replaced goes back to TARGET; the other leftovers are removed. Folders
    of a merge still running (its process is alive) are left alone."""
    if not target.parent.is_dir():
        return []
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(tmp|old)-(\d+)-")
    dead = []
    for entry in target.parent.iterdir():
        match = pattern.match(entry.name)
        if match and entry.is_dir() and not _alive(int(match.group(2))):
            dead.append((match.group(1) == "tmp", entry))  # the moved-aside model first
    notes, removed = [], []
    for _, entry in sorted(dead):
        if (entry / REPLACED).is_dir() and not target.exists():
            os.replace(entry / REPLACED, target)
            notes.append(f"restored {target} from a merge that was interrupted while replacing it")
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry.name)
    if removed:
        notes.append(
            f"removed {len(removed)} folder(s) left in {target.parent} by interrupted merges: "
            + ", ".join(sorted(removed))
        )
    return notes


def _prefix(target: Path, what: str) -> str:
    return f".{target.name}.{what}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    if pid == os.getpid() or os.name != "posix":  # elsewhere, signal 0 cannot probe a process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
