"""`grpo doctor --check`: a real check of every training path this machine supports, on the tiny
local model, offline: 2 GRPO steps and a short eval per path, the vLLM eval engine, and merges.

Each step is a child process of the real CLI (`python -m grpo_cli train|eval|merge`), so a crash,
a CUDA out-of-memory or Unsloth's import-time patches stay inside the path that caused them, and
the check exercises exactly what a user runs. `planned_paths` is pure; `run_checks` does the work.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grpo_cli import hardware
from grpo_cli.files import SafetensorsDamage, safetensors_header
from grpo_cli.hardware import Hardware, choose_precision
from grpo_cli.tiny_model import MODEL_SIZES, write_tiny_model

# One step's limit: a step that takes this long has hung. On an H200 (2026-11-30) the slowest
# path, Unsloth in 4-bit, took 117 s for its training and eval processes; its training alone ran
# 53.8 s, 32 and 20 s a step, most of it torch.compile of each decoder layer. fast_inference adds
# vLLM's start, and a T4 compiles on slower cores.
STEP_TIMEOUT_S = 300
# The whole check's limit; steps share it: one that is still running when it is spent is
# stopped, and the paths not started by then are skipped. Issue 12 asked for 5 minutes on a T4.
# On the H200 the six paths it could run without vLLM add up to 413 s over three runs (trl 47
# and 41 s, Unsloth 109 and 117 s, merges 42 and 58 s): a 270 s budget skipped the seed recipe's
# own path. The recipe's paths now run first, and the budget fits the measured whole.
CHECK_BUDGET_S = 600
# A child spends about this long importing torch and the CLI before it does anything: with less
# left, a step could only be stopped half-way.
MIN_STEP_S = 15
BUDGET_SPENT = (
    f"the check's {CHECK_BUDGET_S} s budget ({CHECK_BUDGET_S // 60} minutes in all) is spent"
)
EVAL_ROWS = 2
EVAL_TOKENS = 8
if TYPE_CHECKING:
    from rich.console import Console

INSTALL = "pip install -e '.[gpu]'"
TINY_MODEL = "tiny-qwen2"
# The tests' tiny model has heads of 16 dimensions, which a T4's vLLM cannot serve: FlashAttention
# needs compute capability 8.0, FlashInfer takes 64, 128, 256 or 512 and the Triton backend 32 or
# more (vllm/v1/attention/backends/flashinfer.py and triton_attn.py, get_supported_head_sizes /
# supports_head_size). 2 query heads of 64 over 1 key-value head keep grouped-query attention, fit
# every backend, and train on CPU as fast as the tests' model.
CHECK_MODEL_SIZES = {
    **MODEL_SIZES,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
}
_UNSLOTH = {"backend": "unsloth"}


@dataclass(frozen=True)
class CheckRow:
    path: str
    status: str  # passed | failed | skipped
    detail: str  # "" when passed, the error's first line when failed, the reason when skipped
    seconds: float | None

    @property
    def unreached(self) -> bool:
        """Skipped for the budget, not for this machine: a path nobody checked."""
        return self.status == "skipped" and BUDGET_SPENT in self.detail


@dataclass(frozen=True)
class _CheckPath:
    """One row of the check: what it needs, and what it runs."""

    path: str
    skip: str | None
    action: str  # train (then eval), eval_vllm or merge
    slug: str
    model: dict[str, Any] = field(default_factory=dict)  # model.* of a training path
    lora: dict[str, Any] = field(default_factory=dict)
    optim: str = "adamw_torch"
    # The paths whose trained run eval_vllm and merge work on: the first that trained.
    uses: tuple[str, ...] = ()


def planned_paths(hw: Hardware, has: dict[str, bool]) -> list[tuple[str, str | None]]:
    """Every path the check knows, in the order it runs them, with the reason it is skipped on
    this machine (None: it runs). `has` says which of unsloth, vllm, bitsandbytes and the vLLM
    bitsandbytes plugin (vllm_4bit) are installed, as `hardware.installed_packages` does."""
    return [(p.path, p.skip) for p in _paths(hw, has)]


def _paths(hw: Hardware, has: dict[str, bool]) -> list[_CheckPath]:
    native = choose_precision("auto", hw)[0]
    trl_native, trl_4bit = f"trl {native}", "trl 4-bit (bitsandbytes)"
    unsloth_16, unsloth_4bit = "unsloth 16-bit", "unsloth 4-bit"
    # The seed recipe's geometry where it matters: 4-bit base weights with the 8-bit optimizer and
    # Unsloth's offloaded checkpointing, fast_inference on top of 4-bit weights.
    recipe_lora = {"gradient_checkpointing": "unsloth"}
    recipe_optim = "adamw_8bit" if has.get("bitsandbytes") else "adamw_torch"
    # 4-bit weights through vLLM >= 0.28 need vllm-bnb-plugin besides bitsandbytes
    # (unsloth_zoo/vllm_utils.py raises "pip install vllm-bnb-plugin"; hardware.installed_packages
    # sets vllm_4bit): without it the fast_inference path is checked on 16-bit weights.
    fast_quant = "4bit" if has.get("bitsandbytes") and has.get("vllm_4bit") else "none"
    no_vllm = _needs(hw, has, "vllm")
    fast_label = f"unsloth fast_inference (vLLM, {'4-bit' if fast_quant == '4bit' else '16-bit'})"
    # Unsloth's paths first, the seed recipe's (4-bit, fast_inference) leading, so that a budget
    # that runs out leaves out the fallbacks rather than what most users run. A merge comes
    # after both runs it can start from.
    return [
        _CheckPath(
            unsloth_4bit,
            _needs(hw, has, "unsloth", "bitsandbytes"),
            "train",
            "unsloth-4bit",
            {**_UNSLOTH, "quantization": "4bit"},
            recipe_lora,
            optim=recipe_optim,
        ),
        _CheckPath(
            fast_label,
            _needs(hw, has, "unsloth", "vllm"),
            "train",
            "unsloth-fast-inference",
            {
                **_UNSLOTH,
                "quantization": fast_quant,
                "fast_inference": True,
                "max_lora_rank": 8,
                "gpu_memory_utilization": 0.3,
            },
            recipe_lora,
            optim=recipe_optim,
        ),
        _CheckPath(unsloth_16, _needs(hw, has, "unsloth"), "train", "unsloth-16bit", _UNSLOTH),
        _CheckPath(
            "merge (Unsloth)",
            _needs(hw, has, "unsloth"),
            "merge",
            "merge-unsloth",
            uses=(unsloth_4bit, unsloth_16),
        ),
        _CheckPath(trl_native, None, "train", "trl-native", {"backend": "trl"}),
        _CheckPath(
            trl_4bit,
            _needs(hw, has, "bitsandbytes"),
            "train",
            "trl-4bit",
            {"backend": "trl", "quantization": "4bit"},
            optim=recipe_optim,
        ),
        _CheckPath("eval vLLM engine", no_vllm, "eval_vllm", "eval-vllm", uses=(trl_native,)),
        # A merge of a 4-bit run into a 16-bit base first: what users do after the seed recipe.
        _CheckPath("merge (PEFT)", None, "merge", "merge-peft", uses=(trl_4bit, trl_native)),
    ]


def _needs(hw: Hardware, has: dict[str, bool], *packages: str) -> str | None:
    """Why a GPU path cannot run here, or None."""
    if hw.device != "cuda":
        why = f"needs a CUDA GPU, not {hw.describe()}"
        # Unsloth installed on a CPU falls back to stock transformers (unsloth/_cpu_init.py):
        # what runs then is not its GPU path, which is what this check is for.
        return why
    missing = [p for p in packages if not has.get(p)]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        return f"{' and '.join(missing)} {verb} not installed: {INSTALL}"
    return None


def run_checks(
    console: Console,
    workdir: Path,
    hw: Hardware,
    budget_s: float = CHECK_BUDGET_S,
    clock: Callable[[], float] = time.monotonic,
) -> list[CheckRow]:
    """Run every path `planned_paths` allows here, one child process per step, and return one row
    per path, all within BUDGET_S seconds (by CLOCK). WORKDIR holds the tiny model, the configs,
    runs, evals, merges and one log per step; a second check in the same WORKDIR replaces the
    first one's files."""
    deadline = clock() + budget_s
    from grpo_cli.training.models import quiet_progress_bars

    workdir.mkdir(parents=True, exist_ok=True)
    model = workdir / TINY_MODEL
    quiet_progress_bars()  # saving the tiny model would draw a bar between the check's lines
    write_tiny_model(model, overwrite=True, sizes=CHECK_MODEL_SIZES)
    console.print(f"check: tiny model in {model}; logs in {workdir / 'logs'}", markup=False)
    native = choose_precision("auto", hw)[0]
    trained: dict[str, Path] = {}  # path -> its run directory, once training passed
    configs: dict[str, Path] = {}
    ran: set[str] = set()
    rows: list[CheckRow] = []
    for spec in _paths(hw, hardware.installed_packages()):
        if spec.skip is not None:
            row = CheckRow(spec.path, "skipped", spec.skip, None)
        elif deadline - clock() < MIN_STEP_S:
            # before the run it would start from: with the budget spent, that is the reason
            row = CheckRow(spec.path, "skipped", BUDGET_SPENT, None)
        elif spec.uses and not any(u in trained for u in spec.uses):
            row = CheckRow(spec.path, "skipped", _no_source(spec.uses, ran), None)
        else:
            source = next((u for u in spec.uses if u in trained), None)
            steps = _steps(spec, workdir, model, native, source, trained, configs)
            row = _run_path(spec, steps, workdir, trained, deadline, clock)
            ran.add(spec.path)
        rows.append(row)
        _report(console, row)
    return rows


def _no_source(uses: tuple[str, ...], ran: set[str]) -> str:
    """Why a path that works on another path's run has none: the ones that ran and failed, or
    (when none of them ran: skipped, or the budget spent) that none ran."""
    tried = [u for u in uses if u in ran]
    if tried:
        return f"{' or '.join(tried)} did not train"
    return f"{' or '.join(uses)} did not run"


def _run_path(
    spec: _CheckPath,
    steps: Iterator[tuple[str, list[str]]],
    workdir: Path,
    trained: dict[str, Path],
    deadline: float,
    clock: Callable[[], float],
) -> CheckRow:
    started = clock()
    run = run_dir(workdir, spec)
    for label, args in steps:
        left = deadline - clock()
        if left < MIN_STEP_S:
            return CheckRow(spec.path, "skipped", f"before its {label}: {BUDGET_SPENT}", None)
        timeout = min(STEP_TIMEOUT_S, left)
        error = run_cli(args, workdir / "logs" / f"{spec.slug}-{label}.log", timeout, workdir)
        if error is None and label == "train":
            error = unchanged_adapter(run / "adapter")
            if error is not None:
                return CheckRow(spec.path, "failed", error, clock() - started)
        if error is not None:
            if timeout < STEP_TIMEOUT_S and clock() >= deadline:
                # stopped by the budget, not by a hang of its own: not the path's failure
                why = f"stopped during its {label}: {BUDGET_SPENT}"
                return CheckRow(spec.path, "skipped", why, clock() - started)
            return CheckRow(spec.path, "failed", error, clock() - started)
        if label == "train":
            trained[spec.path] = run
    return CheckRow(spec.path, "passed", "", clock() - started)


def _steps(
    spec: _CheckPath,
    workdir: Path,
    model: Path,
    native: str,
    source: str | None,
    trained: dict[str, Path],
    configs: dict[str, Path],
) -> Iterator[tuple[str, list[str]]]:
    """(step name, CLI arguments) of a path, generated lazily: eval's arguments name the run
    that training has just written."""
    evals = workdir / "eval"
    if spec.action == "train":
        config = write_config(workdir, spec, model)
        configs[spec.path] = config
        yield "train", ["train", str(config), "--overwrite"]
        yield "eval", eval_args(config, trained[spec.path], evals / spec.slug, "transformers")
    elif spec.action == "eval_vllm":
        assert source is not None
        yield "eval", eval_args(configs[source], trained[source], evals / spec.slug, "vllm")
    else:
        assert source is not None
        merged = workdir / "merged" / spec.slug
        # The run's own precision: fp32 on CPU reproduces the adapter exactly, and a GPU merge
        # writes what `grpo merge` ships there.
        run = trained[source]
        yield "merge", ["merge", str(run), "-o", str(merged), "--dtype", native, "--force"]
        # The merged folder must load and generate, as a user's next command would.
        yield "eval", eval_args(configs[source], merged, evals / spec.slug, "transformers")


def eval_args(config: Path, model: Path, output: Path, engine: str) -> list[str]:
    """A short greedy eval of MODEL on the synthetic test rows; earlier predictions in OUTPUT
    are removed, since eval would reuse them instead of generating."""
    shutil.rmtree(output, ignore_errors=True)
    return [
        "eval",
        str(config),
        "-m",
        str(model),
        "--limit",
        str(EVAL_ROWS),
        "--max-new-tokens",
        str(EVAL_TOKENS),
        "--batch-size",
        str(EVAL_ROWS),
        "--engine",
        engine,
        "--output",
        str(output),
    ]


def sampled_tokens(
    completions: list[Any], completion_ids: list[list[int]] | None = None, **kwargs: Any
) -> list[float]:
    """The check's own reward: a number from the sampled tokens, so that two completions of one
    prompt almost never score alike. With the built-in rewards alone, every completion of the
    tiny model ran to the length limit on an H200 and got the same reward: zero advantages,
    zero gradients, and a path whose LoRA weights never received a gradient passed. The check
    reads the adapter back (unchanged_adapter) to see that they moved."""
    if completion_ids is None:  # grpo score and eval pass text alone
        completion_ids = [[ord(c) for c in str(text)] for text in completions]
    return [sum(ids) % 97 / 97 for ids in completion_ids]


def check_config(spec: _CheckPath, model: Path, run: Path) -> dict[str, Any]:
    """The config of a training path: configs/smoke_cpu.yaml cut to 2 steps of 2 prompts x 2
    completions on local synthetic rows, with the path's model settings; its rewards include
    the check's own (sampled_tokens), and its run goes to RUN."""
    return {
        "model": {"name": str(model), "max_seq_length": 256, **spec.model},
        "lora": {"r": 8, "alpha": 16, "gradient_checkpointing": False, **spec.lora},
        "data": {"source": "synthetic", "limit": 16, "heldout_size": 4, "prompt_style": "xml"},
        "rewards": ["xml_count", "correctness", f"{__name__}:sampled_tokens"],
        "training": {
            "learning_rate": 1.0e-4,
            "warmup_ratio": 0.0,
            "optim": spec.optim,
            "prompts_per_step": 2,
            "num_generations": 2,
            "max_prompt_length": 192,
            "max_completion_length": 16,
            "max_steps": 2,
            "save_steps": 2,
            "logging_steps": 1,
        },
        "logging": {"report_to": "none", "completion_samples": 0},
        "output": {"dir": str(run.parent), "run_name": run.name},
    }


def run_dir(workdir: Path, spec: _CheckPath) -> Path:
    """Where a training path's `grpo train` writes its run: its config's output.* say so."""
    return workdir / "runs" / spec.slug


def write_config(workdir: Path, spec: _CheckPath, model: Path) -> Path:
    import yaml

    path = workdir / "configs" / f"{spec.slug}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    config = check_config(spec, model, run_dir(workdir, spec))
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def unchanged_adapter(adapter: Path) -> str | None:
    """None when training moved the LoRA weights in ADAPTER, else why not in one line. PEFT
    starts every lora_B at zero, so a lora_B that is all zero after the steps never got a
    gradient. PEFT's +0.0 is zero bytes in every float format, so the bytes tell, without
    torch in doctor's process (files.safetensors_header)."""
    path = adapter / "adapter_model.safetensors"
    if not path.is_file():
        return f"training wrote no adapter: {path} is missing"
    try:
        header, start = safetensors_header(path)
    except SafetensorsDamage as exc:
        return f"{path.name} {exc}"
    ranges = [v["data_offsets"] for k, v in header.items() if ".lora_B." in k]
    if not ranges:
        return f"{path.name} holds no lora_B weights"
    with path.open("rb") as file:
        for begin, end in ranges:
            file.seek(start + begin)
            if any(file.read(end - begin)):
                return None
    return (
        "the adapter's lora_B weights are still all zero after training: "
        "no gradient reached the LoRA weights"
    )


def run_cli(
    args: list[str], log: Path, timeout: float = STEP_TIMEOUT_S, cwd: Path | None = None
) -> str | None:
    """Run `grpo ARGS` in a child process, its output in LOG; None when it exits 0, else the
    reason in one line. The child gets a session of its own so that a timeout also ends the
    processes it started (vLLM's engine core); being out of the terminal's process group, it
    would miss a Ctrl-C, so an interrupted check ends it too. It runs in CWD (the check's
    folder), so what it writes where it stands goes with the check's folder: Unsloth compiles
    into ./unsloth_compiled_cache (unsloth_zoo/compiler.py, UNSLOTH_COMPILE_LOCATION), which
    would otherwise stay in the user's directory, and ./rewards/ of the user's project, whose
    plugins every command loads, is no part of a check of the machine."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(
            child_command(args),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env(),
            cwd=cwd,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _end_session(proc)
            return f"{args[0]} timed out after {timeout:.0f} s"
        except BaseException:
            _end_session(proc)
            raise
    if code == 0:
        return None
    return failure_detail(log.read_text(encoding="utf-8", errors="replace"), code)


def _end_session(proc: subprocess.Popen[bytes]) -> None:
    """Kill a child and every process of its session."""
    with contextlib.suppress(ProcessLookupError):  # it ended on its own just now
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def child_command(args: list[str]) -> list[str]:
    """The real CLI of this installation, as a user would run it."""
    return [sys.executable, "-m", "grpo_cli", *args]


def child_env() -> dict[str, str]:
    """The environment of a check's child: offline (the tiny model and synthetic rows are local,
    so nothing may reach the Hub), no tracker, and this grpo_cli importable."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        WANDB_MODE="disabled",
        PYTHONUNBUFFERED="1",
        TOKENIZERS_PARALLELISM="false",
    )
    return env


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)(:|$)")


def failure_detail(output: str, code: int) -> str:
    """One line saying why a child failed: grpo's `Error:` line (with the first problem when it
    lists several), else the last exception line of a traceback, else the exit code or signal."""
    lines = [line.strip() for line in output.splitlines()]
    for i in reversed(range(len(lines))):
        if lines[i].startswith("Error:"):
            text = lines[i].removeprefix("Error:").strip()
            if text.endswith(":") and i + 1 < len(lines) and lines[i + 1]:
                text = f"{text} {lines[i + 1]}"
            return text[:300]
    for line in reversed(lines):
        if _EXCEPTION_LINE.match(line):
            return line[:300]
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        kill = " (out of memory?)" if name == "SIGKILL" else ""
        return f"killed by {name}{kill}"
    last = next((line for line in reversed(lines) if line), "")
    return (f"exit code {code}: {last}" if last else f"exit code {code}")[:300]


def _report(console: Console, row: CheckRow) -> None:
    took = f" in {row.seconds:.1f} s" if row.seconds is not None else ""
    detail = f": {row.detail}" if row.detail else ""
    console.print(f"check {row.path}: {row.status}{took}{detail}", markup=False)
