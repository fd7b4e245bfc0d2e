"""Writing files so that a crash never leaves one half-written, and the storage faults a user
can fix (no permission, a full disk, a read-only file system) told as such."""

from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from grpo_cli.errors import GrpoError


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


def append_jsonl(path: Path, records: list[dict[str, Any]], *, durable: bool = False) -> None:
    """Records appended as JSON lines, the first on a fresh line even when a hard stop left the
    last one without its newline (it would have the next glued onto it). One write, so a kill
    leaves whole records or one cut short; `durable` waits until they are on disk."""
    text = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)
    with path.open("a+b") as f:
        if f.tell() and (f.seek(f.tell() - 1), f.read(1))[1] != b"\n":
            text = "\n" + text
        f.write(text.encode("utf-8"))
        if durable:
            f.flush()
            os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a run's JSON-lines file (none when it is missing); a line a hard stop cut
    short is skipped, as resume drops it too."""
    import json

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def size_text(n: float) -> str:
    """A size as people read it: `500 bytes`, `12.3 MB`."""
    for unit in ("bytes", "KB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def free_space(path: Path) -> int | None:
    """Bytes free on the file system that holds PATH (or its nearest existing parent)."""
    for folder in (path, *path.parents):
        try:
            return shutil.disk_usage(folder).free
        except OSError:
            continue
    return None


def storage_error(exc: OSError) -> GrpoError | None:
    """A storage fault the user can fix, as a user error naming the file; None for any other
    OSError (a bug, or a fault that is not the user's to fix)."""
    where = str(exc.filename) if exc.filename else ""
    if isinstance(exc, PermissionError):
        return GrpoError(
            f"permission denied: {where or exc}",
            "choose a folder you can write (output.dir, or --output), or check the file's "
            "permissions",
        )
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        free = free_space(Path(where) if where else Path.cwd())
        there = f" ({size_text(free)} free there)" if free is not None else ""
        return GrpoError(
            f"the disk is full: writing {where or 'a file'} failed{there}",
            "free some space (or write elsewhere with output.dir or --output) and run the same "
            "command again: finished work was kept",
        )
    if exc.errno == errno.EROFS:
        return GrpoError(
            f"read-only file system: {where or exc}",
            "write to another folder (output.dir, or --output)",
        )
    return None


def file_damage(path: Path) -> str | None:
    """Why a saved JSON, safetensors or torch file cannot be read back (cut short by a kill or
    a full disk, or damaged), or None. Cheap: headers and zip directories, not the tensors."""
    try:
        if path.suffix == ".json":
            if not json_reads(path):
                return "is not valid JSON (cut short?)"
        elif path.suffix == ".safetensors":
            return _safetensors_damage(path)
        elif path.suffix in (".pt", ".pth", ".bin"):
            with zipfile.ZipFile(path):
                pass
    except zipfile.BadZipFile:
        return "is cut short (its zip directory does not read)"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return None


class SafetensorsDamage(ValueError):
    """A safetensors file whose header cannot be read; the message says why, as `damage` does."""


def safetensors_header(path: Path) -> tuple[dict[str, Any], int]:
    """The JSON header of a safetensors file (tensor name -> dtype, shape and `data_offsets`,
    byte ranges counted from the end of the header) and the file offset those ranges start at.
    The layout is an 8-byte little-endian header length, the header, then the tensors' bytes;
    reading it needs neither torch nor numpy (which has no bfloat16). Raises SafetensorsDamage."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise SafetensorsDamage("is cut short (no header)")
        (length,) = struct.unpack("<Q", head)
        if 8 + length > size:
            raise SafetensorsDamage("is cut short (its header runs past the end of the file)")
        try:
            header = json.loads(f.read(length))
        except ValueError:
            raise SafetensorsDamage("has a damaged header") from None
    if not isinstance(header, dict):
        raise SafetensorsDamage("has a damaged header")
    return header, 8 + length


def _safetensors_damage(path: Path) -> str | None:
    """A safetensors file is an 8-byte header length, a JSON header, then the tensors the header
    locates: the file must end exactly where the last tensor does."""
    try:
        header, start = safetensors_header(path)
        end = max(
            (int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"),
            default=0,
        )
    except SafetensorsDamage as exc:
        return str(exc)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        return "has a damaged header"
    size = path.stat().st_size
    if start + end != size:
        return f"is cut short ({size} bytes, its header declares {start + end})"
    return None


def json_reads(path: Path) -> bool:
    """Whether PATH holds JSON that parses."""
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True
