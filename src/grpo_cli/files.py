"""Writing files so that a crash never leaves one half-written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def umask_mode(directory: bool = False) -> int:
    """The mode `open()` or `mkdir()` would give a new file or folder under the current umask.
    mkstemp and mkdtemp create theirs private (0600 / 0700), which would make a run's files
    unreadable to the people it is shared with."""
    umask = os.umask(0)  # the only way to read it is to set it
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def open_temporary(path: Path, suffix: str = "") -> tuple[int, str]:
    """A new file beside `path` (for a rename onto it), with the usual mode of a new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.fchmod(fd, umask_mode())
    return fd, tmp


def write_atomic(path: Path, text: str) -> None:
    """Write beside the target and rename over it: readers see the old file or the new one."""
    fd, tmp = open_temporary(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
