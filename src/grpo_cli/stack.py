"""The libraries grpo-cli is tested with (pyproject.toml's pins) against the ones installed: the
stack table of `grpo doctor`, and the one reader of our pins that scripts/pin_table.py uses too.

Package metadata only: it costs milliseconds and imports none of the libraries it reports on.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

# The extras a user installs to run something; `dev` holds test tools, not the runtime.
RUNTIME_EXTRAS = ("gpu", "wandb", "tensorboard", "trackio")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# Where pyproject.toml sits when grpo_cli runs from a source checkout (src/grpo_cli/stack.py).
CHECKOUT_PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


@dataclass(frozen=True)
class Pin:
    """What pyproject.toml allows for one distribution, its extras merged."""

    name: str  # as pyproject spells it, e.g. "huggingface_hub"
    specifier: SpecifierSet
    extras: frozenset[str]  # the package's own extras we install, e.g. {"vllm"} for trl[vllm]
    extra: str | None  # None for a core dependency, else the extra of ours that brings it

    @property
    def exact(self) -> str | None:
        """The one version the specifier allows when it has an `==` clause, else None."""
        for spec in self.specifier:
            if spec.operator in ("==", "===") and "*" not in spec.version:
                return spec.version if self.specifier.contains(spec.version, True) else None
        return None

    @property
    def tested(self) -> str:
        """The specifier as a person reads it: "1.15.0" for an exact pin."""
        return self.exact or show(self.specifier) or "any"


@dataclass(frozen=True)
class StackRow:
    name: str  # distribution name, e.g. "trl"
    installed: str | None  # importlib.metadata version, None when missing
    tested: str  # the version/range we test, e.g. "1.15.0" or ">=2.4,<2.15"
    ok: bool  # installed, within `tested`, and within what the other installed pins declare
    fix: str | None  # e.g. "pip install 'trl==1.15.0'" or "pip install -e '.[gpu]'"
    required: bool  # core dependency (True) or gpu/optional extra (False)


def pyproject_requirements(text: str) -> list[str]:
    """pyproject.toml's dependencies in the form importlib.metadata.requires gives them: an
    optional dependency carries `extra == "<group>"` in its marker."""
    project = tomllib.loads(text)["project"]
    lines = list(project.get("dependencies", []))
    for group, deps in project.get("optional-dependencies", {}).items():
        for dep in deps:
            req = Requirement(dep)
            marker = (
                f'({req.marker}) and extra == "{group}"' if req.marker else f'extra == "{group}"'
            )
            req.marker = None
            lines.append(f"{req}; {marker}")
    return lines


def declared_requirements(pyproject: Path | None = None) -> list[str]:
    """grpo-cli's requirements. A source checkout's pyproject.toml comes first: an editable
    install keeps the metadata of its last `pip install -e .`, stale once a pin changes."""
    pyproject = pyproject or CHECKOUT_PYPROJECT
    if pyproject.is_file():
        text = pyproject.read_text(encoding="utf-8")
        if tomllib.loads(text).get("project", {}).get("name") == "grpo-cli":
            return pyproject_requirements(text)
    return requires_of("grpo-cli")


def requires_of(name: str) -> list[str]:
    """An installed distribution's Requires-Dist lines; [] when it is not installed."""
    try:
        return importlib.metadata.requires(name) or []
    except importlib.metadata.PackageNotFoundError:
        return []


def pins(requirements: list[str], extras: tuple[str, ...] = RUNTIME_EXTRAS) -> dict[str, Pin]:
    """Canonical name -> Pin, core dependencies and those of `extras`. A package listed twice
    (trl, and trl[vllm] in the gpu extra) is one Pin whose specifier must hold for both."""
    out: dict[str, Pin] = {}
    for line in requirements:
        req = Requirement(line)
        extra = _extra_of(req)
        if extra is not None and extra not in extras:
            continue
        key = canonicalize_name(req.name)
        old = out.get(key)
        if old is None:
            out[key] = Pin(req.name, req.specifier, frozenset(req.extras), extra)
        else:
            out[key] = Pin(
                old.name,
                merge(old.specifier, req.specifier),
                old.extras | req.extras,
                None if old.extra is None or extra is None else old.extra,
            )
    return out


def show(spec: SpecifierSet) -> str:
    """Lower bounds first, then upper bounds, then exclusions: ">=2.4,<2.15", as people write it."""
    order = {">": 0, ">=": 0, "==": 1, "===": 1, "~=": 1, "<": 2, "<=": 2, "!=": 3}
    return ",".join(str(s) for s in sorted(spec, key=lambda s: (order[s.operator], str(s))))


def merge(a: SpecifierSet, b: SpecifierSet) -> SpecifierSet:
    """Both specifiers at once, each clause once (packaging's `&` keeps a repeated clause)."""
    return SpecifierSet(",".join(sorted({str(s) for s in a} | {str(s) for s in b})))


def stack_report() -> list[StackRow]:
    """One row per pinned library, core dependencies first, in pyproject's order."""
    pinned = pins(declared_requirements())
    versions = {key: installed_version(pin.name) for key, pin in pinned.items()}
    conflicts = declared_conflicts(pinned, versions)
    rows = [_row(pin, versions[key], conflicts.get(key, [])) for key, pin in pinned.items()]
    return sorted(rows, key=lambda row: not row.required)


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def declared_conflicts(
    pinned: dict[str, Pin], versions: dict[str, str | None]
) -> dict[str, list[tuple[str, Requirement]]]:
    """Canonical name -> (who, requirement) for each installed pinned package whose installed
    version another installed pinned package declares it cannot use: pip's own check, limited
    to our stack (vllm 0.31.0 declares torch==2.13.0, which our torch range alone allows)."""
    out: dict[str, list[tuple[str, Requirement]]] = {}
    for key, pin in pinned.items():
        version = versions[key]
        if version is None:
            continue
        who = f"{pin.name} {version}"
        for req in _stack_requirements(pin, pinned):
            target = canonicalize_name(req.name)
            have = versions.get(target)
            if target != key and have and not req.specifier.contains(have, prereleases=True):
                out.setdefault(target, []).append((who, req))
    return out


def _stack_requirements(pin: Pin, pinned: dict[str, Pin]) -> list[Requirement]:
    """What the installed `pin` declares on the other pinned packages, for this platform and
    the extras of it we install."""
    ours = tuple(f'extra == "{extra}"' for extra in sorted(pin.extras))
    out = []
    for line in requires_of(pin.name):
        # unsloth declares ~600 lines, most for extras we do not install: skip those unparsed.
        if "extra ==" in line and not any(extra in line for extra in ours):
            continue
        match = _NAME.match(line)
        if match is None or canonicalize_name(match.group()) not in pinned:
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is None or any(
            req.marker.evaluate({"extra": extra}) for extra in ("", *sorted(pin.extras))
        ):
            out.append(req)
    return out


def _row(pin: Pin, version: str | None, conflicts: list[tuple[str, Requirement]]) -> StackRow:
    required = pin.extra is None
    if version is None:
        fix = _install(pin.name, pin.specifier) if required else f"pip install -e '.[{pin.extra}]'"
        return StackRow(pin.name, None, pin.tested, False, fix, required)
    if pin.specifier.contains(version, prereleases=True) and not conflicts:
        return StackRow(pin.name, version, pin.tested, True, None, required)
    # pip does not weigh what the installed packages declare when it changes one of them, so
    # the fix names every range at once.
    spec = pin.specifier
    for _, req in conflicts:
        spec = merge(spec, req.specifier)
    fix = _install(pin.name, spec)
    if conflicts:
        fix += f" ({'; '.join(f'{who} requires {req}' for who, req in conflicts)})"
    return StackRow(pin.name, version, pin.tested, False, fix, required)


def _install(name: str, spec: SpecifierSet) -> str:
    exact = Pin(name, spec, frozenset(), None).exact
    return f"pip install '{name}=={exact}'" if exact else f"pip install '{name}{show(spec)}'"


def _extra_of(req: Requirement) -> str | None:
    """The extra of ours a requirement belongs to, None for a core dependency."""
    if req.marker is None:
        return None
    found = re.search(r'extra\s*==\s*"([^"]+)"', str(req.marker))
    return found.group(1) if found else None
