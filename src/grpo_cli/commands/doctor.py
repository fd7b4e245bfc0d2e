"""`grpo doctor [CONFIG] [--check]`: before an hour of downloads, whether this machine and this
config will work.

the machine (nvidia-smi, no torch) and the library stack, while the Hub is asked in a thread ->
with CONFIG: the checks `grpo train` runs before any download (torch and trl imported, unsloth
when it is the backend), its model and dataset in the local cache, an estimate of peak GPU
memory on the common GPUs -> the problems, each with its fix -> with --check: a short real run
of each training path this GPU supports.
The work is done in `grpo_cli.hardware`, `grpo_cli.stack`, `grpo_cli.hub_access`,
`grpo_cli.memory` and `grpo_cli.selfcheck`.

Exit code: 0 when nothing is wrong, 1 when the machine, the stack or the config's settings on
this machine have a problem (each listed with its fix) or a --check path failed, 2 for a config
that does not load (as in every command).
"""

from __future__ import annotations

import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from grpo_cli.config import LoadedConfig, load_config
from grpo_cli.config.loader import config_error
from grpo_cli.config.yamlio import display_path
from grpo_cli.hardware import (
    BF16_NEEDS,
    NvidiaSmi,
    Preflight,
    choose_tracker,
    preflight,
    probe_nvidia_smi,
    torch_cuda_build,
)
from grpo_cli.stack import StackRow, stack_report

if TYPE_CHECKING:
    from grpo_cli.config.schema import GrpoConfig
    from grpo_cli.memory import GpuFit, MemoryEstimate
    from grpo_cli.selfcheck import CheckRow

HUB_TIMEOUT = 3.0  # seconds the Hub is given to answer
# Without a config the whole report takes under 2 s; a Hub slower than this to answer one
# request would be as slow to download from.
QUICK_HUB_TIMEOUT = 1.5
TORCH_INSTALL = "https://pytorch.org/get-started/locally/"


@dataclass(frozen=True)
class Finding:
    """One thing that stops a run here: where to change it (a config key with its file and line,
    or a library / the machine) and what to do."""

    where: str  # a config key, a library, or the driver
    message: str
    location: str | None = None  # the config file and line that set the key


@dataclass(frozen=True)
class HubState:
    reachable: bool
    reason: str
    token: bool


def doctor(config_path: Path | None, overrides: list[str], *, check: bool = False) -> int:
    """Print the report; return the exit code (0 fine, 1 a problem listed)."""
    loaded = load_config(config_path, overrides) if config_path is not None else None
    out = Console(highlight=False)
    timeout = HUB_TIMEOUT if loaded is not None else QUICK_HUB_TIMEOUT
    # A firewalled Hub takes its whole timeout to say no: asked meanwhile, it costs no time.
    with ThreadPoolExecutor(max_workers=1) as pool:
        hub_future = pool.submit(_hub_state, timeout)
        smi, cuda_build, stack = probe_nvidia_smi(), torch_cuda_build(), stack_report()
        print_machine(out, smi, cuda_build)
        print_stack(out, stack)
        plan = preflight(loaded.config) if loaded is not None else None  # imports torch
        hub = hub_future.result()
    findings = machine_findings(smi, cuda_build, stack) + stack_findings(stack)
    cached = cache_states(loaded.config, hub) if loaded is not None else []
    print_hub(out, hub, cached)
    if loaded is not None and plan is not None:
        print_plan(out, loaded, plan)
        print_memory(out, loaded.config, plan)
        if not findings:
            findings += unseen_gpu(smi, plan)
        findings += config_findings(loaded, plan, cached, construction_checks(loaded, plan))
        findings += server_findings(loaded, overrides)
    print_findings(out, findings, loaded)
    failed = run_self_check(out) if check else False
    return 1 if findings or failed else 0


def _hub_state(timeout: float) -> HubState:
    from grpo_cli.hub_access import hub_reachable, token_present

    reachable, reason = hub_reachable(timeout=timeout)
    return HubState(reachable, reason, token_present())


# --- the machine and the stack, read without importing torch ------------------------------------


def machine_findings(
    smi: NvidiaSmi, cuda_build: str | None, stack: list[StackRow]
) -> list[Finding]:
    if smi.error is not None and smi.error.startswith("nvidia-smi failed"):
        return [
            Finding(
                "driver",
                f"{smi.error}: the NVIDIA driver is missing, broken or too old; reinstall or "
                "update it, and reboot",
            )
        ]
    torch_row = next((r for r in stack if r.name == "torch"), None)
    torch_version = torch_row.installed if torch_row is not None else None
    if smi.hardware.device != "cuda" or torch_version is None:
        return []
    gpu = smi.hardware.gpu_name
    if cuda_build is None:
        return [
            Finding(
                "torch",
                f"torch {torch_version} is a CPU build and cannot use the {gpu}: install a CUDA "
                f"build of torch{_driver_limit(smi)} ({TORCH_INSTALL})",
            )
        ]
    # CUDA's minor version compatibility runs a 12.8 runtime on any 12.x driver; only a newer
    # major version than the driver's cannot start (docs.nvidia.com/deploy/cuda-compatibility).
    if smi.driver_cuda and _major(cuda_build) > _major(smi.driver_cuda):
        return [
            Finding(
                "driver",
                f"torch {torch_version} is built for CUDA {cuda_build}, the NVIDIA driver "
                f"{smi.driver} runs CUDA up to {smi.driver_cuda}: update the driver, or install "
                f"a torch built for CUDA {_major(smi.driver_cuda)} ({TORCH_INSTALL})",
            )
        ]
    return []


def unseen_gpu(smi: NvidiaSmi, plan: Preflight) -> list[Finding]:
    """A GPU nvidia-smi sees and torch does not, for a cause the stack does not show."""
    if smi.hardware.device != "cuda" or plan.hardware.device == "cuda":
        return []
    return [
        Finding(
            "torch",
            f"nvidia-smi sees the {smi.hardware.gpu_name} but torch cannot use it, so training "
            "would run on the CPU: check CUDA_VISIBLE_DEVICES, and that nvidia-smi shows no "
            "driver error",
        )
    ]


def _driver_limit(smi: NvidiaSmi) -> str:
    return f" for CUDA {smi.driver_cuda} or older" if smi.driver_cuda else ""


def _major(version: str) -> int:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else 0


def stack_findings(stack: list[StackRow]) -> list[Finding]:
    """Libraries at a version we do not test with. A missing optional one is not a problem
    of the machine: when the config needs it, the preflight names it with its config key."""
    return [
        Finding(row.name, _stack_problem(row))
        for row in stack
        if not row.ok and (row.required or row.installed is not None)
    ]


def _stack_problem(row: StackRow) -> str:
    found = "not installed" if row.installed is None else f"{row.installed} is installed"
    fix = f": {row.fix}" if row.fix else ""
    return f"{found}, grpo-cli is tested with {row.tested}{fix}"


def print_machine(out: Console, smi: NvidiaSmi, cuda_build: str | None) -> None:
    table = _pairs("machine")
    hw = smi.hardware
    if hw.device != "cuda":
        table.add_row("GPU", escape(smi.error or "none"))
    else:
        count = f" x{hw.gpu_count}" if hw.gpu_count > 1 else ""
        table.add_row("GPU", escape(f"{hw.gpu_name}{count}"))
        memory = f"{hw.gpu_memory_gib:.1f} GiB" if hw.gpu_memory_gib is not None else "unknown"
        table.add_row("memory", memory)
        cap = hw.capability
        table.add_row("compute capability", f"{cap[0]}.{cap[1]}" if cap else "unknown")
        table.add_row("native bf16", "yes" if hw.bf16 else f"no (needs {BF16_NEEDS})")
        table.add_row("fp8", "yes" if hw.fp8 else "no (needs compute capability 8.9)")
        driver = smi.driver or "unknown"
        if smi.driver_cuda:
            driver += f" (runs CUDA up to {smi.driver_cuda})"
        table.add_row("NVIDIA driver", escape(driver))
    table.add_row("CUDA runtime (torch)", cuda_build or "none: torch is a CPU build or absent")
    out.print(table)


def print_stack(out: Console, stack: list[StackRow]) -> None:
    table = Table(title="stack", title_justify="left")
    for column in ("library", "installed", "tested with", "status"):
        table.add_column(column, no_wrap=column != "tested with", overflow="fold")
    for row in stack:
        if row.installed is None:
            state = "missing" if row.required else "optional"
        else:
            state = "ok" if row.ok else "mismatch"
        table.add_row(row.name, row.installed or "-", escape(row.tested), state)
    out.print(table)


# --- the Hub and the local cache --------------------------------------------------------------


def print_hub(out: Console, hub: HubState, cached: list[CacheState]) -> None:
    table = _pairs("Hugging Face Hub")
    table.add_row("Hub", escape(f"{'reachable' if hub.reachable else 'unreachable'}: {hub.reason}"))
    table.add_row("token", "present" if hub.token else "none (gated models need HF_TOKEN)")
    if not hub.reachable and not any(state.fix for state in cached):  # else under problems
        table.add_row(
            "offline use",
            "models and datasets from local folders, or cached ones with HF_HUB_OFFLINE=1",
        )
    for state in cached:
        table.add_row(state.key, escape(f"{state.name}: {state.state}"))
    out.print(table)


@dataclass(frozen=True)
class CacheState:
    """Where the files of the config's model or dataset come from on this machine."""

    key: str
    name: str
    state: str
    fix: str | None = None  # set when a run cannot get the files here: what to do
    reason: str = ""  # why the Hub cannot be asked, with `fix`


def cache_states(cfg: GrpoConfig, hub: HubState) -> list[CacheState]:
    """The rule `grpo train` refuses by (hub_access.refuse_unreachable), item by item."""
    from grpo_cli.hub_access import cached_as, config_items, is_hub_id, offline_error

    states = []
    for item in config_items(cfg):
        if not is_hub_id(item.name, item.kind):
            local = "a local folder" if item.kind == "model" else "a local file or folder"
            where = "generated here, no download" if item.name == "synthetic" else local
            states.append(CacheState(item.key, item.name, where))
        elif (found := cached_as(item)) is not None:
            copy = f" (Unsloth's copy, {found})" if found != item.name else ""
            states.append(CacheState(item.key, item.name, f"in the local cache{copy}"))
        elif hub.reachable:
            states.append(
                CacheState(item.key, item.name, "not cached yet: downloaded on first use")
            )
        else:
            hint = offline_error(item.name, item.kind, item.key, hub.reason).hint or ""
            state = "not in the local cache, and the Hub is unreachable"
            states.append(CacheState(item.key, item.name, state, hint, hub.reason))
    return states


# --- the config on this machine -----------------------------------------------------------------


def construction_checks(loaded: LoadedConfig, plan: Preflight) -> list[tuple[str, str]]:
    """What `grpo train` refuses once the machine's checks pass (trl_args.check_construction):
    the backend's GRPOConfig built from the config. Unsloth's own config class rewrites
    settings, so it is imported first, as train does; where it cannot be, TRL's class (which
    Unsloth's extends) still says which settings no backend takes."""
    import contextlib
    import io

    from grpo_cli.errors import GrpoError
    from grpo_cli.training.trl_args import construction_problems

    problems: list[tuple[str, str]] = []
    backend = plan.backend
    if backend == "unsloth" and plan.has.get("unsloth"):
        from grpo_cli.training.models import import_unsloth_first

        try:
            with contextlib.redirect_stdout(io.StringIO()):  # its banner is not the report's
                import_unsloth_first()
        except GrpoError as exc:
            problems.append(("model.backend", with_fix(exc.message, exc.hint or "")))
            backend = "trl"
    found = construction_problems(
        loaded.config, backend, plan.precision, plan.hardware.device, plan.tracker
    )
    return problems + [(key, with_fix(message, found.hint)) for key, message in found.problems]


def with_fix(message: str, fix: str) -> str:
    """A refusal's message and its hint as one sentence, or two when the message ends one."""
    if not fix:
        return message
    if message.endswith((".", "?", "!")):
        return f"{message} {fix[:1].upper()}{fix[1:]}."
    return f"{message}: {fix}"


def config_findings(
    loaded: LoadedConfig,
    plan: Preflight,
    cached: list[CacheState],
    construction: list[tuple[str, str]] | None = None,
) -> list[Finding]:
    """The settings that stop `grpo train` here, files the Hub cannot send included, each at the
    file and line that set it, in the config's order."""
    # train stops at the machine's refusals before it builds GRPOConfig: a key refused there
    # is fixed first (on a CPU, Unsloth's fallback rewrites the adamw_8bit preflight refuses)
    refused = {key for key, _ in plan.problems}
    problems = plan.problems + [p for p in construction or [] if p[0] not in refused]
    located = config_error(loaded, problems).problems if problems else []
    findings = [Finding(p.key, p.message, p.location) for p in located]
    offline = [c for c in cached if c.fix is not None]
    return ([offline_finding(loaded, offline)] if offline else []) + findings


def server_findings(loaded: LoadedConfig, overrides: list[str]) -> list[Finding]:
    """vllm.mode server: the server `grpo train` would refuse (vllm_server.server_problem)."""
    from grpo_cli.vllm_server import server_problem

    error = server_problem(loaded.config, display_path(loaded.path), overrides)
    if error is None:
        return []
    (located,) = config_error(loaded, [("vllm.mode", "")]).problems
    message = error.message.removeprefix("vllm.mode server: ")  # the finding names its key
    return [Finding("vllm.mode", with_fix(message, error.hint or ""), located.location)]


def offline_finding(loaded: LoadedConfig, offline: list[CacheState]) -> Finding:
    """The model and dataset the Hub cannot send, in one paragraph: the Hub table above says
    each one's state, and the ways on that they share (the network, HF_HUB_OFFLINE) are said
    once."""
    located = config_error(loaded, [(c.key, "") for c in offline]).problems
    names = " and ".join(c.name for c in offline)
    said = f"not in the local cache, and the Hugging Face Hub cannot be asked ({offline[0].reason})"
    if len(offline) == 1:
        message = f"{names} is {said}: {offline[0].fix}"
    else:
        ways = [(c.key, (c.fix or "").split("; or ")) for c in offline]
        shared = [w for w in ways[0][1] if all(w in other for _, other in ways[1:])]
        own = [f"{key}: {'; or '.join(w for w in mine if w not in shared)}." for key, mine in ways]
        both = [f"Or, for both: {'; or '.join(shared)}."] if shared else []
        message = " ".join([f"{names} are {said}.", *own, *both])
    return Finding(
        " and ".join(p.key for p in located), message, "\n".join(p.location for p in located)
    )


def print_plan(out: Console, loaded: LoadedConfig, plan: Preflight) -> None:
    table = _pairs(f"grpo train {display_path(loaded.path)} on this machine")
    table.add_row("runs on", escape(plan.hardware.describe()))
    table.add_row("backend", escape(f"{plan.backend} ({plan.backend_reason})"))
    table.add_row("precision", escape(f"{plan.precision} ({plan.precision_reason})"))
    # the tracker's reason, when auto chose it, is the preflight's note on it: said once, here
    tracker_note = choose_tracker(loaded.config.logging.report_to, plan.has)[1]
    if tracker_note is None:
        table.add_row("tracker", escape(f"{plan.tracker} (logging.report_to)"))
    else:
        table.add_row("tracker", escape(tracker_note.removeprefix("logging: ")))
    for note in plan.notes:
        if note != tracker_note:
            table.add_row("note", escape(note.removeprefix("note: ")))
    out.print(table)


def print_memory(out: Console, cfg: GrpoConfig, plan: Preflight) -> None:
    from rich.padding import Padding

    from grpo_cli.memory import estimate, fit_table, gpu_run_settings

    precision, backend = plan.precision, plan.backend
    if plan.hardware.device != "cuda":  # estimate the run this config makes on a GPU
        precision, backend = gpu_run_settings(cfg, plan.has.get("unsloth", False))
        out.print(f"  (estimated for a GPU run: backend {backend}, {precision})")
    est = estimate(cfg, precision, backend)
    out.print(memory_table(est))
    for note in est.notes:
        out.print(Padding(escape(note), (0, 0, 0, 2)))
    out.print(fit_view(fit_table(est)))


def memory_table(est: MemoryEstimate) -> Table:
    table = Table(title="peak GPU memory, an estimate", title_justify="left")
    table.add_column("part")
    table.add_column("GiB", justify="right")
    for label, gib in est.parts:
        table.add_row(escape(label), f"{gib:.1f}" if gib >= 0.05 or gib == 0 else "<0.1")
    table.add_section()
    total = "total, vLLM at its least (estimate)" if est.colocated else "total (estimate)"
    table.add_row(total, f"{est.total_gib:.1f}")
    return table


def fit_view(fits: list[GpuFit]) -> Table:
    table = Table(title="on the common GPUs (estimate)", title_justify="left")
    table.add_column("GPU", no_wrap=True)
    table.add_column("memory", justify="right", no_wrap=True)  # as torch reports it
    table.add_column("verdict")
    misfits = any(not fit.fits for fit in fits)
    if misfits:
        table.add_column("to make it fit")
    for fit in fits:
        cells = [escape(fit.gpu), f"{fit.memory_gib:.1f} GiB", escape(fit.verdict)]
        if misfits:
            cells.append(escape("; ".join(fit.suggestions)) if not fit.fits else "")
        table.add_row(*cells)
    return table


# --- the verdict --------------------------------------------------------------------------------


def print_findings(out: Console, findings: list[Finding], loaded: LoadedConfig | None) -> None:
    if not findings:
        if loaded is None:
            out.print("No problems found with this machine and its libraries.")
        else:
            out.print(f"No problems found: grpo train {display_path(loaded.path)} can start here.")
        return
    table = Table(title=f"problems ({len(findings)})", title_justify="left", show_lines=True)
    table.add_column("where", overflow="fold")
    table.add_column("problem and fix")
    for finding in findings:
        where = escape(finding.where)
        if finding.location:
            where += f"\n[dim]{escape(finding.location)}[/]"
        table.add_row(where, escape(finding.message))
    out.print(table)
    if loaded is not None:
        out.print(f"grpo train {display_path(loaded.path)} would stop here: fix these first.")


def run_self_check(out: Console) -> bool:
    """The real check on this GPU; True when a path failed, or one this machine supports was
    left out by the budget."""
    from grpo_cli.hardware import probe
    from grpo_cli.selfcheck import run_checks

    workdir = Path(tempfile.mkdtemp(prefix="grpo-doctor-check-"))
    rows = run_checks(out, workdir, probe())
    out.print(check_table(rows))
    counts = {s: sum(row.status == s for row in rows) for s in ("passed", "failed", "skipped")}
    unreached = sum(row.unreached for row in rows)
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    if unreached:
        # A path this machine supports that the budget left out is not known to work: a script
        # that reads the exit code must not take it for checked.
        summary += f" ({unreached} of them for the budget: not checked, exit code 1)"
    out.print("--check: " + summary)
    if counts["failed"]:  # each step's whole output, for the report or the fix
        out.print(f"the logs of every step are in {workdir / 'logs'}", markup=False)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return counts["failed"] > 0 or unreached > 0


def check_table(rows: list[CheckRow]) -> Table:
    table = Table(title="grpo doctor --check", title_justify="left")
    table.add_column("path")
    table.add_column("result")
    table.add_column("seconds", justify="right")
    for row in rows:
        result = row.status if row.status == "passed" else f"{row.status}: {row.detail}"
        seconds = f"{row.seconds:.1f}" if row.seconds is not None else "-"
        table.add_row(escape(row.path), escape(result), seconds)
    return table


def _pairs(title: str) -> Table:
    table = Table(title=escape(title), title_justify="left", show_header=False)
    table.add_column("")
    table.add_column("")
    return table
