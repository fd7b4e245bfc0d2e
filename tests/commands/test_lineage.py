"""GRPO, eval and merge starting from a grpo sft run, on the tiny model: the SFT weights are
where training starts (a full fine-tuning's model/ under a new adapter, a LoRA warm-up's adapter
continued), eval's `base` is the SFT model, merge merges into the right base, and the lineage is
recorded in env.json and shown in the model card. SFT runs are built as `grpo sft` leaves them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from grpo_cli.config import load_config
from grpo_cli.errors import GrpoError
from grpo_cli.model_source import lineage, resolve_model

from ..conftest import CONFIGS
from ..sft_runs import (
    SFT_ROWS,
    SFT_STEPS,
    full_sft_run,
    logits,
    lora_sft_run,
    sft_config,
    write_run_files,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def sft_runs(tiny_model, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sft") / "outputs"
    return {"full": full_sft_run(tiny_model, root), "lora": lora_sft_run(tiny_model, root)}


def grpo_args(sft: Path | str, tmp_path: Path, *extra: str) -> list[str]:
    """configs/smoke_cpu.yaml for 2 steps, starting from SFT."""
    return [
        "train",
        str(CONFIGS / "smoke_cpu.yaml"),
        "--set",
        f"model.name={sft}",
        "--set",
        f"output.dir={tmp_path / 'outputs'}",
        "--set",
        "output.run_name=grpo",
        "--set",
        "training.max_steps=2",
        "--set",
        "eval.every_steps=null",
        *extra,
    ]


def smoke(model_name: Path | str, *overrides: str):
    sets = [f"model.name={model_name}", *overrides]
    return load_config(CONFIGS / "smoke_cpu.yaml", sets).config


# --- what an SFT run resolves to (no weights loaded) ---------------------------------------


def test_a_full_sft_run_is_its_model_folder(sft_runs, tiny_model):
    run = sft_runs["full"]
    for arg in (run, run / "model"):
        source = resolve_model(str(arg))
        assert (source.kind, source.base, source.adapter) == ("sft", str(run / "model"), None)
        assert source.label == "sft-full" and source.run and source.run.path == run
        assert source.sft is not None and source.sft.method == "full"
    assert source.describe() == f"sft run {run} (full fine-tuning of {tiny_model})"


def test_a_lora_sft_run_is_its_adapter_on_the_model_it_started_from(sft_runs, tiny_model):
    run = sft_runs["lora"]
    for arg in (run, run / "adapter"):
        source = resolve_model(str(arg))
        assert (source.kind, source.base) == ("sft", str(tiny_model))
        assert source.adapter == run / "adapter"
    assert source.describe() == f"sft run {run} (LoRA of {tiny_model})"


def test_evals_base_is_the_sft_model_the_config_names(sft_runs, tiny_model):
    run = sft_runs["full"]
    base = resolve_model("base", smoke(run))
    assert (base.label, base.base, base.adapter) == ("base", str(run / "model"), None)
    assert base.describe() == f"sft run {run} (full fine-tuning of {tiny_model})"
    # predictions are reused only while the SFT weights stay the same
    assert base.fingerprint()["path"] == str((run / "model").resolve())
    lora = resolve_model("base", smoke(sft_runs["lora"]))
    assert (lora.base, lora.adapter) == (str(tiny_model), sft_runs["lora"] / "adapter")


def test_the_lineage_names_the_base_and_the_warm_up(sft_runs, tiny_model):
    run = sft_runs["lora"]
    assert lineage(str(run)) == [
        {"stage": "base", "model": str(tiny_model), "revision": None},
        {"stage": "sft", "run": str(run), "method": "lora", "steps": SFT_STEPS, "rows": SFT_ROWS},
    ]
    assert lineage("Qwen/Qwen2.5-0.5B-Instruct") == [
        {"stage": "base", "model": "Qwen/Qwen2.5-0.5B-Instruct", "revision": None}
    ]


def test_an_unfinished_sft_run_is_refused_with_the_resume_command(tmp_path, tiny_model, cli):
    run = write_run_files(tmp_path / "outputs" / "sft-cut", sft_config(tiny_model, "sft-cut"))
    with pytest.raises(GrpoError) as err:
        resolve_model(str(run))
    assert "has not finished" in err.value.message
    assert (
        err.value.hint
        == f"finish it with `grpo sft {run / 'config.yaml'} --resume`, then run this again"
    )
    result = cli(*grpo_args(run, tmp_path))
    assert result.code == 2 and "Traceback" not in result.err
    assert "model.name" in result.err and f"grpo sft {run / 'config.yaml'} --resume" in result.err


def test_a_warm_up_not_made_yet_is_not_looked_for_on_the_hub(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outputs/sft-later reads like a Hub id
    result = cli(*grpo_args("outputs/sft-later", tmp_path, "--set", "output.dir=outputs"))
    assert result.code == 2 and "Traceback" not in result.err
    assert "model.name: outputs/sft-later does not exist" in result.err
    assert "`grpo sft CONFIG` with sft.run_name: sft-later" in result.err


def test_a_grpo_run_as_model_name_is_refused_with_the_merge_to_do_first(tmp_path, tiny_model, cli):
    run = write_run_files(tmp_path / "runs" / "grpo-a", sft_config(tiny_model, "a"), "grpo")
    (run / "adapter").mkdir()
    (run / "adapter" / "adapter_config.json").write_text("{}")
    for name in (run, run / "adapter"):
        result = cli(*grpo_args(name, tmp_path))
        assert result.code == 2 and "Traceback" not in result.err
        assert "is a grpo train run" in result.err and f"grpo merge {run}" in result.err


def test_the_lora_section_must_describe_the_adapter_it_continues(sft_runs, tmp_path, cli):
    result = cli(
        *grpo_args(sft_runs["lora"], tmp_path, "--set", "lora.r=4", "--set", "lora.alpha=8")
    )
    assert result.code == 2 and "Traceback" not in result.err
    assert "lora.r: is 4 but the grpo sft adapter" in result.err and "set lora.r: 8" in result.err
    assert "lora.alpha" in result.err
    revision = cli(*grpo_args(sft_runs["full"], tmp_path, "--set", "model.revision=main")).err
    assert "model.revision" in revision and "set it to null" in revision
    targets = "--set", "lora.target_modules=[q_proj]"
    assert "lora.target_modules" in cli(*grpo_args(sft_runs["lora"], tmp_path, *targets)).err


def test_no_hub_question_and_a_memory_estimate_from_the_sft_weights(sft_runs, tiny_model):
    from grpo_cli.hub_access import config_items
    from grpo_cli.memory import model_shape
    from grpo_cli.model_source import start_weights

    full, lora = smoke(sft_runs["full"]), smoke(sft_runs["lora"])
    # outputs/<run> reads like a Hub id: what is asked for is the folder that loads
    assert config_items(full)[0].name == str(sft_runs["full"] / "model")
    assert config_items(lora)[0].name == str(tiny_model)
    shape, source = model_shape(*start_weights(full.model.name))
    assert shape is not None and "config.json" in source


# --- training from an SFT run ---------------------------------------------------------------


def test_training_starts_from_a_full_sft_model_with_a_new_adapter(sft_runs, tiny_model):
    from transformers import AutoModelForCausalLM

    from grpo_cli.training.models import load_tokenizer, load_trl_model

    cfg = smoke(sft_runs["full"])
    model, tokenizer = load_trl_model(cfg, "fp32"), load_tokenizer(cfg)
    sft = AutoModelForCausalLM.from_pretrained(sft_runs["full"] / "model")
    tiny = AutoModelForCausalLM.from_pretrained(tiny_model)
    # a fresh adapter (lora_B zero) on the SFT weights: step 0 is the SFT model
    assert logits(model, tokenizer).allclose(logits(sft, tokenizer), atol=1e-5)
    assert not logits(model, tokenizer).allclose(logits(tiny, tokenizer), atol=1e-3)
    assert model.peft_config["default"].r == cfg.lora.r


def test_training_continues_a_lora_sft_adapter_trainable(sft_runs, tiny_model):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from grpo_cli.training.models import load_trl_model

    cfg = smoke(sft_runs["lora"])
    model = load_trl_model(cfg, "fp32")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    sft = PeftModel.from_pretrained(base, sft_runs["lora"] / "adapter")
    assert logits(model, tokenizer).allclose(logits(sft, tokenizer), atol=1e-5)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)


@pytest.fixture(scope="module")
def grpo_runs(sft_runs, tmp_path_factory) -> dict[str, Path]:
    """grpo train for 2 steps from each SFT run, through the CLI."""
    from grpo_cli.cli import main

    runs = {}
    for method, sft in sft_runs.items():
        root = tmp_path_factory.mktemp(f"grpo-{method}")
        assert main(grpo_args(sft, root)) == 0
        runs[method] = root / "outputs" / "grpo"
    return runs


def test_a_grpo_run_records_its_lineage_and_trains_the_continued_adapter(
    sft_runs, grpo_runs, tiny_model
):
    from safetensors.torch import load_file

    for method in ("full", "lora"):
        env = json.loads((grpo_runs[method] / "env.json").read_text())
        assert env["stage"] == "grpo"
        assert env["lineage"] == lineage(str(sft_runs[method]))
        assert env["lineage"][-1]["method"] == method
    saved = json.loads((grpo_runs["lora"] / "adapter" / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == str(tiny_model)
    before = load_file(sft_runs["lora"] / "adapter" / "adapter_model.safetensors")
    after = load_file(grpo_runs["lora"] / "adapter" / "adapter_model.safetensors")
    assert set(before) == set(after)
    assert any(not before[k].equal(after[k]) for k in before), "GRPO moved the SFT adapter"
    config = yaml.safe_load((grpo_runs["full"] / "config.yaml").read_text())
    assert config["model"]["name"] == str(sft_runs["full"])


def test_a_grpo_run_resolves_onto_the_sft_weights(sft_runs, grpo_runs, tiny_model):
    full = resolve_model(str(grpo_runs["full"]))
    assert (full.kind, full.base) == ("run", str(sft_runs["full"] / "model"))
    lora = resolve_model(str(grpo_runs["lora"]))
    assert (lora.base, lora.adapter) == (str(tiny_model), grpo_runs["lora"] / "adapter")
    assert [s["stage"] for s in lora.lineage()] == ["base", "sft", "grpo"]
    assert lora.lineage()[-1] == {"stage": "grpo", "run": str(grpo_runs["lora"]), "steps": 2}


def test_eval_says_base_is_the_sft_model(sft_runs, grpo_runs, tmp_path, cli, write):
    """The demo's measure of GRPO's gain over the warm-up: `base` of the GRPO config is the SFT
    model; the grpo run's held-out rows are the rows, with the SFT run itself beside them."""
    config = write("eval.yaml", (grpo_runs["full"] / "config.yaml").read_text())
    models = "--model", "base", "--model", sft_runs["full"], "--model", grpo_runs["full"]
    flags = "--limit", "2", "--max-new-tokens", "4", "--split", "heldout"
    result = cli("eval", config, *models, *flags, "--output", tmp_path / "eval")
    assert result.code == 0, result.err
    said = f"(sft run {sft_runs['full']} (full fine-tuning of"
    assert f"base: 2 rows of synthetic [train] held-out rows {said}" in result.err
    assert f"sft-full: 2 rows of synthetic [train] held-out rows {said}" in result.err
    base = json.loads((tmp_path / "eval" / "base" / "metrics.json").read_text())
    sft = json.loads((tmp_path / "eval" / "sft-full" / "metrics.json").read_text())
    assert base["rows"] == sft["rows"] == 2
    # the same weights, decoded alike, answer alike
    base_rows = (tmp_path / "eval" / "base" / "predictions.jsonl").read_text()
    assert base_rows == (tmp_path / "eval" / "sft-full" / "predictions.jsonl").read_text()


def test_the_unsloth_backend_continues_a_lora_sft_adapter(sft_runs, tmp_path):
    """Unsloth patches trl and transformers process-wide, so it runs in a process of its own."""
    import subprocess
    import sys

    from safetensors.torch import load_file

    from tests.optional import require

    require("unsloth", "the unsloth backend (scripts/test.sh installs it with --no-deps)")
    grpo = Path(sys.executable).with_name("grpo")
    args = [str(grpo), *grpo_args(sft_runs["lora"], tmp_path, "--set", "model.backend=unsloth")]
    result = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "continuing its LoRA adapter" in result.stderr
    name = "adapter_model.safetensors"
    before = load_file(sft_runs["lora"] / "adapter" / name)
    after = load_file(tmp_path / "outputs" / "grpo" / "adapter" / name)
    assert set(before) == set(after) and any(not before[k].equal(after[k]) for k in before)


# --- merging ---------------------------------------------------------------------------------


def merged_matches(merged: Path, expected, tokenizer) -> bool:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(merged, dtype="float32")
    return bool(logits(model, tokenizer).allclose(logits(expected, tokenizer), atol=1e-4))


def test_merge_puts_the_adapter_on_the_right_base_and_the_card_shows_the_lineage(
    sft_runs, grpo_runs, tiny_model, tmp_path, cli
):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    cases = {
        "full": sft_runs["full"] / "model",  # the new adapter goes on the SFT weights
        "lora": tiny_model,  # the continued adapter holds the warm-up: on the original base
    }
    for method, base in cases.items():
        out = tmp_path / method
        result = cli("merge", grpo_runs[method], "--output", out, "--dtype", "fp32")
        assert result.code == 0, result.err
        expected = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(base), grpo_runs[method] / "adapter"
        ).merge_and_unload()
        assert merged_matches(out, expected, tokenizer)
        card = (out / "README.md").read_text()
        assert "## Lineage" in card and f"`{tiny_model}`" in card
        how = "full fine-tuning" if method == "full" else "LoRA"
        assert f"run `{sft_runs[method]}`, {how}, {SFT_STEPS} steps, {SFT_ROWS} rows" in card
        assert f"| grpo train | run `{grpo_runs[method]}`, 2 steps |" in card


def test_merge_of_sft_runs(sft_runs, tiny_model, tmp_path, cli):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = cli("merge", sft_runs["full"], "--output", tmp_path / "full")
    assert result.code == 2 and "already a whole model" in result.err
    assert str(sft_runs["full"] / "model") in result.err
    out = tmp_path / "lora"
    assert cli("merge", sft_runs["lora"], "--output", out, "--dtype", "fp32").code == 0
    expected = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model), sft_runs["lora"] / "adapter"
    ).merge_and_unload()
    assert merged_matches(out, expected, AutoTokenizer.from_pretrained(tiny_model))
