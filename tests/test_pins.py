"""pyproject.toml's pins against what every library of the GPU stack declares about the others
(scripts/pin_table.json, regenerated from the wheels by scripts/pin_table.py): a version bump is
checked here, offline, instead of on a user's GPU after ten minutes of downloads."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from packaging.version import Version

from grpo_cli import stack

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = (REPO / "pyproject.toml").read_text(encoding="utf-8")


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pin_table", REPO / "scripts" / "pin_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pin_table = _load_script()


@pytest.fixture
def table() -> dict[str, Any]:
    return json.loads(pin_table.TABLE.read_text(encoding="utf-8"))


def test_the_pins_meet_every_declared_range(table):
    assert pin_table.pin_problems(PYPROJECT, table) == []


def test_bumping_vllm_without_regenerating_the_table_fails():
    bumped = PYPROJECT.replace('"vllm==0.31.0"', '"vllm==0.32.0"')
    assert bumped != PYPROJECT
    problems = pin_table.pin_problems(bumped, json.loads(pin_table.TABLE.read_text()))
    assert problems == [
        "pyproject.toml allows vllm==0.32.0 but the table holds 0.31.0: "
        "run python scripts/pin_table.py"
    ]


def test_vllm_0_32_after_regenerating_fails_on_trls_supported_range(table):
    # What the script records for vllm 0.32.0 (its wheel's Requires-Dist, read 2026-11-29).
    bumped = copy.deepcopy(table)
    lines = ["transformers<5.20.0,>=5.16.1", "huggingface_hub>=1.31.0", "torch==2.13.0"]
    bumped["packages"]["vllm"] = pin_table.table_entry(
        "0.32.0", "vllm-0.32.0-cp38-abi3-manylinux_2_28_x86_64.whl", [], lines
    )
    problems = pin_table.pin_problems(PYPROJECT.replace("vllm==0.31.0", "vllm==0.32.0"), bumped)
    # trl/import_utils.py warns outside 0.21.0 to 0.31.0; its wheel declares the same range.
    assert problems == [
        "trl 1.15.0 declares vllm<=0.31.0,>=0.21.0, the pins give vllm 0.32.0",
    ]


def test_a_torch_that_vllm_does_not_declare_fails(table):
    moved = copy.deepcopy(table)
    moved["packages"]["torch"]["version"] = "2.14.0"
    problems = pin_table.pin_problems(PYPROJECT, moved)
    assert "vllm 0.31.0 declares torch==2.13.0, the pins give torch 2.14.0" in problems
    assert "torchvision 0.28.0 declares torch==2.13.0, the pins give torch 2.14.0" in problems


def test_the_table_is_what_the_script_makes_of_the_metadata_it_recorded(table):
    assert set(table["packages"]) == set(pin_table.STACK)
    for name, entry in table["packages"].items():
        again = pin_table.table_entry(
            entry["version"], entry["wheel"], entry["extras"], entry["requires_dist"]
        )
        assert again == entry, name
        assert pin_table._fits(entry["wheel"], entry["version"]), entry["wheel"]
    assert table["platform"] == pin_table.PLATFORM


def test_the_gpu_extra_installs_the_bitsandbytes_plugin_the_pinned_vllm_needs(table):
    # vLLM 0.28 moved bitsandbytes out of tree; unsloth_zoo/vllm_utils.py then raises
    # "pip install vllm-bnb-plugin" for load_in_4bit with fast_inference (the seed recipe), and
    # TRL's colocated vLLM passes quantization="bitsandbytes" for a 4-bit model.
    pinned = pin_table.stack_pins(PYPROJECT)
    assert Version(table["packages"]["vllm"]["version"]) >= Version("0.28")
    plugin = pinned["vllm-bnb-plugin"]
    assert plugin.extra == "gpu"
    # 0.0.2 calls WeightsMapper.get_unstacked_mapper, which vLLM 0.30 renamed get_rename_mapper
    # (vllm/model_executor/models/utils.py of the 0.31.0 wheel has only the new name).
    assert not plugin.specifier.contains("0.0.2")
    assert table["packages"]["vllm-bnb-plugin"]["requires"]["bitsandbytes"] == ">=0.48.1"


def test_the_gpu_extra_allows_no_torchao_too_old_for_fp8(table):
    # unsloth/models/loader_utils.py: on-the-fly load_in_fp8 raises below torchao 0.15.0, while
    # unsloth_zoo itself only asks for 0.13.0.
    torchao = pin_table.stack_pins(PYPROJECT)["torchao"].specifier
    assert table["packages"]["unsloth-zoo"]["requires"]["torchao"] == ">=0.13.0"
    assert not torchao.contains("0.14.1") and torchao.contains("0.15.0")


def test_the_gpu_extra_asks_pip_to_hold_vllm_to_trls_supported_range():
    # trl[vllm] carries TRL's declared vLLM range into pip's resolution.
    assert "vllm" in pin_table.stack_pins(PYPROJECT)["trl"].extras


def test_the_table_says_which_cuda_the_torch_wheel_needs(table):
    # torch 2.13.0's PyPI wheel requires cuda-toolkit 13.0.x (and vLLM's default PyPI wheel is
    # the CUDA 13 build since 0.20: unsloth/import_fixes.py, _VLLM_CUDA13_DEFAULT_SINCE), so the
    # README's CUDA line comes from here, not from memory.
    assert table["packages"]["torch"]["cuda"] == "13.0.3"


def test_the_cpu_venv_holds_the_table_versions_of_what_it_has():
    # The tests run on the versions the table checks (torch's +cpu build is the same release).
    table = json.loads(pin_table.TABLE.read_text())
    for name, entry in table["packages"].items():
        have = stack.installed_version(name)
        if have is not None and name in ("torch", "transformers", "trl", "unsloth", "unsloth-zoo"):
            assert Version(Version(have).base_version) == Version(entry["version"]), name
