"""A rough estimate of a run's peak GPU memory, and which common GPUs it fits."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from grpo_cli.config.schema import GrpoConfig

GPUS = (
    ("T4", 16.0),
    ("L4", 24.0),
    ("A10G", 24.0),
    ("A100 40GB", 40.0),
    ("A100 80GB", 80.0),
    ("H100", 80.0),
)
_BYTES = {"4bit": 0.56, "8bit": 1.06, "fp8": 1.06}  # with quantization constants
_VLLM = "vLLM (gpu_memory_utilization)"


@dataclass
class MemoryEstimate:
    parts: list[tuple[str, float]]  # (label, GiB), vLLM's share excluded
    total_gib: float
    notes: list[str] = field(default_factory=list)
    vllm_share: float = 0.0  # of the GPU's memory, when vLLM generates in the training process


@dataclass
class GpuFit:
    gpu: str
    memory_gib: float
    fits: bool
    verdict: str
    suggestions: list[str]


def estimate(cfg: GrpoConfig, precision: str, backend: str) -> MemoryEstimate:
    m = cfg.model
    params = _parameters(m.name)
    notes = ["an estimate: the real peak varies with the batch and the completions' lengths"]
    if params is None:
        params = 1.0e9
        notes.append(f"the size of {m.name} is unknown; 1B parameters assumed")
    weight_bytes = _BYTES.get(m.quantization, 4.0 if precision == "fp32" else 2.0)
    lora = params * cfg.lora.r / 4096 * 0.05
    optimizer = 2 if cfg.training.optim.endswith("8bit") else 8
    activations = 2.0e-5 * params / 1e9 * m.max_seq_length * cfg.training.num_generations
    if cfg.lora.gradient_checkpointing is False:
        activations *= 4
    parts = [
        (f"base weights ({m.quantization})", params * weight_bytes / 2**30),
        ("LoRA weights and gradients", lora * 8 / 2**30),
        ("optimizer states", lora * optimizer / 2**30),
        ("activations", activations),
        ("CUDA context and buffers", 0.5),
    ]
    if cfg.training.beta > 0 and backend == "trl":
        parts.append(("reference model", params * weight_bytes / 2**30))
    share = m.gpu_memory_utilization if (m.fast_inference or cfg.vllm.use) else 0.0
    total = sum(gib for _, gib in parts)
    return MemoryEstimate(parts, total, notes, share)


def fit_table(est: MemoryEstimate) -> list[GpuFit]:
    rows = []
    for gpu, memory in GPUS:
        vllm = est.vllm_share * memory
        need = est.total_gib + vllm
        fits = need <= memory * 0.95
        suggestions = [] if fits else ["model.quantization: 4bit", "a smaller model.max_seq_length"]
        if not fits and est.vllm_share:
            suggestions.insert(0, "a lower model.gpu_memory_utilization")
        verdict = f"{'fits' if fits else 'too small'} ({need:.1f} of {memory:.0f} GiB)"
        rows.append(GpuFit(gpu, memory, fits, verdict, suggestions))
    return rows


def _parameters(name: str) -> float | None:
    match = re.search(r"(\d+(?:\.\d+)?)\s*[bB](?![a-zA-Z])", name)
    return float(match.group(1)) * 1e9 if match else None
