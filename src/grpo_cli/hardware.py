"""What the machine can do, and the choices that follow from it: backend, precision, and the
refusals that must come before any weights are downloaded.

`probe()` imports torch; every other function is pure, so the rules are tested on any machine.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
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


@dataclass
class Preflight:
    """A config checked against a machine: what will run, and what cannot."""

    hardware: Hardware
    has: dict[str, bool]
    backend: str
    backend_reason: str
    precision: str
    precision_reason: str
    problems: list[tuple[str, str]]  # (config key, message with the fix)
    notes: list[str]
    tracker: str


def installed_packages(cfg: GrpoConfig) -> dict[str, bool]:
    """Which optional packages the config may need are importable; `wandb_login` whether wandb
    can log without asking for a key."""
    has = {
        name: installed(name)
        for name in ("unsloth", "vllm", "bitsandbytes", "tensorboard", "wandb", "trackio")
    }
    has["wandb_login"] = cfg.logging.report_to != "wandb" or wandb_can_log()
    return has


def preflight(
    cfg: GrpoConfig, hw: Hardware | None = None, has: dict[str, bool] | None = None
) -> Preflight:
    """The checks `grpo train` runs before any download, for a machine (default: this one)."""
    hw = probe() if hw is None else hw
    has = installed_packages(cfg) if has is None else has
    backend, backend_reason = choose_backend(cfg.model.backend, hw, has.get("unsloth", False))
    precision, precision_reason = choose_precision(cfg.model.dtype, hw)
    problems = hardware_problems(cfg, hw, backend, precision, has)
    notes = []
    if backend == "unsloth" and hw.device != "cuda":
        notes.append("unsloth without a GPU runs Unsloth's CPU fallback (slow)")
    return Preflight(
        hw,
        has,
        backend,
        backend_reason,
        precision,
        precision_reason,
        problems,
        notes,
        cfg.logging.report_to,
    )


@dataclass(frozen=True)
class NvidiaSmi:
    """What nvidia-smi says about the first GPU and its driver, read without importing torch
    (which takes seconds): `grpo doctor` describes the machine at once."""

    hardware: Hardware
    driver: str | None = None  # NVIDIA driver version
    driver_cuda: str | None = None  # the newest CUDA version the driver runs
    error: str | None = None  # why no GPU was read


def probe_nvidia_smi(timeout: float = 10.0) -> NvidiaSmi:
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if smi is None:
        return NvidiaSmi(Hardware(device="cpu"), error="no NVIDIA GPU (nvidia-smi not found)")
    query = "name,memory.total,compute_cap,driver_version"
    try:
        gpus = subprocess.run(
            [smi, f"--query-gpu={query}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        # The plain table is the only place that names the driver's CUDA version.
        table = subprocess.run([smi], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return NvidiaSmi(Hardware(device="cpu"), error=f"nvidia-smi failed: {exc}")
    rows = [line.split(", ") for line in gpus.stdout.strip().splitlines() if line.strip()]
    if gpus.returncode != 0 or not rows or len(rows[0]) != 4:
        said = (gpus.stdout + gpus.stderr).strip().splitlines()
        return NvidiaSmi(
            Hardware(device="cpu"),
            error=f"nvidia-smi failed: {said[0] if said else f'exit code {gpus.returncode}'}",
        )
    name, memory_mib, capability, driver = (field.strip() for field in rows[0])
    cap = _capability(capability)
    hw = Hardware(
        device="cuda",
        gpu_name=name,
        gpu_memory_gib=round(float(memory_mib) / 1024, 1) if _number(memory_mib) else None,
        capability=cap,
        gpu_count=len(rows),
        bf16=cap is not None and cap >= (8, 0),
    )
    match = re.search(r"CUDA Version:\s*([0-9.]+)", table.stdout)
    return NvidiaSmi(hw, driver=driver, driver_cuda=match.group(1) if match else None)


def _capability(text: str) -> tuple[int, int] | None:
    major, _, minor = text.partition(".")
    return (int(major), int(minor)) if major.isdigit() and minor.isdigit() else None


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def torch_cuda_build() -> str | None:
    """The CUDA runtime the installed torch was built for (None: a CPU build or no torch), read
    from torch/version.py without importing torch."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    version_file = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    try:
        text = version_file.read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(r"^cuda\b[^=]*=\s*['\"]([^'\"]+)['\"]", text, re.M)
    return match.group(1) if match else None
