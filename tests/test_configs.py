"""Every shipped config validates, and the recipes say what the README promises."""

from __future__ import annotations

import pytest

from grpo_cli.config import load_config
from grpo_cli.geometry import batch_geometry
from tests.conftest import CONFIGS

SHIPPED = sorted(CONFIGS.glob("*.yaml"))


ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def test_configs_are_shipped():
    assert {p.name for p in SHIPPED} >= {
        "qwen3b_gsm8k.yaml",
        "llama1b_fp8_gsm8k.yaml",
        "smoke_cpu.yaml",
    }


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_validates(path, request):
    request.getfixturevalue("demo_folder" if path.name.startswith("learn") else "shipped_models")
    load_config(path)


def test_learning_demo_configs(demo_folder):
    """GRPO starts from the warm-up run, on the same problems' GRPO part, and both stages read
    their prompts the same way."""
    sft = load_config(CONFIGS / "learn_cpu_sft.yaml").config
    grpo = load_config(CONFIGS / "learn_cpu.yaml").config
    assert grpo.model.name == "./outputs/learn-cpu-sft"
    assert sft.output.run_name == grpo.output.run_name == "learn-cpu"  # grpo sft adds -sft
    assert sft.sft.method == "full" and sft.model.quantization == "none"
    assert sft.data == grpo.data and sft.data.difficulty == "simple"
    assert (grpo.data.heldout_size, grpo.data.eval_split) == (0, "test")
    assert [r.name for r in grpo.rewards] == ["correctness", "arithmetic", "strict_format"]
    assert grpo.training.beta == 0.0


def test_seed_recipe():
    cfg = load_config(CONFIGS / "qwen3b_gsm8k.yaml").config
    m, lora, t = cfg.model, cfg.lora, cfg.training
    assert (m.name, m.quantization, m.max_seq_length) == ("Qwen/Qwen2.5-3B-Instruct", "4bit", 1024)
    assert (m.fast_inference, m.gpu_memory_utilization) == (True, 0.7)
    assert (lora.r, lora.alpha, lora.gradient_checkpointing) == (64, 64, "unsloth")
    assert lora.target_modules == ALL_PROJECTIONS
    assert (t.learning_rate, t.adam_beta1, t.adam_beta2) == (5e-6, 0.9, 0.99)
    assert (t.weight_decay, t.warmup_ratio, t.lr_scheduler_type) == (0.1, 0.1, "cosine")
    assert (t.optim, t.max_grad_norm) == ("adamw_8bit", 0.1)
    assert (t.max_prompt_length, t.max_completion_length) == (256, 512)
    assert (t.max_steps, t.save_steps, t.logging_steps) == (2000, 250, 1)
    geometry = batch_geometry(t)
    assert (geometry.prompts_per_step, geometry.num_generations) == (1, 8)
    assert [r.name for r in cfg.rewards] == [
        "xml_count",
        "soft_format",
        "strict_format",
        "integer_answer",
        "correctness",
    ]
    assert cfg.logging.report_to == "auto"  # wandb when it can log, else a fallback (hardware.py)
    assert (cfg.data.source, cfg.data.subset, cfg.data.split) == ("openai/gsm8k", "main", "train")


def test_llama_fp8_recipe():
    """Unsloth's ungated copy of Llama-3.2-1B-Instruct (the meta-llama id asks for a licence and
    a token before any download), with the LoRA of Unsloth's Llama FP8 GRPO notebook."""
    cfg = load_config(CONFIGS / "llama1b_fp8_gsm8k.yaml").config
    m, lora, t = cfg.model, cfg.lora, cfg.training
    assert (m.name, m.quantization, m.backend, m.dtype) == (
        "unsloth/Llama-3.2-1B-Instruct",
        "fp8",
        "unsloth",
        "bf16",
    )
    assert (m.max_seq_length, m.max_lora_rank, lora.r, lora.alpha) == (2048, 32, 32, 64)
    assert lora.target_modules == ALL_PROJECTIONS
    assert (t.num_generations, t.max_completion_length, t.learning_rate) == (8, 1024, 5e-6)
    assert t.max_prompt_length + t.max_completion_length <= m.max_seq_length
    assert t.save_steps == 250
