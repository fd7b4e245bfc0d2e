"""What the machine can do, and the choices that follow from it: backend, precision, and the
refusals that must come before any weights are downloaded.

`probe()` imports torch; every other function is pure, so the rules are tested on any machine.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from grpo_cli.config.schema import GrpoConfig


@dataclass(frozen=True)
class Hardware:
    device: str  # cuda, mps or cpu
    gpu_name: str | None = None
    gpu_memory_gib: float | None = None
    capability: tuple[int, int] | None = None  # CUDA compute capability, (7, 5) on a T4
    gpu_count: int = 0
    bf16: bool = False  # the device computes in bfloat16 natively

    @property
    def fp8(self) -> bool:
        """FP8 matmuls: Ada (8.9, L4 / RTX 40xx) and Hopper (9.0, H100) or newer."""
        return self.capability is not None and self.capability >= (8, 9)

    def describe(self) -> str:
        if self.device != "cuda":
            return self.device.upper()
        major, minor = self.capability or (0, 0)
        return (
            f"{self.gpu_name} ({self.gpu_memory_gib:.0f} GiB, compute capability "
            f"{major}.{minor}){f' x{self.gpu_count}' if self.gpu_count > 1 else ''}"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def probe() -> Hardware:
    """The accelerator torch sees (the first CUDA device when there are several)."""
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return Hardware(
            device="cuda",
            gpu_name=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            capability=(props.major, props.minor),
            gpu_count=torch.cuda.device_count(),
            bf16=torch.cuda.is_bf16_supported(),
        )
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return Hardware(device="mps")
    return Hardware(device="cpu")


def installed(module: str) -> bool:
    """Whether a package is importable, without importing it (unsloth's import patches others)."""
    return importlib.util.find_spec(module) is not None


def wandb_can_log() -> bool:
    """Whether wandb.init will start without asking for a key: offline or disabled mode, an
    API key in the environment, or `wandb login`'s ~/.netrc entry. Read by hand because
    importing wandb to ask it takes seconds and a run without a key would fail only after the
    model has loaded."""
    import netrc
    import os

    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return True
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("//")[-1]
        return netrc.netrc().authenticators(host.split("/")[0]) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def choose_backend(requested: str, hw: Hardware, unsloth_installed: bool) -> tuple[str, str]:
    """(backend, reason). auto: unsloth when it is installed and a CUDA GPU is present. The
    reason is one phrase, printed as `backend: trl (reason)`."""
    if requested != "auto":
        return requested, f"model.backend is {requested}"
    if hw.device != "cuda":
        return "trl", "model.backend is auto and this machine has no CUDA GPU"
    if not unsloth_installed:
        return "trl", "model.backend is auto and unsloth is not installed: pip install -e '.[gpu]'"
    return "unsloth", f"model.backend is auto, unsloth is installed and {hw.gpu_name} is a CUDA GPU"


def choose_precision(dtype: str, hw: Hardware) -> tuple[str, str]:
    """(bf16 | fp16 | fp32, reason) for model.dtype auto or an explicit setting; the reason is
    one phrase, printed as `precision: fp32 (reason)`."""
    if dtype != "auto":
        return dtype, f"model.dtype is {dtype}"
    if hw.device == "cuda":
        if hw.bf16:
            return "bf16", f"model.dtype is auto and {hw.gpu_name} supports bfloat16"
        return "fp16", (
            f"model.dtype is auto and {hw.gpu_name} has no bfloat16, which needs compute "
            "capability 8.0"
        )
    return "fp32", f"model.dtype is auto and training runs on {hw.device.upper()}"


def hardware_problems(
    cfg: GrpoConfig, hw: Hardware, backend: str, precision: str, has: dict[str, bool]
) -> list[tuple[str, str]]:
    """Settings this machine cannot run, as (config key, message with the fix); checked before
    any download. `has` says which of unsloth, vllm, bitsandbytes and the trackers are
    installed, and `has["wandb_login"]` whether wandb can log in or runs offline."""
    return list(_hardware_problems(cfg, hw, backend, precision, has))


def _hardware_problems(
    cfg: GrpoConfig, hw: Hardware, backend: str, precision: str, has: dict[str, bool]
) -> Iterator[tuple[str, str]]:
    m, gpu, machine = cfg.model, hw.device == "cuda", hw.describe()
    install = "pip install -e '.[gpu]'"
    if backend == "unsloth" and not has.get("unsloth"):
        yield "model.backend", f"unsloth is not installed: {install}, or set model.backend: trl"
    if m.quantization == "fp8" and gpu and not hw.fp8:
        yield (
            "model.quantization",
            f"fp8 weights need an Ada or Hopper GPU (compute capability 8.9+), not {machine}: "
            "use quantization: 4bit",
        )
    if m.quantization != "none" and not gpu:
        yield (
            "model.quantization",
            f"{m.quantization} weights need a CUDA GPU, this machine has {machine}: set "
            "model.quantization: none",
        )
    elif m.quantization in ("4bit", "8bit") and not has.get("bitsandbytes"):
        yield "model.quantization", f"{m.quantization} weights need bitsandbytes: {install}"
    if m.fast_inference and backend == "trl":
        yield (
            "model.fast_inference",
            "fast_inference is Unsloth's colocated vLLM; with the trl backend set it to false "
            "(and vllm.use: true on a GPU)",
        )
    elif m.fast_inference and not has.get("vllm"):
        yield (
            "model.fast_inference",
            f"fast_inference generates with vLLM, which is not installed: {install}, or set "
            "fast_inference: false",
        )
    if cfg.vllm.use and not gpu:
        yield "vllm.use", "vLLM generation needs a CUDA GPU: set vllm.use: false"
    elif cfg.vllm.use and not has.get("vllm"):
        yield "vllm.use", f"vllm is not installed: {install}"
    if precision in ("bf16", "fp16") and not gpu:
        yield "model.dtype", f"{precision} needs a CUDA GPU here: set model.dtype: auto (fp32)"
    elif precision == "bf16" and not hw.bf16:
        yield "model.dtype", f"{hw.gpu_name} has no bfloat16: set model.dtype: fp16 or auto"
    if cfg.training.optim in _BNB_OPTIMIZERS and not (gpu and has.get("bitsandbytes")):
        yield (
            "training.optim",
            f"{cfg.training.optim} needs bitsandbytes and a CUDA GPU: use adamw_torch",
        )
    tracker = cfg.logging.report_to
    if tracker != "none" and not has.get(tracker):
        yield (
            "logging.report_to",
            f"{tracker} is not installed: pip install -e '.[{tracker}]', or set report_to: none",
        )
    elif tracker == "wandb" and not has.get("wandb_login"):
        yield (
            "logging.report_to",
            "wandb has no API key here: run `wandb login` (or set WANDB_API_KEY), or log "
            "offline with WANDB_MODE=offline",
        )


_BNB_OPTIMIZERS = {
    "adamw_bnb_8bit",
    "adamw_8bit",
    "ademamix_8bit",
    "lion_8bit",
    "lion_32bit",
    "paged_adamw_32bit",
    "paged_adamw_8bit",
    "paged_ademamix_32bit",
    "paged_ademamix_8bit",
    "paged_lion_32bit",
    "paged_lion_8bit",
    "rmsprop_bnb",
    "rmsprop_bnb_8bit",
    "rmsprop_bnb_32bit",
}
