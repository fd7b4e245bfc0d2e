"""What a model argument names (grpo eval --model, grpo merge SOURCE), on folders laid out as
grpo train, PEFT and grpo merge write them; no weights are loaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from grpo_cli import unsloth_names
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


# --- the 16-bit base of a run trained on Unsloth's pre-quantized copy ----------------------------

QWEN_4BIT = "unsloth/Qwen2.5-3B-Instruct-unsloth-bnb-4bit"


@pytest.fixture(params=["mapper", "rule"])
def originals(request, monkeypatch):
    """Both ways of finding a 16-bit original: the installed Unsloth's mapper table, and the
    suffix rule used where Unsloth is not installed (an adapter merged on a laptop)."""
    if request.param == "mapper":
        from tests.optional import require

        require("unsloth", "its mapper table is read (scripts/test.sh installs it)")
        assert unsloth_names.originals(), "the installed mapper table was read"
    else:
        monkeypatch.setattr(unsloth_names, "originals", dict)
    return request.param


@pytest.mark.parametrize(
    ("name", "original"),
    [
        (QWEN_4BIT, "unsloth/Qwen2.5-3B-Instruct"),
        ("unsloth/Qwen2.5-3B-Instruct-bnb-4bit", "unsloth/Qwen2.5-3B-Instruct"),
        ("unsloth/Llama-3.2-1B-Instruct-FP8-Block", "unsloth/Llama-3.2-1B-Instruct"),
        ("unsloth/Llama-3.2-1B-Instruct-FP8-Dynamic", "unsloth/Llama-3.2-1B-Instruct"),
        ("Qwen/Qwen2.5-3B-Instruct", None),
        ("unsloth/Llama-3.2-1B-Instruct", None),
        ("./models/tiny-bnb-4bit", None),  # a folder is what it is
    ],
)
def test_pre_quantized_names_map_back_to_their_16bit_original(originals, name, original):
    assert unsloth_names.sixteen_bit_original(name) == original


def test_the_installed_mapper_knows_what_the_rule_cannot():
    from tests.optional import require

    require("unsloth", "its mapper table is read (scripts/test.sh installs it)")
    assert unsloth_names.sixteen_bit_original("RedHatAI/Llama-3.2-1B-Instruct-FP8") == (
        "unsloth/Llama-3.2-1B-Instruct"
    )
    # a 4-bit upload whose 16-bit original Unsloth does not host: the official repo
    assert unsloth_names.sixteen_bit_original("unsloth/llama-3-70b-bnb-4bit") == (
        "meta-llama/Meta-Llama-3-70B"
    )
    # 16-bit uploads that are keys of the table are not pre-quantized
    assert unsloth_names.sixteen_bit_original("unsloth/Kimi-K2-Instruct-BF16") is None


def unsloth_mapper():
    """The installed unsloth/models/mapper.py executed on its own (it imports nothing), for its
    derived tables; importing the unsloth package would patch torch and transformers."""
    import importlib.util

    from tests.optional import require

    require("unsloth", "its mapper table is compared (scripts/test.sh installs it)")
    spec = importlib.util.find_spec("unsloth")
    assert spec is not None and spec.submodule_search_locations
    path = Path(spec.submodule_search_locations[0]) / "models" / "mapper.py"
    module_spec = importlib.util.spec_from_file_location("unsloth_mapper_copy", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_the_mapping_agrees_with_what_unsloth_loads():
    """Unsloth trains Qwen/Qwen2.5-3B-Instruct in 4 bit as its dynamic 4-bit copy
    (FLOAT_TO_INT_MAPPER), and loads any 4-bit name in 16 bit as INT_TO_FLOAT_MAPPER says:
    ours gives that same name for every 4-bit key of the table."""
    mapper = unsloth_mapper()
    assert mapper.FLOAT_TO_INT_MAPPER["qwen/qwen2.5-3b-instruct"] == QWEN_4BIT
    keys = [k for k in mapper.INT_TO_FLOAT_MAPPER if k.endswith("bnb-4bit")]
    assert len(keys) > 200
    wrong = {
        k: unsloth_names.sixteen_bit_original(k)
        for k in keys
        if unsloth_names.sixteen_bit_original(k) != mapper.INT_TO_FLOAT_MAPPER[k]
    }
    assert wrong == {}


# Unsloth's uploads whose 16-bit copy is not named as the rule expects (the rule is only used
# where Unsloth is not installed); a new one here means the rule needs a look.
IRREGULAR = {"unsloth/pixtral-12b-2409-base-bnb-4bit"}  # its original: Pixtral-12B-Base-2409


def test_the_suffix_rule_agrees_with_the_mapper_wherever_unsloth_hosts_the_original(
    monkeypatch,
):
    table = dict(unsloth_names.originals())
    if not table:
        unsloth_mapper()  # skips, or fails under CI, without unsloth
    monkeypatch.setattr(unsloth_names, "originals", dict)
    hosted = {
        q: o for q, o in table.items() if q.startswith("unsloth/") and o.startswith("unsloth/")
    }
    assert len(hosted) > 150
    disagree = {
        q
        for q, o in hosted.items()
        if (unsloth_names.sixteen_bit_original(q) or "").lower() != o.lower()
    }
    assert disagree == IRREGULAR


def test_an_adapter_unsloth_saved_is_merged_and_evaluated_on_the_16bit_original(tmp_path):
    source = resolve_model(str(adapter(tmp_path / "lora", QWEN_4BIT, "abc123")))
    assert (source.base, source.quantized_base, source.revision) == (
        "unsloth/Qwen2.5-3B-Instruct",
        QWEN_4BIT,
        None,  # the revision was the quantized repo's
    )
    assert source.base_note("merging into") == (
        f"base: unsloth/Qwen2.5-3B-Instruct (the run trained on {QWEN_4BIT}; "
        "merging into the 16-bit original)"
    )


def test_a_run_keeps_the_base_its_config_names_and_says_what_it_trained_on(tmp_path):
    run = run_dir(tmp_path)
    config = {"model": {"name": "Qwen/Qwen2.5-3B-Instruct", "quantization": "4bit"}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "adapter" / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": QWEN_4BIT})
    )
    source = resolve_model(str(run), CONFIG)
    assert (source.base, source.quantized_base) == ("Qwen/Qwen2.5-3B-Instruct", QWEN_4BIT)
    note = source.base_note("evaluating on")
    assert note and note.startswith("base: Qwen/Qwen2.5-3B-Instruct (the run trained on")


def test_a_config_naming_a_pre_quantized_model_evaluates_its_16bit_base():
    config = GrpoConfig.model_validate(
        {"model": {"name": "unsloth/Llama-3.2-1B-Instruct-FP8-Block"}, "rewards": ["correctness"]}
    )
    source = resolve_model("base", config)
    assert source.base == "unsloth/Llama-3.2-1B-Instruct"
    assert source.base_note("evaluating on") == (
        "base: unsloth/Llama-3.2-1B-Instruct (model.name unsloth/Llama-3.2-1B-Instruct-FP8-Block"
        " is pre-quantized; evaluating on the 16-bit original)"
    )


def test_a_trl_run_on_a_16bit_base_gets_no_note(tmp_path):
    source = resolve_model(str(adapter(tmp_path / "lora", "Qwen/Qwen2.5-3B-Instruct")))
    assert (source.base, source.quantized_base) == ("Qwen/Qwen2.5-3B-Instruct", None)
    assert source.base_note("merging into") is None
