"""The stack table `grpo doctor` prints: installed versions against pyproject's pins, with fake
installed versions and fake package metadata."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from grpo_cli import stack

REPO = Path(__file__).resolve().parents[1]

PYPROJECT = """
[project]
name = "grpo-cli"
dependencies = ["torch>=2.4,<2.15", "trl==1.15.0", "typer>=0.29,<0.30"]

[project.optional-dependencies]
gpu = [
    "trl[vllm]==1.15.0",
    "vllm==0.31.0",
    "bitsandbytes>=0.48.1,<0.51",
    "xformers>=0.0.30; python_version < '3.13'",
]
wandb = ["wandb>=0.19"]
dev = ["pytest>=8"]
"""

# What the fake installed packages declare (their Requires-Dist).
DECLARED = {
    "vllm": ["torch==2.13.0", "transformers<5.18.0,>=5.10.4"],
    "trl": ["accelerate>=1.4.0", 'vllm<=0.31.0,>=0.21.0; extra == "vllm"'],
    "bitsandbytes": ["torch<3,>=2.4", 'transformers<5,>=4.30.1; extra == "test"'],
}
GPU_BOX = {
    "torch": "2.13.0+cu130",
    "trl": "1.15.0",
    "typer": "0.29.2",
    "vllm": "0.31.0",
    "bitsandbytes": "0.50.2",
    "xformers": "0.0.35",
    "wandb": "0.22.0",
}


def report(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    installed: dict[str, str],
    pyproject: str = PYPROJECT,
) -> dict[str, stack.StackRow]:
    (tmp_path / "pyproject.toml").write_text(pyproject)
    monkeypatch.setattr(stack, "CHECKOUT_PYPROJECT", tmp_path / "pyproject.toml")
    monkeypatch.setattr(stack, "installed_version", installed.get)
    monkeypatch.setattr(stack, "requires_of", lambda name: DECLARED.get(name, []))
    return {row.name: row for row in stack.stack_report()}


def test_a_box_with_the_tested_versions_is_all_ok(monkeypatch, tmp_path):
    rows = report(monkeypatch, tmp_path, GPU_BOX)
    assert all(row.ok and row.fix is None for row in rows.values()), rows
    # torch's CUDA build tag (+cu130) is a local label: ==2.13.0 still holds.
    assert rows["torch"].installed == "2.13.0+cu130"


def test_rows_are_core_first_then_the_runtime_extras_and_not_dev(monkeypatch, tmp_path):
    rows = list(report(monkeypatch, tmp_path, GPU_BOX).values())
    assert [r.name for r in rows] == [
        "torch",
        "trl",
        "typer",
        "vllm",
        "bitsandbytes",
        "xformers",
        "wandb",
    ]
    assert [r.required for r in rows] == [True] * 3 + [False] * 4


def test_an_exact_pin_reads_as_the_version_and_a_range_as_the_range(monkeypatch, tmp_path):
    rows = report(monkeypatch, tmp_path, GPU_BOX)
    # trl is pinned twice (core and trl[vllm] in gpu): one row, the clause once.
    assert rows["trl"].tested == "1.15.0"
    assert rows["torch"].tested == ">=2.4,<2.15"
    assert rows["bitsandbytes"].tested == ">=0.48.1,<0.51"


def test_a_version_outside_the_pin_names_the_command_that_fixes_it(monkeypatch, tmp_path):
    rows = report(monkeypatch, tmp_path, {**GPU_BOX, "trl": "1.16.0", "typer": "0.30.1"})
    assert not rows["trl"].ok and not rows["typer"].ok
    # The core fix installs trl alone, not trl[vllm], which would pull vLLM onto a CPU box.
    assert rows["trl"].fix == "pip install 'trl==1.15.0'"
    assert rows["typer"].fix == "pip install 'typer>=0.29,<0.30'"


def test_the_fix_for_a_version_outside_the_pin_also_meets_the_installed_libraries(
    monkeypatch, tmp_path
):
    # Our range alone would let pip pick torch 2.14; the installed vllm 0.31.0 needs 2.13.0.
    rows = report(monkeypatch, tmp_path, {**GPU_BOX, "torch": "2.15.0"})
    assert rows["torch"].fix == "pip install 'torch==2.13.0' (vllm 0.31.0 requires torch==2.13.0)"


def test_a_missing_core_package_is_a_required_row_and_a_missing_extra_names_its_extra(
    monkeypatch, tmp_path
):
    cpu_box = {"torch": "2.13.0+cpu", "trl": "1.15.0"}
    rows = report(monkeypatch, tmp_path, cpu_box)
    assert rows["typer"].required and not rows["typer"].ok
    assert rows["typer"].fix == "pip install 'typer>=0.29,<0.30'"
    assert not rows["vllm"].required and not rows["vllm"].ok
    assert rows["vllm"].installed is None
    assert rows["vllm"].fix == "pip install -e '.[gpu]'"
    assert rows["wandb"].fix == "pip install -e '.[wandb]'"


def test_a_version_our_range_allows_but_an_installed_library_refuses_is_not_ok(
    monkeypatch, tmp_path
):
    # torch 2.14.0 is inside our own range, but the installed vllm 0.31.0 declares torch==2.13.0.
    rows = report(monkeypatch, tmp_path, {**GPU_BOX, "torch": "2.14.0"})
    assert not rows["torch"].ok
    assert rows["torch"].fix == ("pip install 'torch==2.13.0' (vllm 0.31.0 requires torch==2.13.0)")
    assert rows["vllm"].ok  # the row to change is torch's, not vllm's


def test_the_extras_we_install_decide_which_declared_ranges_count(monkeypatch, tmp_path):
    # trl declares its vLLM range under its own "vllm" extra: it counts because the gpu extra
    # installs trl[vllm], and only then.
    ranged = PYPROJECT.replace('"vllm==0.31.0"', '"vllm>=0.21"')
    rows = report(monkeypatch, tmp_path, {**GPU_BOX, "vllm": "0.32.0"}, ranged)
    assert not rows["vllm"].ok
    assert "trl 1.15.0 requires vllm<=0.31.0,>=0.21.0" in (rows["vllm"].fix or "")
    without_extra = ranged.replace('"trl[vllm]==1.15.0"', '"trl==1.15.0"')
    rows = report(monkeypatch, tmp_path, {**GPU_BOX, "vllm": "0.32.0"}, without_extra)
    assert rows["vllm"].ok


def test_a_marker_of_an_optional_dependency_keeps_it_in_its_extra():
    lines = stack.pyproject_requirements(PYPROJECT)
    assert 'xformers>=0.0.30; (python_version < "3.13") and extra == "gpu"' in lines
    pinned = stack.pins(lines)
    assert pinned["xformers"].extra == "gpu"
    assert "pytest" not in pinned


def test_a_source_checkout_reads_its_own_pyproject_not_the_installed_metadata(
    monkeypatch, tmp_path
):
    # An editable install keeps the metadata of its last `pip install -e .`; after a pin changes
    # in the checkout, the checkout is what the user runs.
    monkeypatch.setattr(stack, "requires_of", lambda name: ['vllm==0.32.0; extra == "gpu"'])
    checkout = tmp_path / "pyproject.toml"
    checkout.write_text(PYPROJECT)
    assert 'vllm==0.31.0; extra == "gpu"' in stack.declared_requirements(checkout)
    # Installed from a wheel there is no pyproject.toml beside the package: the metadata.
    gone = tmp_path / "elsewhere" / "pyproject.toml"
    assert stack.declared_requirements(gone) == ['vllm==0.32.0; extra == "gpu"']


def test_this_checkout_reads_the_repository_pyproject():
    assert REPO / "pyproject.toml" == stack.CHECKOUT_PYPROJECT
    lines = stack.declared_requirements()
    assert lines == stack.pyproject_requirements((REPO / "pyproject.toml").read_text())


def test_the_report_imports_none_of_the_libraries_it_reports_on():
    code = (
        "import sys\n"
        "from grpo_cli.stack import stack_report\n"
        "rows = stack_report()\n"
        "assert any(r.name == 'torch' and r.installed for r in rows), rows\n"
        "heavy = ('torch', 'transformers', 'trl', 'peft', 'unsloth', 'vllm', 'bitsandbytes')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "[]"


def test_the_cpu_venv_meets_the_core_pins():
    # The machine the tests run on is a tested set: every core dependency installed and in range.
    rows = [row for row in stack.stack_report() if row.required]
    assert rows and all(row.ok for row in rows), [row for row in rows if not row.ok]
