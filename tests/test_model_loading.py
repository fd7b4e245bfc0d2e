"""Why a model failed to load, as the hint says it (training, eval and merge share it)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from grpo_cli.config.schema import GrpoConfig
from grpo_cli.errors import GrpoError
from grpo_cli.training.models import load_error


def hint_for(name: str) -> str:
    cfg = GrpoConfig.model_validate({"model": {"name": name}, "rewards": ["correctness"]})
    return load_error(cfg, "model", OSError("it failed")).hint or ""


@pytest.mark.parametrize(
    ("damage", "content"),
    [
        ("config.json", b'{"model_type": "qw'),
        ("model.safetensors", b"\x00" * 3),
        ("tokenizer.json", b"\xff\xfe"),
    ],
)
def test_a_damaged_file_of_a_local_model_is_named(tiny_model, tmp_path, damage, content):
    model = Path(shutil.copytree(tiny_model, tmp_path / "model"))
    (model / damage).write_bytes(content)
    hint = hint_for(str(model))
    assert f"{model / damage} is damaged" in hint and "network" not in hint


def test_a_folder_that_is_no_model_and_a_missing_one_are_told_apart(tmp_path):
    (tmp_path / "notes").mkdir()
    assert "is a folder but not a model (no config.json)" in hint_for(str(tmp_path / "notes"))
    assert "does not exist" in hint_for(str(tmp_path / "gone"))


def test_only_a_hub_id_gets_the_network_hint():
    hint = hint_for("nobody-xyz/no-such-model")
    assert "network" in hint and "hf download nobody-xyz/no-such-model" in hint


def test_loading_a_damaged_merged_folder_is_a_user_error_naming_the_file(tiny_model, tmp_path):
    import torch

    from grpo_cli.model_loading import load_model
    from grpo_cli.model_source import resolve_model

    model = Path(shutil.copytree(tiny_model, tmp_path / "merged"))
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    source = resolve_model(str(model))
    with pytest.raises(GrpoError) as err:
        load_model(source, torch.float32)
    assert f"{weights} is damaged" in (err.value.hint or "")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (OSError(28, "No space left on device", "/cache/blob"), "the disk is full: writing"),
        (PermissionError(13, "Permission denied", "/cache/blob"), "permission denied: /cache/blob"),
        (MemoryError(), "not enough memory to load the model"),
    ],
)
def test_a_machine_fault_while_loading_is_not_blamed_on_the_model_or_network(exc, expected):
    cfg = GrpoConfig.model_validate({"model": {"name": "owner/model"}, "rewards": ["correctness"]})
    error = load_error(cfg, "model", exc)
    assert expected in error.message
    assert "network" not in (error.hint or "")
