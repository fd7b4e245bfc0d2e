"""`grpo eval --tensor-parallel-size N`: vLLM splits each model over N GPUs; the transformers
engine, a machine without vLLM or with fewer GPUs is refused before any row is read."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest
from rich.console import Console

from grpo_cli.errors import GrpoError
from grpo_cli.evaluation.generate import VllmEngine, choose_engine, load_engine
from grpo_cli.hardware import Hardware
from grpo_cli.model_source import ModelSource

CPU = Hardware(device="cpu")


def gpus(count: int) -> Hardware:
    return Hardware("cuda", "H100", 80.0, (9, 0), gpu_count=count, bf16=True)


@pytest.mark.parametrize(
    ("engine", "hw", "vllm", "tp", "chosen"),
    [
        ("auto", gpus(2), True, 2, "vllm"),
        ("vllm", gpus(8), True, 4, "vllm"),
        ("auto", gpus(1), True, 1, "vllm"),
        ("auto", CPU, False, 1, "transformers"),
        ("transformers", gpus(2), True, 1, "transformers"),
    ],
)
def test_the_engine_for_a_tensor_parallel_size(engine, hw, vllm, tp, chosen):
    assert choose_engine(engine, hw, vllm, tp) == chosen


@pytest.mark.parametrize(
    ("engine", "hw", "vllm", "tp", "said"),
    [
        ("transformers", gpus(2), True, 2, "--engine transformers generates on one device"),
        ("auto", CPU, False, 2, "needs vLLM on 2 CUDA GPUs: this machine has CPU"),
        ("vllm", gpus(2), False, 2, "needs vLLM on 2 CUDA GPUs: vllm is not installed"),
        ("auto", gpus(1), True, 2, "needs 2 GPUs, and 1 are visible here"),
        ("vllm", CPU, False, 1, "--engine vllm needs a CUDA GPU"),
    ],
)
def test_a_tensor_parallel_size_that_cannot_run_is_refused(engine, hw, vllm, tp, said):
    with pytest.raises(GrpoError) as err:
        choose_engine(engine, hw, vllm, tp)
    assert said in err.value.message


class RecordingLLM:
    made: list[dict[str, Any]] = []

    def __init__(self, **kwargs: Any):
        RecordingLLM.made.append(kwargs)


@pytest.fixture
def fake_vllm(monkeypatch) -> list[dict[str, Any]]:
    """vllm.LLM recording the keywords it is built with."""
    module = types.ModuleType("vllm")
    module.LLM = RecordingLLM  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    RecordingLLM.made = []
    return RecordingLLM.made


def test_the_vllm_engine_is_built_with_the_tensor_parallel_size(fake_vllm):
    common = dict(adapter=None, lora_rank=16, revision=None, trust_remote_code=False)
    VllmEngine("m", None, max_model_len=256, **common)  # type: ignore[arg-type]
    VllmEngine("m", None, max_model_len=256, tensor_parallel_size=4, **common)  # type: ignore[arg-type]
    assert [kw["tensor_parallel_size"] for kw in fake_vllm] == [1, 4]


def test_eval_hands_the_tensor_parallel_size_to_vllm(tiny_model, fake_vllm, monkeypatch):
    from grpo_cli import hardware
    from grpo_cli.config import load_config

    from .conftest import CONFIGS

    real = hardware.installed
    monkeypatch.setattr(hardware, "probe", lambda: gpus(2))
    monkeypatch.setattr(hardware, "installed", lambda m: m == "vllm" or real(m))
    cfg = load_config(CONFIGS / "smoke_cpu.yaml", [f"model.name={tiny_model}"]).config
    source = ModelSource("base", "base", str(tiny_model))
    engine = load_engine(source, cfg, "auto", Console(quiet=True), tensor_parallel_size=2)
    assert isinstance(engine, VllmEngine)
    ((kwargs,),) = [fake_vllm]
    assert kwargs["model"] == str(tiny_model) and kwargs["tensor_parallel_size"] == 2


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--engine", "transformers"], "--engine transformers generates on one device"),
        ([], "needs vLLM on 2 CUDA GPUs: this machine has CPU"),
    ],
)
def test_grpo_eval_refuses_before_reading_any_row(cli, write, monkeypatch, flags, said):
    """The model is not downloaded and the split file does not exist: the refusal comes before
    either is looked for."""
    monkeypatch.setattr("grpo_cli.hardware.probe", lambda: CPU)
    path = write("c.yaml", "model:\n  name: Qwen/Qwen2.5-0.5B-Instruct\nrewards: [correctness]\n")
    result = cli("eval", path, "--split", "./no-such.jsonl", "--tensor-parallel-size", "2", *flags)
    assert result.code == 2
    assert said in result.err and "Traceback" not in result.err
    assert "no-such" not in result.err and "Hub" not in result.err
