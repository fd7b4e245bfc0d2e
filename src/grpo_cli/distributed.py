"""How many processes train this run, which one this is, and how they agree.

Read from the environment the launchers set (torchrun and `accelerate launch` both export
WORLD_SIZE, RANK and LOCAL_RANK to each process; accelerate adds ACCELERATE_*), so asking costs
no import. The collective steps (a barrier, one process's decision handed to the others, a stop
flag every process sees) import torch only when there is more than one process.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from grpo_cli.errors import INTERRUPTED_EXIT, USER_ERROR_EXIT, GrpoError

T = TypeVar("T")

LAUNCHERS = ("none", "torchrun", "accelerate")
MODES = ("none", "ddp", "zero2", "zero3", "fsdp")


@dataclass(frozen=True)
class Processes:
    world_size: int
    rank: int
    local_rank: int
    launcher: str  # none, torchrun or accelerate
    mode: str  # none (one process), ddp, zero2, zero3 or fsdp

    @property
    def is_main(self) -> bool:
        """The process that writes the run directory, prints and draws the progress bar."""
        return self.rank == 0

    @property
    def several(self) -> bool:
        return self.world_size > 1

    def as_dict(self) -> dict[str, Any]:
        """What env.json records."""
        return {"world_size": self.world_size, "launcher": self.launcher, "mode": self.mode}


def current(env: Mapping[str, str] | None = None) -> Processes:
    """This process's place, from ENV (os.environ by default)."""
    env = os.environ if env is None else env
    world_size = _int(env, "WORLD_SIZE", 1)
    # accelerate's launchers export ACCELERATE_MIXED_PRECISION and ACCELERATE_DYNAMO_BACKEND to
    # every process (accelerate/utils/launch.py, prepare_*_env); torchrun exports
    # TORCHELASTIC_RUN_ID (torch/distributed/elastic/agent/server/api.py)
    if "ACCELERATE_MIXED_PRECISION" in env or "ACCELERATE_DYNAMO_BACKEND" in env:
        launcher = "accelerate"
    elif "TORCHELASTIC_RUN_ID" in env or world_size > 1:
        launcher = "torchrun"
    else:
        launcher = "none"
    return Processes(
        world_size=world_size,
        rank=_int(env, "RANK", 0),
        local_rank=_int(env, "LOCAL_RANK", 0),
        launcher=launcher,
        mode=_mode(env, world_size),
    )


def _mode(env: Mapping[str, str], world_size: int) -> str:
    # accelerate/utils/launch.py: prepare_deepspeed_cmd_env sets ACCELERATE_USE_DEEPSPEED and
    # ACCELERATE_DEEPSPEED_ZERO_STAGE; prepare_multi_gpu_env sets ACCELERATE_USE_FSDP
    if env.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        return f"zero{env.get('ACCELERATE_DEEPSPEED_ZERO_STAGE', '2')}"
    if env.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        return "fsdp"
    return "ddp" if world_size > 1 else "none"


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    try:
        return int(env.get(key, default))
    except ValueError:
        return default


def is_main() -> bool:
    return current().is_main


def start() -> None:
    """Join the other processes before anything is decided, when there are several. The group
    is made the way accelerate would make it, which then reuses it (accelerate/state.py,
    PartialState.__init__: `if not torch.distributed.is_initialized()`): gloo without a GPU
    (or with accelerate's --cpu); on GPUs NCCL for the training and gloo for the small
    messages below (a mixed backend)."""
    here = current()
    if not here.several:
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true"
    if cpu or not torch.cuda.is_available():
        # accelerate names each CPU process's device cpu:<local rank> (accelerate/state.py,
        # set_device), and the Trainer maps a resumed optimizer state onto args.device when
        # several processes train (transformers/trainer.py, _load_optimizer_and_scheduler),
        # which torch.load cannot do for "cpu:0": --resume would fail. Plain "cpu" is read
        # first (PartialState.__init__, ACCELERATE_TORCH_DEVICE).
        os.environ.setdefault("ACCELERATE_TORCH_DEVICE", "cpu")
        dist.init_process_group(backend="gloo")
        return
    torch.cuda.set_device(here.local_rank)
    dist.init_process_group(backend="cpu:gloo,cuda:nccl")


def _group_ready() -> bool:
    if not current().several:
        return False
    import torch.distributed as dist

    return bool(dist.is_available() and dist.is_initialized())


def barrier() -> None:
    """Wait until every process got here (nothing to wait for with one)."""
    if _group_ready():
        import torch.distributed as dist

        dist.barrier()


def decided_by_main(decide: Callable[[], T]) -> T:
    """DECIDE run on the main process only, its answer given to every process. A refusal there
    (a user error, a stop) ends every process with the same exit code; only the main one says
    why, so the user reads it once."""
    if not _group_ready():
        return decide()
    import torch.distributed as dist

    answer: list[Any] = [None]
    failure: BaseException | None = None
    if current().is_main:
        try:
            answer[0] = ("ok", decide())
        except GrpoError as exc:
            answer[0], failure = ("exit", USER_ERROR_EXIT), exc
        except KeyboardInterrupt as exc:
            answer[0], failure = ("exit", INTERRUPTED_EXIT), exc
        except BaseException as exc:
            answer[0], failure = ("exit", 1), exc
    dist.broadcast_object_list(answer, src=0)
    if failure is not None:
        raise failure
    kind, value = answer[0]
    if kind == "exit":
        raise SystemExit(value)
    return value  # type: ignore[no-any-return]


def any_process(flag: bool) -> bool:
    """Whether FLAG is true on any process: every process gets the same answer, so they all
    take the same branch (stop at the same step)."""
    if not _group_ready():
        return flag
    import torch
    import torch.distributed as dist

    value = torch.tensor([1 if flag else 0], dtype=torch.int64)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def unsloth_problems(backend: str, processes: int) -> list[tuple[str, str]]:
    """Backend unsloth is refused before loading with several processes: grpo's Unsloth path
    (its patched GRPOTrainer, the colocated vLLM of fast_inference) is one process on one GPU.
    unsloth/models/loader.py has a per-rank device map (prepare_device_map), but nothing here
    has trained through it, and TRL's trainer is the one accelerate, DeepSpeed and FSDP drive."""
    if backend != "unsloth" or processes <= 1:
        return []
    return [
        (
            "model.backend",
            f"backend unsloth trains on one GPU and this run has {processes} processes: use "
            "backend: trl (--set model.backend=trl), which trains on several",
        )
    ]


# --distributed: the accelerate config file shipped for each (configs/accelerate/)
ACCELERATE_CONFIGS = {"ddp": "ddp.yaml", "zero2": "zero2.yaml", "zero3": "zero3.yaml"}
ACCELERATE_CONFIGS["fsdp"] = "fsdp2.yaml"
# The main process writes its exit code here, so that `grpo train --processes` ends with it
# rather than with the launcher's 1 for any failure of a process.
EXIT_FILE = "GRPO_LAUNCH_EXIT_FILE"


@dataclass(frozen=True)
class Launch:
    """`grpo train --processes N ...`: how to start the processes through accelerate."""

    processes: int  # over all machines, as accelerate's --num_processes counts them
    mode: str = "ddp"
    machines: int = 1
    machine_rank: int = 0
    main_process_ip: str | None = None
    main_process_port: int | None = None


def launch_problems(launch: Launch) -> list[tuple[str, str]]:
    """What is wrong with the launch flags, as (flag, message naming the fix)."""
    problems = []
    if launch.mode not in ACCELERATE_CONFIGS:
        known = ", ".join(ACCELERATE_CONFIGS)
        problems.append(("--distributed", f"{launch.mode!r} is not one of {known}"))
    if launch.processes % launch.machines:
        problems.append(
            (
                "--processes",
                f"{launch.processes} processes do not split over {launch.machines} machines: "
                "--processes counts them over all machines (e.g. 2 machines x 4 GPUs: 8)",
            )
        )
    if not 0 <= launch.machine_rank < launch.machines:
        problems.append(
            (
                "--machine-rank",
                f"{launch.machine_rank} is not between 0 and {launch.machines - 1} "
                f"(--machines {launch.machines})",
            )
        )
    if launch.machines > 1 and not launch.main_process_ip:
        problems.append(
            (
                "--main-process-ip",
                "several machines meet at the main machine's address: give "
                "--main-process-ip with the IP of the machine started with --machine-rank 0",
            )
        )
    return problems


def accelerate_config(mode: str) -> Path:
    """The shipped accelerate config for MODE: configs/accelerate/ beside the package in a
    checkout, or <prefix>/share/grpo-cli/accelerate/ where pip installed it (pyproject's
    data-files)."""
    import sys
    import sysconfig

    name = ACCELERATE_CONFIGS[mode]
    places = [
        Path(__file__).resolve().parents[2] / "configs" / "accelerate",
        Path(sysconfig.get_path("data")) / "share" / "grpo-cli" / "accelerate",
        Path(sys.prefix) / "share" / "grpo-cli" / "accelerate",
    ]
    for folder in places:
        if (folder / name).is_file():
            return folder / name
    raise GrpoError(
        f"the accelerate config for --distributed {mode} ({name}) is not installed",
        "reinstall grpo-cli (pip install -e .), or launch yourself: accelerate launch "
        "--config_file YOUR.yaml -m grpo_cli train CONFIG",
    )


def launch_command(launch: Launch, grpo_args: list[str], folder: Path) -> list[str]:
    """The `accelerate launch` command that starts this machine's share of LAUNCH's processes,
    each running `python -m grpo_cli GRPO_ARGS`. accelerate's own launcher, so its config
    files, flags and environment are the ones its documentation describes. Its logs go into
    FOLDER, the launch's own (`launch_folder`): left to itself, torch's elastic agent makes a
    `torchelastic_*` folder in the system's temporary folder for every launch and leaves it."""
    import sys

    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(accelerate_config(launch.mode)),
        "--num_processes",
        str(launch.processes),
        "--num_machines",
        str(launch.machines),
        "--machine_rank",
        str(launch.machine_rank),
    ]
    if launch.main_process_ip:
        command += ["--main_process_ip", launch.main_process_ip]
    if launch.main_process_port is not None:
        command += ["--main_process_port", str(launch.main_process_port)]
    command += ["--log_dir", str(folder / "logs")]
    return [*command, "-m", "grpo_cli", *grpo_args]


@contextlib.contextmanager
def launch_folder() -> Iterator[Path]:
    """A launch's scratch folder, for the launcher's logs and each process's exit record;
    removed when the launch ends, whatever the outcome."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="grpo-launch-") as folder:
        yield Path(folder)


def run_launcher(command: list[str], folder: Path) -> int:
    """Run the launcher and wait for it. It runs in its own session, so a Ctrl-C in the
    terminal reaches it once, from here: torchrun's agent passes a signal on to every process
    (torch/distributed/elastic/agent/server/api.py, _shutdown), each one then finishes its step
    and saves the checkpoint they agreed on, and the agent waits TORCH_ELASTIC_SHUTDOWN_TIMEOUT
    seconds for that (torch/distributed/launcher/api.py; 30 unless set, too short for a large
    model's checkpoint, so 600 here). Returns the exit code of the process whose end ended the
    run (`ending`), and says its message when that process is not the one that speaks."""
    import signal
    import subprocess

    env = dict(os.environ)
    env.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", "600")
    env[EXIT_FILE] = str(folder / "exit")
    process = subprocess.Popen(command, env=env, start_new_session=True)

    signalled: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        signalled.append(signum)
        process.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    code, message = ending(read_exits(folder), code, bool(signalled))
    if message:
        print(message, file=sys.stderr)
    return code


def record_exit(code: int, said: str = "") -> int:
    """CODE, also written with what this process said (SAID, shown only by the main process)
    where `run_launcher` reads it."""
    path = os.environ.get(EXIT_FILE)
    if path:
        record = json.dumps({"code": code, "said": said})
        with contextlib.suppress(OSError):  # the code still ends this process
            Path(f"{path}.{current().rank}").write_text(record, encoding="utf-8")
    return code


def read_exits(folder: Path) -> dict[int, tuple[int, str]]:
    """{rank: (exit code, what it said)} of the processes that recorded their end in FOLDER."""
    exits: dict[int, tuple[int, str]] = {}
    for path in folder.glob("exit.*"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            record = json.loads(path.read_text(encoding="utf-8"))
            exits[int(path.suffix[1:])] = (int(record["code"]), str(record.get("said") or ""))
    return exits


def ending(
    exits: dict[int, tuple[int, str]], launcher_code: int, signalled: bool = False
) -> tuple[int, str | None]:
    """The exit code of a launched run, and what to say that no process said on this terminal.

    The main process (rank 0) speaks for all. But when another process fails alone (its GPU out
    of memory, a path missing on its machine), the main one only meets the consequence: the
    launcher's SIGTERM (130) or a lost connection in its next collective (an unexpected error,
    1). The other process's failure is then the run's end: its exit code, and its message,
    which only the main process would have said (an unexpected error each process prints
    itself). On a machine without the main process, the first failure of its processes.
    SIGNALLED: the user stopped the run (Ctrl-C or SIGTERM, passed on to every process)."""
    main = exits.get(0)
    if main is not None and main[0] == 0:
        return 0, None
    if signalled:
        return INTERRUPTED_EXIT, None
    if main is not None and main[0] not in (1, INTERRUPTED_EXIT):
        return main[0], None  # its own refusal, which it said
    for rank, (code, said) in sorted(exits.items()):
        if rank == 0 or code in (0, INTERRUPTED_EXIT):
            continue
        if main is not None and main[0] == 1 and code == 1:
            continue  # both failed unexpectedly, and each printed its error
        head = f"process {rank} of the run failed (exit {code})"
        head += "; the others stopped with it" if main is not None else ""
        return code, f"{head}:\n{said}" if said else f"{head}; its error is above."
    if main is not None:
        return main[0], None
    if exits and all(code == INTERRUPTED_EXIT for code, _ in exits.values()):
        return INTERRUPTED_EXIT, None
    return launcher_code, None


def mode_problems(mode: str, device: str) -> list[tuple[str, str]]:
    """DeepSpeed and FSDP shard over GPUs. On CPU the Trainer asks accelerate for a CPU state
    (transformers/training_args.py: use_cpu gives PartialState(cpu=True)), which is plain
    multi-process DDP: a zero2/zero3/fsdp run there would say one mode and train in another,
    so it is refused."""
    if mode in ("none", "ddp") or device == "cuda":
        return []
    return [
        (
            "--distributed",
            f"{mode} shards the model over GPUs and this machine has none (device {device}); "
            "on CPU use --distributed ddp",
        )
    ]
