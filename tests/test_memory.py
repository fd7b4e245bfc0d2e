"""The memory estimate: calibrated on Unsloth's published figures, monotonic in the settings that
cost memory, and a fit table whose suggestions each make the run fit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from grpo_cli import unsloth_names
from grpo_cli.config import load_config
from grpo_cli.config.schema import GrpoConfig
from grpo_cli.hardware import fp8_problems
from grpo_cli.memory import (
    CUDA_CONTEXT_GIB,
    GPU_EXTRA,
    GPUS,
    KNOWN_SHAPES,
    VLLM_RUNTIME_GIB,
    estimate,
    fit_table,
    gpu_run_settings,
    model_shape,
    normalized_name,
)
from grpo_cli.training.models import STANDBY, vllm_memory_share

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def config(name: str, **sections: dict[str, Any]) -> GrpoConfig:
    data: dict[str, Any] = {"rewards": ["correctness"], **sections}
    data["model"] = {"name": name, **sections.get("model", {})}
    return GrpoConfig.model_validate(data)


def part(est: Any, start: str) -> float:
    return sum(gib for label, gib in est.parts if label.startswith(start))


def within(value: float, figure: float, tolerance: float = 0.25) -> bool:
    return abs(value / figure - 1) <= tolerance


# Unsloth's GRPO notebooks for a free 16 GB Colab T4, as their settings read in
# unslothai/notebooks python_scripts/Qwen2.5_(3B)-GRPO.py and Llama3.1_(8B)-GRPO.py.
QWEN3B_NOTEBOOK = {
    "model": {
        "quantization": "4bit",
        "fast_inference": True,
        "max_seq_length": 1024,
        "max_lora_rank": 64,
        # The notebook asks for 0.9; with UNSLOTH_VLLM_STANDBY (which it sets) unsloth_zoo's
        # vllm_utils.py replaces it with its T4 tier: 0.8 x 0.95 = 0.76.
        "gpu_memory_utilization": 0.76,
    },
    "lora": {"r": 64, "alpha": 64, "gradient_checkpointing": "unsloth"},
    "training": {
        "optim": "adamw_8bit",
        "num_generations": 8,
        "max_prompt_length": 256,
        "max_completion_length": 200,
    },
}
LLAMA8B_NOTEBOOK = {
    "model": {**QWEN3B_NOTEBOOK["model"], "max_lora_rank": 32},
    "lora": {"r": 32, "alpha": 32, "gradient_checkpointing": "unsloth"},
    "training": {
        "optim": "paged_adamw_8bit",
        "num_generations": 6,
        "max_prompt_length": 256,
        "max_completion_length": 768,
    },
}


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("unsloth/Qwen2.5-3B-Instruct", QWEN3B_NOTEBOOK),
        ("unsloth/meta-Llama-3.1-8B-Instruct", LLAMA8B_NOTEBOOK),
    ],
)
def test_unsloth_t4_notebooks_fit_a_t4(name: str, settings: dict[str, Any]) -> None:
    cfg = config(name, **settings)
    t4 = fit_table(estimate(cfg, "fp16", "unsloth"))[0]
    assert t4.gpu == "T4" and t4.fits, t4.verdict


# The vLLM start-up lines the same notebooks print (nb/*.ipynb outputs, unslothai/notebooks at
# 8081c7e): "model weights take X GiB", and its runtime as "non_torch_memory" + "PyTorch
# activation peak memory" + "Graph capturing ... took". Qwen2.5-3B (dynamic 4-bit, T4): 2.22 GiB,
# 0.05 + 1.05 + 0.62; Llama-3.1-8B (dynamic 4-bit, T4): 5.60 GiB, 0.03 + 0.74 + 0.59;
# Mistral-7B-v0.3 (bnb-4bit, RTX 4090): 4.04 GiB; Advanced_Llama3_2_(3B)_GRPO_LoRA (16-bit, T4):
# 6.25 GiB. The notebooks print no peak for the training step itself (no "Peak reserved memory"
# cell in any GRPO notebook), so the whole-run figure stays "fits a T4". The 4090 and 16-bit runs'
# runtimes (1.06, 0.99 GiB) sit under the constant, on the safe side, and are not compared.
@pytest.mark.parametrize(
    ("name", "quantization", "weights", "runtime"),
    [
        ("unsloth/Qwen2.5-3B-Instruct", "4bit", 2.22, 0.05 + 1.05 + 0.62),
        ("unsloth/meta-Llama-3.1-8B-Instruct", "4bit", 5.60, 0.03 + 0.74 + 0.59),
        ("unsloth/mistral-7b-instruct-v0.3-bnb-4bit", "4bit", 4.04, None),
        ("meta-llama/Llama-3.2-3B-Instruct", "none", 6.25, None),
    ],
)
def test_vllm_measured_weights_and_runtime_in_unsloth_notebooks(
    name: str, quantization: str, weights: float, runtime: float | None
) -> None:
    cfg = config(name, model={"quantization": quantization, "fast_inference": True})
    est = estimate(cfg, "fp16", "unsloth")
    assert within(part(est, "base weights"), weights), est.parts
    if runtime is not None:
        assert within(VLLM_RUNTIME_GIB, runtime)


# Unsloth's stated minimum VRAM (QLoRA 4-bit / LoRA 16-bit) by model size, from
# https://unsloth.ai/docs/get-started/fine-tuning-for-beginners/unsloth-requirements
# ("these numbers are the absolute minimum"): 3B 3.5 / 8 GB, 7B 5 / 19 GB, 8B 6 / 22 GB.
# Unsloth measures with torch.cuda.max_memory_reserved() / 1024**3 (its notebooks print it as
# "GB"), which leaves out the CUDA context: compared without it. Expressed as the least GRPO step:
# one completion per micro-step, the GRPO notebooks' 1024-token context (256 prompt + 768
# completion), Unsloth's default rank 16, offloaded checkpointing, an 8-bit optimizer, no vLLM.
MINIMUM = {
    "model": {"max_seq_length": 1024},
    "lora": {"r": 16, "gradient_checkpointing": "unsloth"},
    "training": {
        "optim": "adamw_8bit",
        "num_generations": 2,
        "gradient_accumulation_steps": 2,
        "max_prompt_length": 256,
        "max_completion_length": 768,
    },
}


@pytest.mark.parametrize(
    ("name", "quantization", "figure"),
    [
        ("unsloth/Llama-3.2-3B-Instruct", "4bit", 3.5),
        ("mistralai/Mistral-7B-v0.3", "4bit", 5.0),
        ("meta-llama/Llama-3.1-8B", "4bit", 6.0),
        ("unsloth/Llama-3.2-3B-Instruct", "none", 8.0),
        ("mistralai/Mistral-7B-v0.3", "none", 19.0),
        ("meta-llama/Llama-3.1-8B", "none", 22.0),
    ],
)
def test_unsloth_minimum_vram_table(name: str, quantization: str, figure: float) -> None:
    settings = {**MINIMUM, "model": {**MINIMUM["model"], "quantization": quantization}}
    est = estimate(config(name, **settings), "bf16", "unsloth")
    assert within(est.total_gib - CUDA_CONTEXT_GIB, figure), est.total_gib


def test_qwen_1_5b_grpo_in_5gb() -> None:
    # https://unsloth.ai/blog/grpo (Feb 2025): "train your own reasoning model with just 5GB VRAM
    # for Qwen2.5 (1.5B)", with the settings of its GRPO notebooks; vLLM at the least it needs.
    est = estimate(config("Qwen/Qwen2.5-1.5B-Instruct", **QWEN3B_NOTEBOOK), "fp16", "unsloth")
    assert within(est.total_gib - CUDA_CONTEXT_GIB, 5.0), est.total_gib


def test_llama_8b_20k_context_breakdown() -> None:
    # https://unsloth.ai/blog/grpo, "GRPO VRAM Breakdown" for Llama 3.1 8B, 20K context, 8
    # generations: training memory 42 GB (the 32 layers' checkpointed inputs of 8 x 20K tokens,
    # which that table keeps on the GPU), GRPO loss 9.8 GB (one generation's fp32 logits at a
    # time), inference 0 GB (vLLM shares the weights), KV cache for 20K context 2.5 GB: 54.3 GB.
    # The table leaves out the 4-bit weights and the recomputed layer: compared line by line.
    cfg = config(
        "meta-llama/Llama-3.1-8B-Instruct",
        model={"quantization": "4bit", "fast_inference": True, "max_seq_length": 20480},
        lora={"r": 32, "gradient_checkpointing": True},
        training={"num_generations": 8, "max_prompt_length": 256, "max_completion_length": 20224},
    )
    est = estimate(cfg, "bf16", "unsloth")
    checkpoints = part(est, "activations: checkpointed")
    logits = part(est, "logits")
    kv_cache = part(est, "vLLM KV cache")
    assert within(checkpoints, 42.0) and within(logits, 9.8) and within(kv_cache, 2.5)
    assert within(checkpoints + logits + kv_cache, 54.3)
    assert "vLLM weights" not in " ".join(label for label, _ in est.parts)


SEED = {"model": {"quantization": "4bit", "max_seq_length": 1024}}


def test_longer_completions_cost_more() -> None:
    for backend in ("trl", "unsloth"):
        short = estimate(config("Qwen/Qwen2.5-3B-Instruct", **SEED), "bf16", backend)
        longer = estimate(
            config("Qwen/Qwen2.5-3B-Instruct", **SEED, training={"max_completion_length": 768}),
            "bf16",
            backend,
        )
        assert longer.total_gib > short.total_gib


def test_quantization_orders_the_base_weights() -> None:
    totals = {
        q: estimate(
            config("Qwen/Qwen2.5-7B-Instruct", model={"quantization": q}), "bf16", "unsloth"
        ).total_gib
        for q in ("4bit", "8bit", "none")
    }
    assert totals["4bit"] < totals["8bit"] < totals["none"]
    fp32 = estimate(config("Qwen/Qwen2.5-7B-Instruct"), "fp32", "trl").total_gib
    assert fp32 > totals["none"]


def test_kl_penalty_with_lora_loads_no_second_model() -> None:
    cfg = config("Qwen/Qwen2.5-3B-Instruct")
    with_kl = config("Qwen/Qwen2.5-3B-Instruct", training={"beta": 0.04})
    plain, kl = estimate(cfg, "bf16", "trl"), estimate(with_kl, "bf16", "trl")
    assert kl.total_gib == plain.total_gib
    assert any("reference" in label and gib == 0 for label, gib in kl.parts)


def test_checkpointing_and_optimizer_choices() -> None:
    def total(**sections: dict[str, Any]) -> float:
        return estimate(config("Qwen/Qwen2.5-3B-Instruct", **sections), "bf16", "unsloth").total_gib

    assert (
        total(lora={"gradient_checkpointing": False})
        > total()
        > total(lora={"gradient_checkpointing": "unsloth"})
    )
    assert total(training={"optim": "adamw_torch"}) > total(training={"optim": "adamw_8bit"})


def test_more_generations_per_micro_step_cost_more_on_trl() -> None:
    four = estimate(
        config("Qwen/Qwen2.5-3B-Instruct", training={"num_generations": 4}), "bf16", "trl"
    )
    eight = estimate(config("Qwen/Qwen2.5-3B-Instruct"), "bf16", "trl")
    accumulated = estimate(
        config("Qwen/Qwen2.5-3B-Instruct", training={"gradient_accumulation_steps": 4}),
        "bf16",
        "trl",
    )
    assert four.total_gib < eight.total_gib
    assert accumulated.total_gib < eight.total_gib


def test_vllm_share_scales_with_the_gpu() -> None:
    cfg = load_config(CONFIGS / "qwen3b_gsm8k.yaml").config
    est = estimate(cfg, "fp16", "unsloth")
    assert est.vllm_share == 0.7 and est.vllm_key == "model.gpu_memory_utilization"
    by_gpu = {fit.gpu: fit for fit in fit_table(est)}
    t4, h100 = by_gpu["T4"], by_gpu["H100"]
    assert est.on_gpu(h100.memory_gib) - est.on_gpu(t4.memory_gib) == pytest.approx(
        0.7 * (h100.memory_gib - t4.memory_gib), abs=0.01
    )
    assert t4.fits and h100.fits


def test_trl_colocated_vllm_holds_its_own_copy_of_the_weights() -> None:
    cfg = config(
        "Qwen/Qwen2.5-3B-Instruct",
        model={"quantization": "4bit"},
        vllm={"use": True, "gpu_memory_utilization": 0.3},
    )
    est = estimate(cfg, "bf16", "trl")
    assert part(est, "vLLM weights") == part(est, "base weights") > 0
    assert est.vllm_key == "vllm.gpu_memory_utilization" and est.vllm_share == 0.3
    assert {est.share_on(gpu.gpu_memory_gib or 0) for gpu in GPUS} == {0.3}
    server = config("Qwen/Qwen2.5-3B-Instruct", vllm={"use": True, "mode": "server"})
    assert estimate(server, "bf16", "trl").vllm_share == 0


def _apply(cfg: GrpoConfig, suggestion: str) -> GrpoConfig:
    """The config with a suggestion's settings (`key: value + key: value (about N GiB)`)."""
    data = cfg.model_dump()
    for setting in suggestion.split(" (about")[0].split(" + "):
        key, value = setting.split(": ")
        section, field = key.split(".")
        try:
            data[section][field] = json.loads(value)
        except ValueError:
            data[section][field] = value
    return GrpoConfig.model_validate(data)


def _fits_t4(cfg: GrpoConfig, backend: str) -> bool:
    return fit_table(estimate(cfg, "fp16", backend))[0].fits


HUNGRY = {
    "lora": {"gradient_checkpointing": False},
    "training": {"num_generations": 8, "max_completion_length": 1024, "optim": "adamw_torch"},
}


def test_each_suggestion_makes_the_run_fit_a_t4() -> None:
    cfg = config("Qwen/Qwen2.5-1.5B-Instruct", **HUNGRY)
    t4 = fit_table(estimate(cfg, "fp16", "trl"))[0]
    assert not t4.fits and t4.verdict.startswith("no: needs about")
    keys = [s.split(":")[0] for s in t4.suggestions]
    assert "training.gradient_accumulation_steps" in keys
    assert "lora.gradient_checkpointing" in keys and "training.max_completion_length" in keys
    for suggestion in t4.suggestions:
        assert _fits_t4(_apply(cfg, suggestion), "trl"), suggestion


def test_changes_combine_when_none_is_enough_alone() -> None:
    cfg = config("Qwen/Qwen2.5-7B-Instruct", **HUNGRY)
    t4 = fit_table(estimate(cfg, "fp16", "trl"))[0]
    assert len(t4.suggestions) == 1 and " + " in t4.suggestions[0]
    assert "model.quantization: 4bit" in t4.suggestions[0]
    assert _fits_t4(_apply(cfg, t4.suggestions[0]), "trl")
    assert not _fits_t4(_apply(cfg, "model.quantization: 4bit"), "trl")


def test_a_too_large_vllm_share_is_lowered_to_fit() -> None:
    cfg = config(
        "Qwen/Qwen2.5-3B-Instruct",
        model={"quantization": "4bit", "fast_inference": True, "gpu_memory_utilization": 0.95},
        training={"max_completion_length": 768},
    )
    t4 = fit_table(estimate(cfg, "fp16", "unsloth"))[0]
    assert not t4.fits
    share = [s for s in t4.suggestions if s.startswith("model.gpu_memory_utilization")]
    assert share and float(share[0].split(": ")[1].split(" ")[0]) < 0.95
    assert _fits_t4(_apply(cfg, share[0]), "unsloth")


def test_a_vllm_share_too_small_for_the_weights() -> None:
    cfg = config(
        "meta-llama/Llama-3.1-8B-Instruct",
        model={"quantization": "4bit", "fast_inference": True, "gpu_memory_utilization": 0.2},
    )
    t4 = fit_table(estimate(cfg, "fp16", "unsloth"))[0]
    assert not t4.fits and "vLLM's share" in t4.verdict
    raised = [s for s in t4.suggestions if s.startswith("model.gpu_memory_utilization")]
    assert raised and float(raised[0].split(": ")[1].split(" ")[0]) > 0.2


def test_fp8_is_refused_on_gpus_without_fp8(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(unsloth_names, "tables", lambda: FP8_TABLES)
    cfg = load_config(CONFIGS / "llama1b_fp8_gsm8k.yaml").config
    by_gpu = {fit.gpu: fit for fit in fit_table(estimate(cfg, "bf16", "unsloth"))}
    assert not by_gpu["T4"].fits and "8.9" in by_gpu["T4"].verdict
    assert by_gpu["L4"].fits and by_gpu["H100"].fits
    # A 1B model in 16-bit fits an A100 easily: that, not 4-bit, is the first thing to suggest.
    a100 = by_gpu["A100 80GB"]
    assert not a100.fits and len(a100.suggestions) == 1, a100.suggestions
    assert a100.suggestions[0].startswith("model.quantization: none (about")
    assert _fits(_apply(cfg, a100.suggestions[0]), "bf16", "unsloth", "A100 80GB")
    # The recipe says dtype bf16, which a T4 refuses too: both changes, in one suggestion.
    t4 = by_gpu["T4"].suggestions
    assert len(t4) == 1 and t4[0].startswith("model.dtype: auto + model.quantization: none"), t4
    assert _fits(_apply(cfg, t4[0]), "bf16", "unsloth", "T4")


# Unsloth's mapper as hardware.fp8_problems reads it: an FP8 copy of Llama-3.2-1B, none of
# Qwen2.5-7B (unsloth/models/mapper.py, FLOAT_TO_FP8_BLOCK_MAPPER).
FP8_TABLES = {
    "FLOAT_TO_FP8_BLOCK_MAPPER": {
        "unsloth/llama-3.2-1b-instruct": "unsloth/Llama-3.2-1B-Instruct-FP8-Block"
    }
}


@pytest.mark.parametrize("name", ["unsloth/Llama-3.2-1B-Instruct", "Qwen/Qwen2.5-7B-Instruct"])
def test_the_fp8_verdict_is_the_preflights_rule(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(unsloth_names, "tables", lambda: FP8_TABLES)
    cfg = config(name, model={"quantization": "fp8", "fast_inference": True})
    fits = fit_table(estimate(cfg, "bf16", "unsloth"))
    for gpu, fit in zip(GPUS, fits, strict=True):
        refused = [message for _, message in fp8_problems(name, gpu, GPU_EXTRA)]
        if refused:
            assert fit.verdict == f"no: {refused[0]}"
        else:
            assert fit.verdict.startswith(("fits", "tight", "no: needs about")), fit.verdict
    by_gpu = {fit.gpu: fit for fit in fits}
    # 8.9 runs Unsloth's pre-quantized FP8 copy; a model without one needs 9.0 (an H100).
    assert by_gpu["L4"].fits == (name == "unsloth/Llama-3.2-1B-Instruct")
    assert by_gpu["H100"].fits


def test_bf16_on_a_gpu_without_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config("Qwen/Qwen2.5-0.5B-Instruct", model={"dtype": "bf16"})
    by_gpu = {fit.gpu: fit for fit in fit_table(estimate(cfg, "bf16", "trl"))}
    t4 = by_gpu["T4"]
    assert not t4.fits and "bfloat16" in t4.verdict
    assert t4.suggestions and t4.suggestions[0].startswith("model.dtype: auto (about")
    assert _fits(_apply(cfg, t4.suggestions[0]), "bf16", "trl", "T4")
    assert by_gpu["A10G"].fits and by_gpu["A100 40GB"].fits
    auto = config("Qwen/Qwen2.5-0.5B-Instruct")
    assert fit_table(estimate(auto, "bf16", "trl"))[0].fits


def _fits(cfg: GrpoConfig, precision: str, backend: str, gpu: str) -> bool:
    by_gpu = {fit.gpu: fit for fit in fit_table(estimate(cfg, precision, backend))}
    return by_gpu[gpu].fits


@pytest.mark.parametrize(
    ("standby", "user_share"), [("1", None), ("0", None), ("1", 0.55), ("0", 0.55)]
)
def test_vllm_share_on_each_gpu_is_the_rule_training_uses(
    standby: str, user_share: float | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STANDBY, standby)
    model = {"quantization": "4bit", "fast_inference": True, "gpu_memory_utilization": user_share}
    cfg = config("Qwen/Qwen2.5-3B-Instruct", model=model)
    est = estimate(cfg, "fp16", "unsloth")
    shares = {gpu.gpu_name: est.share_on(gpu.gpu_memory_gib or 0) for gpu in GPUS}
    for gpu in GPUS:
        assert shares[gpu.gpu_name] == vllm_memory_share(cfg, gpu.gpu_memory_gib)[0]
    if user_share is not None:
        assert set(shares.values()) == {user_share}
    elif standby == "0":  # standby off: Unsloth's own default, on every GPU
        assert set(shares.values()) == {0.5}
        assert any(f"{STANDBY}=0" in note for note in est.notes)
    else:  # Unsloth's standby tiers: 0.76 of a T4, 0.88 of an 80 GB GPU
        assert shares["T4"] == pytest.approx(0.76)
        assert shares["H100"] == pytest.approx(0.88, abs=0.005)


def test_every_gpu_in_the_table_and_labelled_an_estimate() -> None:
    cfg = load_config(CONFIGS / "qwen3b_gsm8k.yaml").config
    est = estimate(cfg, "fp16", "unsloth")
    assert [fit.gpu for fit in fit_table(est)] == [gpu.gpu_name for gpu in GPUS]
    assert [g.gpu_name for g in GPUS] == ["T4", "L4", "A10G", "A100 40GB", "A100 80GB", "H100"]
    assert est.notes[0].startswith("an estimate")
    assert est.total_gib == pytest.approx(sum(gib for _, gib in est.parts), abs=0.01)
    for label, _ in est.parts:
        assert label.count("(") <= 1 and label.count(")") <= 1, label


def test_each_gpu_has_one_memory_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    """What torch reports, in GiB with one decimal: the same figure in the memory column, the
    verdict and the preflight's description of the GPU."""
    monkeypatch.setattr(unsloth_names, "tables", lambda: FP8_TABLES)
    fp8 = load_config(CONFIGS / "llama1b_fp8_gsm8k.yaml").config
    seed = load_config(CONFIGS / "qwen3b_gsm8k.yaml").config
    for cfg in (fp8, seed):
        for gpu, fit in zip(GPUS, fit_table(estimate(cfg, "bf16", "unsloth")), strict=True):
            figure = f"{gpu.gpu_memory_gib:.1f} GiB"
            assert fit.memory_gib == gpu.gpu_memory_gib and figure in fit.verdict, fit.verdict
            assert " GiB" not in fit.verdict.replace(figure, ""), fit.verdict
    assert [gpu.capability >= (8, 0) for gpu in GPUS] == [gpu.bf16 for gpu in GPUS]


def test_names_map_to_the_table() -> None:
    assert normalized_name("unsloth/Qwen2.5-3B-Instruct-unsloth-bnb-4bit") == "qwen2.5-3b"
    assert normalized_name("unsloth/meta-Llama-3.1-8B-Instruct") == "llama-3.1-8b"
    assert normalized_name("unsloth/Llama-3.2-1B-Instruct-FP8-Dynamic") == "llama-3.2-1b"
    # Qwen2.5-3B-Instruct's config.json: 36 layers, 2048 wide, 3.09B parameters.
    assert KNOWN_SHAPES["qwen2.5-3b"].params == pytest.approx(3.09e9, rel=0.01)
    assert KNOWN_SHAPES["llama-3.1-8b"].params == pytest.approx(8.03e9, rel=0.01)
    assert KNOWN_SHAPES["qwen3-8b"].params == pytest.approx(8.19e9, rel=0.01)


def test_shape_from_a_local_folder_and_the_hub_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fields = {
        "num_hidden_layers": 2,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 1000,
        "tie_word_embeddings": True,
    }
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(fields))
    shape, source = model_shape(str(folder))
    assert shape is not None and shape.layers == 2 and "config.json" in source

    import huggingface_hub.constants

    cache = tmp_path / "hub"
    snapshot = cache / "models--someone--odd-model" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({**fields, "num_hidden_layers": 3}))
    (cache / "models--someone--odd-model" / "refs").mkdir()
    (cache / "models--someone--odd-model" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    shape, source = model_shape("someone/odd-model")
    assert shape is not None and shape.layers == 3


def test_unknown_models() -> None:
    shape, note = model_shape("someone/Mystery-13B-Chat")
    assert shape is not None and 11e9 < shape.params < 15e9 and "from the name" in note
    est = estimate(config("someone/mystery-chat"), "bf16", "trl")
    assert not est.known and "cannot estimate" in est.notes[0] and fit_table(est) == []


def test_no_heavy_imports() -> None:
    code = (
        "import sys; from grpo_cli.config import load_config; from grpo_cli.memory import "
        "estimate, fit_table\n"
        "for name in ('qwen3b_gsm8k', 'llama1b_fp8_gsm8k'):\n"
        "    c = load_config(f'configs/{name}.yaml').config\n"
        "    fit_table(estimate(c, 'fp16', 'unsloth'))\n"
        "print([m for m in ('torch', 'transformers', 'trl', 'peft', 'unsloth', 'vllm') "
        "if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=CONFIGS.parent,
    )
    assert out.stdout.strip() == "[]"


def test_estimates_on_a_machine_without_gpu_use_the_gpu_run_settings() -> None:
    seed = load_config(CONFIGS / "qwen3b_gsm8k.yaml").config
    assert gpu_run_settings(seed, unsloth_installed=True) == ("bf16", "unsloth")
    assert gpu_run_settings(seed, unsloth_installed=False) == ("bf16", "trl")
    fp32 = config("Qwen/Qwen2.5-0.5B-Instruct", model={"dtype": "fp32", "backend": "trl"})
    assert gpu_run_settings(fp32, unsloth_installed=True) == ("fp32", "trl")


def test_parameter_counts_match_transformers() -> None:
    """Each table entry, built by transformers on the meta device, has the parameters the
    estimate counts (biases and norms aside)."""
    torch = pytest.importorskip("torch")
    import transformers

    families = {
        "qwen2.5": transformers.Qwen2Config,
        "qwen3": transformers.Qwen3Config,
        "llama": transformers.LlamaConfig,
        "mistral": transformers.MistralConfig,
    }
    for key, shape in KNOWN_SHAPES.items():
        family = families[key.split("-")[0]]
        hf_config = family(
            num_hidden_layers=shape.layers,
            hidden_size=shape.hidden,
            intermediate_size=shape.intermediate,
            num_attention_heads=shape.heads,
            num_key_value_heads=shape.kv_heads,
            vocab_size=shape.vocab,
            tie_word_embeddings=shape.tied,
            head_dim=shape.dim_per_head,
        )
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(hf_config)
        counted = sum(p.numel() for p in model.parameters())
        assert shape.params == pytest.approx(counted, rel=0.002), key
