"""What a model argument names (grpo eval --model, grpo merge SOURCE), on folders laid out as
grpo train, PEFT and grpo merge write them; no weights are loaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from grpo_cli.config.schema import GrpoConfig
from grpo_cli.errors import GrpoError
from grpo_cli.model_source import resolve_model

TRAINED = {"model": {"name": "Qwen/Qwen2.5-0.5B-Instruct"}, "rewards": ["correctness"]}
CONFIG = GrpoConfig.model_validate(TRAINED)


def adapter(folder: Path, base: str = "some/base", revision: str | None = None) -> Path:
    folder.mkdir(parents=True)
    meta = {"base_model_name_or_path": base, "revision": revision}
    (folder / "adapter_config.json").write_text(json.dumps(meta))
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    return folder


def run_dir(tmp_path: Path, name: str = "my-run", *, finished: bool = True) -> Path:
    run = tmp_path / "outputs" / name
    run.mkdir(parents=True)
    config = {"model": {"name": "Qwen/Qwen2.5-0.5B-Instruct", "revision": "r1"}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "env.json").write_text(json.dumps({"backend": "trl"}))
    # PEFT saved Unsloth's quantized copy as the base: the run's config names the real one
    adapter(run / "checkpoints" / "checkpoint-2", "unsloth/qwen-bnb-4bit")
    (run / "checkpoints" / "checkpoint-2" / "trainer_state.json").write_text("{}")
    if finished:
        adapter(run / "adapter", "unsloth/qwen-bnb-4bit")
    return run


def refused(arg: str | Path, config: GrpoConfig | None = None) -> GrpoError:
    with pytest.raises(GrpoError) as err:
        resolve_model(str(arg), config, "--model" if config else "")
    assert err.value.hint, "every refusal says what to give instead"
    return err.value


def test_base_and_hub_ids_need_the_eval_config():
    base = resolve_model("base", CONFIG)
    assert (base.kind, base.base, base.label) == ("base", "Qwen/Qwen2.5-0.5B-Instruct", "base")
    assert base.describe() == "base model Qwen/Qwen2.5-0.5B-Instruct"
    hub = resolve_model("someone/model", CONFIG)
    assert (hub.kind, hub.label) == ("hub", "someone__model")
    assert "no such folder" in refused("someone/model").message  # merge takes folders only


def test_a_run_directory_is_its_adapter_on_the_base_its_config_names(tmp_path):
    run = run_dir(tmp_path)
    for arg, kind in ((run, "run"), (run / "adapter", "adapter")):
        source = resolve_model(str(arg))
        assert (source.kind, source.label) == (kind, "my-run")
        assert source.adapter == run / "adapter" and source.run and source.run.path == run
        assert (source.base, source.revision) == ("Qwen/Qwen2.5-0.5B-Instruct", "r1")
        assert source.env == {"backend": "trl"} and source.config["model"]["revision"] == "r1"
        assert source.base_origin == f"model.name in {run / 'config.yaml'}"


def test_a_checkpoint_belongs_to_its_run(tmp_path):
    checkpoint = run_dir(tmp_path) / "checkpoints" / "checkpoint-2"
    source = resolve_model(str(checkpoint))
    assert (source.kind, source.label, source.base) == (
        "checkpoint",
        "my-run-checkpoint-2",
        "Qwen/Qwen2.5-0.5B-Instruct",
    )


def test_an_unfinished_run_names_its_latest_checkpoint(tmp_path):
    run = run_dir(tmp_path, finished=False)
    error = refused(run)
    assert "has no adapter/ yet" in error.message
    assert str(run / "checkpoints" / "checkpoint-2") in error.hint and "--resume" in error.hint


def test_a_bare_adapter_knows_its_base_and_revision(tmp_path):
    source = resolve_model(str(adapter(tmp_path / "lora", "org/base", "v2")))
    assert (source.kind, source.base, source.revision, source.run) == (
        "adapter",
        "org/base",
        "v2",
        None,
    )
    assert source.base_origin.startswith("base_model_name_or_path in ")


def test_an_adapter_without_weights_is_one_clear_error_on_every_path(tmp_path):
    run = run_dir(tmp_path)
    bare = adapter(tmp_path / "lora")
    checkpoint = run / "checkpoints" / "checkpoint-2"
    for folder in (run / "adapter", bare, checkpoint):
        (folder / "adapter_model.safetensors").unlink()
    for arg in (run, run / "adapter", bare, checkpoint):
        for config in (None, CONFIG):  # merge SOURCE, eval --model
            error = refused(arg, config)
            assert "has adapter_config.json but no adapter_model weights" in error.message


def test_a_merged_folder_keeps_the_config_it_was_trained_with(tmp_path, tiny_model):
    merged = Path(shutil.copytree(tiny_model, tmp_path / "merged"))
    source = resolve_model(str(merged), CONFIG)
    assert (source.kind, source.base, source.config) == ("merged", str(merged), {})
    assert source.grpo_config(CONFIG) is CONFIG
    (merged / "grpo_config.yaml").write_text(
        yaml.safe_dump({**TRAINED, "data": {"prompt_style": "think"}})
    )
    source = resolve_model(str(merged), CONFIG)
    assert source.base == str(merged) and source.revision is None
    assert source.grpo_config(CONFIG).data.prompt_style == "think"


def test_what_is_not_a_model_is_refused(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    half = tmp_path / "half"  # a config.yaml alone is not a run: grpo train writes env.json too
    half.mkdir()
    (half / "config.yaml").write_text("model: {name: x}\n")
    holder = tmp_path / "holder"  # a folder that holds an adapter/ but is not a run
    adapter(holder / "adapter")
    assert "is a file" in refused(tmp_path / "file.txt").message
    assert "neither a run directory" in refused(half).message
    assert "give that folder" in refused(holder).message
    assert "no such folder" in refused(tmp_path / "gone", CONFIG).message


def test_a_damaged_run_config_is_named(tmp_path):
    run = run_dir(tmp_path)
    (run / "config.yaml").write_bytes(b"model: [\xff")
    assert str(run / "config.yaml") in refused(run).message
