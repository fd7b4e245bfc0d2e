"""Backend and precision choices, and the refusals that come before any download."""

from __future__ import annotations

import pytest

from grpo_cli.config import load_config
from grpo_cli.hardware import Hardware, choose_backend, choose_precision, hardware_problems

from .conftest import CONFIGS

CPU = Hardware(device="cpu")
T4 = Hardware("cuda", "Tesla T4", 15.0, (7, 5), 1, bf16=False)
L4 = Hardware("cuda", "NVIDIA L4", 22.0, (8, 9), 1, bf16=True)
ALL = {"unsloth": True, "vllm": True, "bitsandbytes": True, "wandb": True, "wandb_login": True}


@pytest.mark.parametrize(
    ("requested", "hw", "unsloth", "expected"),
    [
        ("auto", L4, True, "unsloth"),
        ("auto", L4, False, "trl"),
        ("auto", CPU, True, "trl"),
        ("trl", L4, True, "trl"),
        ("unsloth", CPU, True, "unsloth"),
    ],
)
def test_backend_choice_and_its_reason(requested, hw, unsloth, expected):
    backend, reason = choose_backend(requested, hw, unsloth)
    assert backend == expected
    # Printed as `backend: trl (reason)`: one phrase that names the setting, nothing nested.
    assert reason.startswith(f"model.backend is {requested}")
    assert "(" not in reason and ")" not in reason, reason


@pytest.mark.parametrize(
    ("dtype", "hw", "expected"),
    [("auto", L4, "bf16"), ("auto", T4, "fp16"), ("auto", CPU, "fp32"), ("fp16", L4, "fp16")],
)
def test_precision_follows_the_hardware_unless_set(dtype, hw, expected):
    precision, reason = choose_precision(dtype, hw)
    assert precision == expected
    assert reason.startswith(f"model.dtype is {dtype}")
    assert "(" not in reason and ")" not in reason, reason


def problems_for(config: str, hw: Hardware, has=ALL, overrides=()):
    cfg = load_config(CONFIGS / config, list(overrides)).config
    backend, _ = choose_backend(cfg.model.backend, hw, has.get("unsloth", False))
    precision, _ = choose_precision(cfg.model.dtype, hw)
    return dict(hardware_problems(cfg, hw, backend, precision, has))


def test_the_seed_recipe_runs_on_a_t4_with_the_gpu_extras():
    assert problems_for("qwen3b_gsm8k.yaml", T4) == {}
    no_wandb = {**ALL, "wandb": False}  # the seed recipe logs to wandb
    assert "[wandb]" in problems_for("qwen3b_gsm8k.yaml", T4, no_wandb)["logging.report_to"]


def test_fp8_is_refused_on_a_t4_and_accepted_on_an_l4():
    assert "Ada or Hopper" in problems_for("llama1b_fp8_gsm8k.yaml", T4)["model.quantization"]
    assert problems_for("llama1b_fp8_gsm8k.yaml", L4) == {}


def test_fast_inference_without_vllm_and_4bit_without_bitsandbytes_are_refused():
    problems = problems_for("qwen3b_gsm8k.yaml", L4, {"unsloth": True})
    assert "vLLM, which is not installed" in problems["model.fast_inference"]
    assert "need bitsandbytes" in problems["model.quantization"]


def test_bf16_on_a_t4_is_refused():
    problems = problems_for("qwen3b_gsm8k.yaml", T4, overrides=["model.dtype=bf16"])
    assert "has no bfloat16" in problems["model.dtype"]


def test_a_tracker_that_is_not_installed_is_refused_with_its_extra():
    problems = problems_for("qwen3b_gsm8k.yaml", T4, overrides=["logging.report_to=trackio"])
    assert "pip install -e '.[trackio]'" in problems["logging.report_to"]
    assert (
        problems_for(
            "qwen3b_gsm8k.yaml", T4, {**ALL, "tensorboard": True}, ["logging.report_to=tensorboard"]
        )
        == {}
    )


def test_wandb_without_a_key_is_refused_unless_offline(monkeypatch, tmp_path):
    from grpo_cli.hardware import wandb_can_log

    problem = problems_for("qwen3b_gsm8k.yaml", T4, {**ALL, "wandb_login": False})
    assert "wandb login" in problem["logging.report_to"]
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert not wandb_can_log()
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_can_log()
    monkeypatch.delenv("WANDB_MODE")
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    (tmp_path / ".netrc").chmod(0o600)
    assert wandb_can_log()
