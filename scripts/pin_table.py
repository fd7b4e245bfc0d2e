"""Regenerate scripts/pin_table.json: for each library of the GPU stack, the version our pins
resolve to and what its wheel declares about the others (Requires-Dist), so that
tests/test_pins.py checks a version bump against every library's declared range, offline.

    python scripts/pin_table.py                  # pip download --no-deps of each wheel
    python scripts/pin_table.py --metadata-only  # read only METADATA out of each remote wheel
    python scripts/pin_table.py --resolve        # also: does pip itself pick the table's versions?

Run it after changing a pin in pyproject.toml; it exits 1 naming any declared range the pins
break, and tests/test_pins.py checks the same offline. The versions are chosen like pip would on a
fresh Linux x86_64 / glibc 2.35 / CPython 3.11 box (Colab): exact pins as they are, then each
range's newest release that also meets what the packages chosen so far declare.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from email.parser import Parser
from pathlib import Path
from typing import Any

from packaging import tags
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from grpo_cli.stack import Pin, merge, pins, pyproject_requirements  # noqa: E402

TABLE = REPO / "scripts" / "pin_table.json"
INDEX = "https://pypi.org/simple"

# The libraries whose declared ranges must agree: our pinned ML stack, plus the ones they pin to
# an exact torch (torchvision, xformers, triton), where a mismatch breaks the import.
STACK = (
    "torch",
    "torchvision",
    "triton",
    "xformers",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "huggingface-hub",
    "unsloth",
    "unsloth-zoo",
    "vllm",
    "vllm-bnb-plugin",
    "bitsandbytes",
    "torchao",
)
# What the wheels are for: the box the GPU recipes run on (Colab, a rented T4 or L4).
PLATFORM = {
    "os_name": "posix",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "platform_python_implementation": "CPython",
    "implementation_name": "cpython",
    "python_version": "3.11",
    "python_full_version": "3.11.0",
}
# A fresh Colab or a rented Ubuntu 22.04 box has glibc 2.35, so every manylinux wheel up to
# 2_35 installs there (vLLM's llguidance needs 2_31, more than vLLM's own 2_28 wheel says).
_PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(35, 4, -1)] + [
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
    "linux_x86_64",
]
PIP_TARGET = [
    "--only-binary=:all:",
    *(f"--platform={platform}" for platform in _PLATFORMS),
    "--python-version=3.11",
    "--implementation=cp",
    "--abi=cp311",
]
# torch's CUDA build is not a library of ours but decides the driver a user needs.
EXTRA_LINES = ("cuda-toolkit",)


def stack_pins(pyproject_text: str) -> dict[str, Pin]:
    """Our pins of the stack's libraries (core and gpu extra), canonical name -> Pin."""
    pinned = pins(pyproject_requirements(pyproject_text), extras=("gpu",))
    return {name: pin for name, pin in pinned.items() if name in STACK}


def stack_lines(requires_dist: list[str]) -> list[str]:
    """The Requires-Dist lines about the stack, as the wheel wrote them."""
    keep = set(STACK) | set(EXTRA_LINES)
    return [line for line in requires_dist if canonicalize_name(Requirement(line).name) in keep]


def stack_requires(lines: list[str], extras: list[str]) -> dict[str, str]:
    """What a wheel requires of the stack on PLATFORM when installed with `extras`: canonical
    name -> specifier, its lines for one name intersected."""
    out: dict[str, SpecifierSet] = {}
    for line in lines:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        if name not in STACK or not _applies(req.marker, extras):
            continue
        out[name] = merge(out.get(name, SpecifierSet()), req.specifier)
    return {name: str(spec) for name, spec in sorted(out.items())}


def table_entry(
    version: str, wheel: str, extras: list[str], requires_dist: list[str]
) -> dict[str, Any]:
    lines = stack_lines(requires_dist)
    entry: dict[str, Any] = {
        "version": version,
        "wheel": wheel,
        "extras": extras,
        "requires": stack_requires(lines, extras),
        "requires_dist": lines,
    }
    cuda = [Requirement(line) for line in lines if Requirement(line).name == "cuda-toolkit"]
    if cuda:
        entry["cuda"] = str(cuda[0].specifier).lstrip("=")
    return entry


def pin_problems(pyproject_text: str, table: dict[str, Any]) -> list[str]:
    """Where pyproject.toml's pins and the libraries' declared ranges disagree, one line each;
    [] when every pinned version meets what every other library declares about it."""
    packages = table["packages"]
    problems = []
    rerun = "run python scripts/pin_table.py"
    for name in sorted(set(STACK) - set(packages)):
        problems.append(f"the table has no {name}: {rerun}")
    for name, pin in stack_pins(pyproject_text).items():
        entry = packages.get(name)
        if entry is None:
            continue
        if not pin.specifier.contains(entry["version"], prereleases=True):
            problems.append(
                f"pyproject.toml allows {pin.name}{pin.specifier} but the table holds "
                f"{entry['version']}: {rerun}"
            )
        if entry["extras"] != sorted(pin.extras):
            problems.append(f"pyproject.toml installs {pin.name} with other extras: {rerun}")
    for name, entry in sorted(packages.items()):
        for dep, spec in entry["requires"].items():
            have = packages.get(dep, {}).get("version")
            if have is not None and not SpecifierSet(spec).contains(have, prereleases=True):
                problems.append(
                    f"{name} {entry['version']} declares {dep}{spec}, the pins give {dep} {have}"
                )
    return problems


def resolve_problems(pyproject_text: str, table: dict[str, Any]) -> list[str]:
    """Where pip's own resolver, installing the core and gpu requirements on PLATFORM, picks
    another version than the table (a dry run: it reads metadata, installs nothing)."""
    lines = [
        line.split(";")[0]
        for line in pyproject_requirements(pyproject_text)
        if "extra ==" not in line or 'extra == "gpu"' in line
    ]
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text("\n".join(lines) + "\n", encoding="utf-8")
        report = Path(tmp) / "report.json"
        # fast-deps reads each wheel's METADATA by HTTP range instead of downloading GBs.
        _pip(
            "install",
            "--dry-run",
            "--ignore-installed",
            "--use-feature=fast-deps",
            f"--report={report}",
            f"--target={tmp}/target",
            f"--index-url={INDEX}",
            *PIP_TARGET,
            "-r",
            str(requirements),
        )
        chosen = {
            canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
            for item in json.loads(report.read_text(encoding="utf-8"))["install"]
        }
    return [
        f"pip picks {name} {chosen.get(name)}, the table holds {entry['version']}"
        for name, entry in sorted(table["packages"].items())
        if chosen.get(name) != entry["version"]
    ]


def choose(name: str, allowed: SpecifierSet, available: list[str]) -> str:
    """The newest release in `allowed`, as pip picks it."""
    found = sorted(allowed.filter(available), key=Version)
    if not found:
        raise SystemExit(
            f"{name}: no release satisfies {allowed or 'any'} (declared ranges collide)"
        )
    return found[-1]


def _applies(marker: Marker | None, extras: list[str]) -> bool:
    if marker is None:
        return True
    return any(marker.evaluate({**PLATFORM, "extra": extra}) for extra in ("", *extras))


def _pip(*args: str) -> str:
    cmd = [sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check", *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def available_versions(name: str) -> list[str]:
    out = _pip("index", "versions", name, f"--index-url={INDEX}", *PIP_TARGET[1:])
    for line in out.splitlines():
        if line.startswith("Available versions:"):
            return [v.strip() for v in line.split(":", 1)[1].split(",")]
    raise SystemExit(f"pip index versions {name}: no versions in\n{out}")


def download_metadata(name: str, version: str, folder: Path) -> tuple[str, list[str]]:
    """(wheel file name, Requires-Dist) from `pip download --no-deps`."""
    _pip(
        "download",
        "--no-deps",
        f"--index-url={INDEX}",
        *PIP_TARGET,
        "-d",
        str(folder),
        f"{name}=={version}",
    )
    wheel = next(p for p in folder.glob("*.whl") if canonicalize_name(p.name.split("-")[0]) == name)
    with zipfile.ZipFile(wheel) as z:
        return wheel.name, _requires_dist(z)


def remote_metadata(name: str, version: str) -> tuple[str, list[str]]:
    """(wheel file name, Requires-Dist) read out of the remote wheel with HTTP range requests,
    for vLLM and torch, whose wheels are hundreds of MB to download."""
    request = urllib.request.Request(
        f"{INDEX}/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        files = json.load(response)["files"]
    for f in files:
        if _fits(f["filename"], version):
            with zipfile.ZipFile(io.BufferedReader(_RemoteFile(f["url"], f["size"]))) as z:
                return f["filename"], _requires_dist(z)
    raise SystemExit(f"{name} {version}: no Linux x86_64 / CPython 3.11 wheel on {INDEX}")


def _fits(wheel: str, version: str) -> bool:
    """Whether a wheel file of `version` installs on PLATFORM, by the tags PIP_TARGET names."""
    if not wheel.endswith(".whl"):
        return False
    _, wheel_version, _, wheel_tags = parse_wheel_filename(wheel)
    return wheel_version == Version(version) and not wheel_tags.isdisjoint(_SUPPORTED)


_SUPPORTED = frozenset(
    [
        *tags.cpython_tags((3, 11), ["cp311"], _PLATFORMS),
        *tags.compatible_tags((3, 11), "cp311", _PLATFORMS),
    ]
)


class _RemoteFile(io.RawIOBase):
    """A read-only file over HTTP range requests: zipfile reads a wheel's directory and one
    member without the rest."""

    def __init__(self, url: str, size: int) -> None:
        self.url, self.size, self.pos = url, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = {0: offset, 1: self.pos + offset, 2: self.size + offset}[whence]
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.size - self.pos)
        if n <= 0:
            return 0
        headers = {"Range": f"bytes={self.pos}-{self.pos + n - 1}"}
        with urllib.request.urlopen(urllib.request.Request(self.url, headers=headers)) as r:
            data = r.read()
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)


def _requires_dist(wheel: zipfile.ZipFile) -> list[str]:
    name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    metadata = Parser().parsestr(wheel.read(name).decode("utf-8"))
    return list(metadata.get_all("Requires-Dist") or [])


def build_table(pyproject_text: str, metadata_only: bool) -> dict[str, Any]:
    pinned = stack_pins(pyproject_text)
    exact = [n for n in STACK if n in pinned and pinned[n].exact]
    order = exact + [n for n in STACK if n not in exact]
    declared: dict[str, SpecifierSet] = {}
    packages: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in order:
            allowed = declared.get(name, SpecifierSet())
            if name in pinned:
                allowed = merge(allowed, pinned[name].specifier)
            version = choose(name, allowed, available_versions(name))
            print(f"{name}=={version}", file=sys.stderr)
            folder = Path(tmp) / name
            folder.mkdir()
            wheel, requires_dist = (
                remote_metadata(name, version)
                if metadata_only
                else download_metadata(name, version, folder)
            )
            extras = sorted(pinned[name].extras) if name in pinned else []
            entry = table_entry(version, wheel, extras, requires_dist)
            for dep, spec in entry["requires"].items():
                declared[dep] = merge(declared.get(dep, SpecifierSet()), SpecifierSet(spec))
            packages[name] = entry
    return {
        "generated_by": "python scripts/pin_table.py (do not edit by hand)",
        "platform": PLATFORM,
        "packages": dict(sorted(packages.items())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metadata-only", action="store_true", help="read METADATA remotely")
    parser.add_argument("--output", type=Path, default=TABLE, help=f"default: {TABLE}")
    parser.add_argument("--resolve", action="store_true", help="compare with pip's resolver")
    args = parser.parse_args()
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    table = build_table(pyproject, args.metadata_only)
    args.output.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")
    problems = pin_problems(pyproject, table)
    if args.resolve:
        problems += resolve_problems(pyproject, table)
    for problem in problems:
        print(f"conflict: {problem}", file=sys.stderr)
    if problems:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
