"""Load user code: plugin folders (`rewards/`), `path/to/file.py:function` and
`package.module:function` references, with errors that name the file and line.

Plugins register rewards (and dataset formatters) with the decorators of those registries when
they are imported. Relative paths are read from the current folder, like every path in a config.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from grpo_cli.errors import GrpoError

PROJECT_PLUGIN_DIR = Path("rewards")


class PluginError(GrpoError):
    """User code that cannot be imported or lacks what the config names."""


_loaded: dict[Path, ModuleType] = {}


def plugin_files(folders: Iterable[str | Path]) -> list[Path]:
    """The .py files in each folder (or the file itself), sorted; names starting with _ skipped."""
    files: list[Path] = []
    for folder in folders:
        path = Path(folder).expanduser()
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += sorted(p for p in path.glob("*.py") if not p.name.startswith("_"))
        else:
            raise PluginError(
                f"reward plugin folder {folder} does not exist (looked in {path.resolve()})",
                "fix the path in reward_plugins (relative paths are read from the current folder)",
            )
    return files


def load_plugins(folders: Iterable[str | Path], include_project: bool = True) -> list[Path]:
    """Import every plugin file once; the project's `rewards/` folder first when it exists."""
    folders = list(folders)
    if include_project and PROJECT_PLUGIN_DIR.is_dir():
        folders.insert(0, PROJECT_PLUGIN_DIR)
    files = plugin_files(folders)
    for file in files:
        load_file(file)
    return files


def load_file(path: str | Path) -> ModuleType:
    """Import a Python file by path (once per process); errors point at the file and line."""
    path = Path(path).expanduser()
    resolved = path.resolve()
    if resolved in _loaded:
        return _loaded[resolved]
    if not path.is_file():
        raise PluginError(
            f"{path} not found (looked in {resolved})",
            "relative paths are read from the current folder",
        )
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:8]
    name = f"grpo_plugin_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise PluginError(f"{path} cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    # In sys.modules so functions defined there can be pickled (multi-process data loading).
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except GrpoError:
        del sys.modules[name]
        raise
    except BaseException as exc:
        del sys.modules[name]
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise PluginError(
            f"{_where(exc, resolved, path)}: {type(exc).__name__}: {exc}",
            f"fix {path}, or move it out of the plugin folder; run with --debug for the traceback",
        ) from exc
    _loaded[resolved] = module
    return module


def import_reference(ref: str) -> Callable[..., Any]:
    """The callable named by `package.module:function` or `path/to/file.py:function`."""
    target, _, attr = ref.rpartition(":")
    if not target or not attr:
        raise PluginError(
            f"{ref!r} is not a reference of the form module:function or file.py:function"
        )
    if target.endswith(".py") or "/" in target or "\\" in target:
        module = load_file(target)
        where = target
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise PluginError(
                f"cannot import module {target} for {ref}: {type(exc).__name__}: {exc}",
                "install the package, or reference a file as path/to/file.py:function",
            ) from exc
        except Exception as exc:
            raise PluginError(
                f"importing {target} for {ref} failed: {type(exc).__name__}: {exc}",
                "run with --debug for the traceback",
            ) from exc
        where = f"module {target}"
    obj = getattr(module, attr, None)
    if obj is None or not callable(obj):
        functions = sorted(
            n
            for n, v in vars(module).items()
            if callable(v)
            and not n.startswith("_")
            and getattr(v, "__module__", None) == module.__name__
        )
        found = f"; it defines {', '.join(functions)}" if functions else ""
        raise PluginError(f"{where} has no function {attr}{found}")
    return obj


def _where(exc: BaseException, resolved: Path, shown: Path) -> str:
    """`file:line` of the deepest frame of the plugin file itself (the line the user must fix)."""
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f"{shown}:{exc.lineno}"
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == resolved:
            line = frame.lineno
    return f"{shown}:{line}" if line else str(shown)
