"""The installed library stack against the versions grpo-cli declares and is tested with."""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass

# The extras whose libraries the GPU recipes and the tracker choice use; the dev extra is not
# the user's stack.
_EXTRAS = ("gpu", "wandb", "tensorboard", "trackio")


@dataclass(frozen=True)
class StackRow:
    name: str
    installed: str | None  # None: not installed
    tested: str  # the version range grpo-cli declares for it
    ok: bool
    fix: str | None
    required: bool  # a core dependency; an extra's library may be absent


def stack_report() -> list[StackRow]:
    """One row per library grpo-cli declares (core, then the gpu and tracker extras)."""
    from packaging.requirements import Requirement

    rows: dict[str, StackRow] = {}
    for text in importlib.metadata.requires("grpo-cli") or []:
        req = Requirement(text)
        extra = _extra(text)
        if extra is not None and extra not in _EXTRAS or req.name in rows:
            continue
        try:
            version: str | None = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            version = None
        spec = str(req.specifier) or "any"
        ok = version is not None and req.specifier.contains(version, prereleases=True)
        target = f"-e '.[{extra}]'" if extra else f"'{req.name}{req.specifier}'"
        fix = None if ok or (version is None and extra) else f"pip install {target}"
        if version is None and extra:
            ok, fix = True, None  # optional: its absence is said where a config needs it
        rows[req.name] = StackRow(req.name, version, spec, ok, fix, extra is None)
    return list(rows.values())


def _extra(requirement: str) -> str | None:
    marker = requirement.partition(";")[2]
    if "extra ==" not in marker:
        return None
    return marker.split("extra ==", 1)[1].strip().strip("'\"")
