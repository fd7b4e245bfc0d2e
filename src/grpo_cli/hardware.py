"""What the machine can do, and the choices that follow from it: backend, precision, and the
refusals that must come before any weights are downloaded.

`probe()` imports torch and `installed_packages()` looks packages up; the rules take both as
arguments, so they are tested on any machine with a fake GPU and fake installs. `preflight()` is
the one entry: `grpo train` and `grpo doctor CONFIG` both call it.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grpo_cli import unsloth_names
from grpo_cli.config.checks import ignored_revision
from grpo_cli.config.schema import looks_like_path
from grpo_cli.stack import installed_version

if TYPE_CHECKING:
    from grpo_cli.config.schema import GrpoConfig


# Native bfloat16 from Ampere on: Unsloth's rule (unsloth/models/_utils.py, SUPPORTS_BFLOAT16:
# capability major >= 8), by which it loads a model in fp16 below and its trainer then refuses
# bf16 (unsloth/models/rl.py, "Model is in float16"); torch agrees only without emulation
# (torch/cuda/__init__.py, is_bf16_supported: including_emulation=True also says yes on a T4).
NATIVE_BF16 = (8, 0)
BF16_NEEDS = "compute capability {}.{}".format(*NATIVE_BF16)


def native_bf16(capability: tuple[int, int] | None) -> bool:
    """Whether a CUDA GPU of compute CAPABILITY computes in bfloat16 natively (NATIVE_BF16)."""
    return capability is not None and capability >= NATIVE_BF16


@dataclass(frozen=True)
class Hardware:
    device: str  # cuda, mps or cpu
    gpu_name: str | None = None
    gpu_memory_gib: float | None = None
    capability: tuple[int, int] | None = None  # CUDA compute capability, (7, 5) on a T4
    gpu_count: int = 0
    bf16: bool = False  # the device computes in bfloat16 natively: native_bf16(capability)

    @property
    def fp8(self) -> bool:
        """FP8 matmuls: Ada (8.9, L4 / RTX 40xx) and Hopper (9.0, H100) or newer."""
        return self.capability is not None and self.capability >= (8, 9)

    def describe(self) -> str:
        if self.device != "cuda":
            return self.device.upper()
        major, minor = self.capability or (0, 0)
        return (
            f"{self.gpu_name} ({self.gpu_memory_gib:.1f} GiB, compute capability "
            f"{major}.{minor}){f' x{self.gpu_count}' if self.gpu_count > 1 else ''}"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def probe() -> Hardware:
    """The accelerator torch sees (the first CUDA device when there are several)."""
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        capability = (props.major, props.minor)
        return Hardware(
            device="cuda",
            gpu_name=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            capability=capability,
            gpu_count=torch.cuda.device_count(),
            bf16=native_bf16(capability),
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


def choose_backend(
    requested: str, hw: Hardware, unsloth_installed: bool, processes: int = 1
) -> tuple[str, str]:
    """(backend, reason). auto: unsloth when it is installed and a CUDA GPU is present and one
    process trains. The reason is one phrase, printed as `backend: trl (reason)`."""
    if requested != "auto":
        return requested, f"model.backend is {requested}"
    if processes > 1:
        return "trl", f"model.backend is auto and Unsloth trains on one process, not {processes}"
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
            f"model.dtype is auto and {hw.gpu_name} has no native bfloat16, which needs "
            f"{BF16_NEEDS}"
        )
    return "fp32", f"model.dtype is auto and training runs on {hw.device.upper()}"


TRACKERS = ("wandb", "tensorboard", "trackio")
"""The order `logging.report_to: auto` tries them in: wandb first, as the recipes were written
for it; tensorboard next, as Colab ships it; trackio last."""


@dataclass(frozen=True)
class Preflight:
    """Everything `grpo train` decides about this machine before any download, and what it
    refuses; `grpo doctor CONFIG` prints the same."""

    hardware: Hardware
    has: dict[str, bool]  # installed packages, and "wandb_login": wandb can log here
    backend: str
    backend_reason: str
    precision: str
    precision_reason: str
    problems: list[tuple[str, str]]  # (config key, message with the fix): refused
    notes: list[str]  # said, not refused: the tracker auto chose, Unsloth on a CPU
    tracker: str  # the tracker in force: none, tensorboard, wandb or trackio


def preflight(
    cfg: GrpoConfig, hw: Hardware | None = None, has: dict[str, bool] | None = None
) -> Preflight:
    """CFG checked against this machine (or HW and HAS, given): backend, precision, tracker
    and every setting that cannot run here. Imports torch (for `probe`) unless HW is given."""
    hw = probe() if hw is None else hw
    has = installed_packages(cfg) if has is None else has
    from grpo_cli.distributed import current, unsloth_problems

    processes = current().world_size
    unsloth = has.get("unsloth", False)
    backend, backend_reason = choose_backend(cfg.model.backend, hw, unsloth, processes)
    precision, precision_reason = choose_precision(cfg.model.dtype, hw)
    tracker, tracker_note = choose_tracker(cfg.logging.report_to, has)
    notes = [tracker_note] if tracker_note else []
    if backend == "unsloth" and hw.device != "cuda":
        notes.append("note: unsloth without a GPU runs Unsloth's CPU fallback (slow)")
    problems = unsloth_problems(backend, processes) + hardware_problems(
        cfg, hw, backend, precision, has
    )
    return Preflight(
        hw, has, backend, backend_reason, precision, precision_reason, problems, notes, tracker
    )


def installed_packages(cfg: GrpoConfig | None = None) -> dict[str, bool]:
    """Which optional packages are installed (found, not imported), and "wandb_login": whether
    wandb can log, checked only when the config (if given) may use it. "torchao" counts only
    from 0.15, the release Unsloth's on-the-fly FP8 needs (unsloth/models/loader_utils.py,
    _get_fp8_mode_and_check_settings)."""
    has = {name: installed(name) for name in ("unsloth", "vllm", "bitsandbytes", *TRACKERS)}
    has["torchao"] = _version_at_least("torchao", "0.15")
    # vLLM 0.28 moved bitsandbytes out of tree: 4-bit weights through vLLM need the plugin
    # (unsloth_zoo/vllm_utils.py raises "pip install vllm-bnb-plugin" after the download). Asked
    # by its distribution, as vLLM finds it: by the vllm.general_plugins entry point its
    # dist-info declares (vllm_bnb_plugin-0.0.3.dist-info/entry_points.txt), not by a module
    # that a stray folder of the same name would also provide.
    has["vllm_4bit"] = installed_version("vllm-bnb-plugin") is not None or not _version_at_least(
        "vllm", "0.28"
    )
    uses_wandb = cfg is None or cfg.logging.report_to in ("wandb", "auto")
    has["wandb_login"] = not uses_wandb or wandb_can_log()
    return has


def _version_at_least(package: str, minimum: str) -> bool:
    """PACKAGE is installed at MINIMUM or later; a pre-release or local build of MINIMUM counts
    (0.28.0rc1, 0.15.0+cu126), as it carries the change the minimum stands for."""
    from packaging.version import InvalidVersion, Version

    found = installed_version(package)
    if found is None:
        return False
    try:
        return Version(found).release >= Version(minimum).release
    except InvalidVersion:
        return False


def choose_tracker(requested: str, has: dict[str, bool]) -> tuple[str, str | None]:
    """(tracker, note). An explicit tracker is kept (`hardware_problems` refuses one that cannot
    log); auto takes the first of TRACKERS that can log, else none, and the note says why."""
    if requested != "auto":
        return requested, None
    skipped = []
    for tracker in TRACKERS:
        if not has.get(tracker):
            skipped.append(f"{tracker} is not installed")
        elif tracker == "wandb" and not has.get("wandb_login"):
            skipped.append("wandb has no API key here, `wandb login` sets one")
        else:
            why = f": {'; '.join(skipped)}" if skipped else f" and {tracker} can log"
            return tracker, f"logging: {tracker} (report_to is auto{why})"
    return "none", f"logging: none (report_to is auto: {'; '.join(skipped)})"


def _already_quantized(name: str) -> bool:
    """A local model folder whose config.json says it is quantized: Unsloth loads it as it is
    (loader_utils._fp8_load_as_is). A Hub id's config is not fetched here."""
    import json
    from pathlib import Path

    if not looks_like_path(name):
        return False
    try:
        config = json.loads((Path(name).expanduser() / "config.json").read_text())
    except (OSError, ValueError):
        return True  # unreadable: the loader's own fallbacks decide, as Unsloth's do
    text = config.get("text_config") or {}
    return bool(config.get("quantization_config") or text.get("quantization_config"))


def hardware_problems(
    cfg: GrpoConfig, hw: Hardware, backend: str, precision: str, has: dict[str, bool]
) -> list[tuple[str, str]]:
    """Settings this machine cannot run, as (config key, message with the fix); checked before
    any download. `has` says which of unsloth, vllm, bitsandbytes, torchao and the trackers are
    installed, and `has["wandb_login"]` whether wandb can log in or runs offline."""
    return list(_hardware_problems(cfg, hw, backend, precision, has))


def _hardware_problems(
    cfg: GrpoConfig, hw: Hardware, backend: str, precision: str, has: dict[str, bool]
) -> Iterator[tuple[str, str]]:
    m, gpu, machine = cfg.model, hw.device == "cuda", hw.describe()
    install = "pip install -e '.[gpu]'"
    if backend == "unsloth" and not has.get("unsloth"):
        yield "model.backend", f"unsloth is not installed: {install}, or set model.backend: trl"
    if m.quantization == "fp8" and gpu:
        yield from fp8_problems(m.name, hw, has)
    if backend == "unsloth" and m.revision and has.get("unsloth") and not m.fast_inference:
        copy = unsloth_names.unsloth_repo(m.name, m.quantization)
        if copy is not None:
            # unsloth/models/loader.py, _revision_for_resolved_repo: a revision is dropped (a
            # warning) once the mapper moved the name, so the run would train other weights.
            why = f"Unsloth loads its own copy {copy} of {m.name}"
            yield "model.revision", ignored_revision(m.name, m.revision, why, "model.backend: trl")
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
    if (
        m.quantization == "4bit"
        and (m.fast_inference or cfg.vllm.use)
        and has.get("vllm")
        and not has.get("vllm_4bit")
    ):
        yield (
            "model.quantization",
            "4-bit weights through vLLM 0.28+ need the vllm-bnb-plugin package: "
            f"{install}, or set quantization: none",
        )
    if cfg.vllm.use and not gpu:
        yield "vllm.use", "vLLM generation needs a CUDA GPU: set vllm.use: false"
    elif cfg.vllm.use and not has.get("vllm"):
        yield "vllm.use", f"vllm is not installed: {install}"
    if precision in ("bf16", "fp16") and not gpu:
        yield "model.dtype", f"{precision} needs a CUDA GPU here: set model.dtype: auto (fp32)"
    elif precision == "bf16" and not hw.bf16:
        major, minor = hw.capability or (0, 0)
        yield (
            "model.dtype",
            f"{hw.gpu_name} (compute capability {major}.{minor}) has no native bfloat16, which "
            f"needs {BF16_NEEDS} or newer: set model.dtype: fp16 or auto",
        )
    if cfg.training.optim in _BNB_OPTIMIZERS and not (gpu and has.get("bitsandbytes")):
        yield (
            "training.optim",
            f"{cfg.training.optim} needs bitsandbytes and a CUDA GPU: use adamw_torch",
        )
    tracker = cfg.logging.report_to
    if tracker in ("none", "auto"):  # auto falls back instead of refusing (choose_tracker)
        return
    if not has.get(tracker):
        yield (
            "logging.report_to",
            f"{tracker} is not installed: pip install -e '.[{tracker}]', or set report_to: auto "
            "(the first tracker that can log) or none",
        )
    elif tracker == "wandb" and not has.get("wandb_login"):
        yield (
            "logging.report_to",
            "wandb has no API key here: run `wandb login` (or set WANDB_API_KEY), or log "
            "offline with WANDB_MODE=offline, or set report_to: auto",
        )


def fp8_problems(name: str, hw: Hardware, has: dict[str, bool]) -> Iterator[tuple[str, str]]:
    """Unsloth loads the pre-quantized FP8 repo its mapper names for NAME, which an Ada GPU
    (8.9) runs; any other model it quantizes itself, which needs compute capability 9.0 and
    torchao 0.15+ (unsloth/models/loader_utils.py, _get_fp8_mode_and_check_settings, reached
    from loader.py when the mapper returns NAME unchanged and from llama.py's vLLM path), and
    fails only after the model's config was downloaded."""
    machine = hw.describe()
    if not hw.fp8:
        yield (
            "model.quantization",
            f"fp8 weights need an Ada or Hopper GPU (compute capability 8.9+), not {machine}: "
            "use quantization: none or 4bit",
        )
        return
    if not (has.get("unsloth") and unsloth_names.tables()):
        return  # without unsloth's mapper nothing says which models it ships in FP8
    if _already_quantized(name) or unsloth_names.fp8_copy(name) is not None:
        return
    if hw.capability is not None and hw.capability < (9, 0):
        yield (
            "model.quantization",
            f"Unsloth has no pre-quantized FP8 copy of {name}, and quantizing it to FP8 on the "
            f"fly needs compute capability 9.0 (H100), not {machine}: use a model Unsloth "
            "ships in FP8 (e.g. unsloth/Llama-3.2-1B-Instruct or unsloth/Qwen3-4B), or "
            "quantization: 4bit",
        )
    elif not has.get("torchao"):
        yield (
            "model.quantization",
            f"Unsloth has no pre-quantized FP8 copy of {name} and quantizes it on the fly with "
            "torchao 0.15+, which is not installed: pip install 'torchao>=0.15'",
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


@dataclass(frozen=True)
class NvidiaSmi:
    """What nvidia-smi says about the first GPU and its driver, read without importing torch
    (which takes seconds): `grpo doctor` describes the machine at once."""

    hardware: Hardware
    driver: str | None = None  # NVIDIA driver version
    driver_cuda: str | None = None  # the newest CUDA version the driver runs
    error: str | None = None  # why no GPU was read


# `grpo doctor` must answer in under 2 s; a warm driver answers nvidia-smi in about 0.1 s.
SMI_TIMEOUT_S = 1.5


def probe_nvidia_smi(timeout: float = SMI_TIMEOUT_S) -> NvidiaSmi:
    import shutil
    import subprocess
    import time

    smi = shutil.which("nvidia-smi")
    if smi is None:
        return NvidiaSmi(Hardware(device="cpu"), error="no NVIDIA GPU (nvidia-smi not found)")
    query = "name,memory.total,compute_cap,driver_version"
    # Both asked at once: each waits on the driver, and one after the other doubled the wait.
    # The plain table is the only place that names the driver's CUDA version.
    commands = [[smi, f"--query-gpu={query}", "--format=csv,noheader,nounits"], [smi]]
    try:
        procs = [
            subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
            )
            for command in commands
        ]
    except OSError as exc:
        return NvidiaSmi(Hardware(device="cpu"), error=f"nvidia-smi failed: {exc}")
    deadline = time.monotonic() + timeout
    answers: list[tuple[str, str, int]] = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for late in procs:  # killed, not drained: a child it started may hold the pipes
                late.kill()
                late.wait()
                for pipe in (late.stdout, late.stderr):
                    if pipe is not None:
                        pipe.close()
            # Not "failed": a driver without persistence mode can take seconds to wake.
            return NvidiaSmi(
                Hardware(device="cpu"), error=f"nvidia-smi did not answer in {timeout:g} s"
            )
        answers.append((out, err, proc.returncode))
    (gpus_out, gpus_err, gpus_code), (table_out, _, _) = answers
    rows = [line.split(", ") for line in gpus_out.strip().splitlines() if line.strip()]
    if gpus_code != 0 or not rows or len(rows[0]) != 4:
        said = (gpus_out + gpus_err).strip().splitlines()
        return NvidiaSmi(
            Hardware(device="cpu"),
            error=f"nvidia-smi failed: {said[0] if said else f'exit code {gpus_code}'}",
        )
    name, memory_mib, capability, driver = (field.strip() for field in rows[0])
    cap = _capability(capability)
    hw = Hardware(
        device="cuda",
        gpu_name=name,
        gpu_memory_gib=round(float(memory_mib) / 1024, 1) if _number(memory_mib) else None,
        capability=cap,
        gpu_count=len(rows),
        bf16=native_bf16(cap),
    )
    match = re.search(r"CUDA Version:\s*([0-9.]+)", table_out)
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
