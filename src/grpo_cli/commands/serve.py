"""`grpo serve CONFIG`: the vLLM server that `vllm.mode: server` trains against, on GPUs of its
own, and the `grpo train` command that uses it.

config -> the server's GPUs and command (TRL's own command builder) -> refuse a machine without
vLLM or a GPU (a dry run prints the command anyway) -> print the train command -> exec the
server, which keeps this process's terminal. The work is done in `grpo_cli.vllm_server`.
"""

from __future__ import annotations

import os
from pathlib import Path

from grpo_cli.config import load_config
from grpo_cli.config.yamlio import display_path
from grpo_cli.errors import GrpoError
from grpo_cli.hardware import installed_packages, probe_nvidia_smi
from grpo_cli.vllm_server import ServeCommand, serve_command


def serve(
    config_path: Path,
    overrides: list[str],
    *,
    tensor_parallel_size: int = 1,
    data_parallel_size: int = 1,
    gpus: str | None = None,
    host: str | None = None,
    port: int | None = None,
    dry_run: bool = False,
) -> int:
    cfg = load_config(config_path, overrides).config
    smi = probe_nvidia_smi()
    gpu_count = smi.hardware.gpu_count if smi.hardware.device == "cuda" else None
    command = serve_command(
        cfg,
        display_path(config_path),
        overrides,
        tensor_parallel_size=tensor_parallel_size,
        data_parallel_size=data_parallel_size,
        gpus=gpus,
        visible=os.environ.get("CUDA_VISIBLE_DEVICES"),
        gpu_count=gpu_count,
        host=host,
        port=port,
    )
    if not dry_run:
        has = installed_packages(cfg)
        if gpu_count is None:
            raise GrpoError(
                f"grpo serve runs vLLM, which needs a CUDA GPU: {smi.error or 'none found'}",
                "run it on a GPU machine (--dry-run prints the command here)",
            )
        if not has.get("vllm"):
            raise GrpoError(
                "grpo serve runs vLLM, which is not installed",
                "pip install -e '.[gpu]' (--dry-run prints the command without it)",
            )
        if cfg.model.quantization == "4bit" and not has.get("vllm_4bit"):
            raise GrpoError(
                "model.quantization: 4-bit weights through vLLM 0.28+ need the vllm-bnb-plugin "
                "package",
                "pip install -e '.[gpu]', or set model.quantization: none",
            )
    print(describe(command, dry_run), flush=True)  # before exec replaces this process
    if dry_run:
        return 0
    os.execve(command.argv[0], command.argv, {**os.environ, **command.env})
    return 0  # not reached: execve returns only by raising


def describe(command: ServeCommand, dry_run: bool) -> str:
    """What starts, on which GPUs, and the train command to run once it is up."""
    gpus = ",".join(command.gpus)
    if command.train_gpus is None:
        where = "GPUs other than the server's"
    elif command.train_gpus:
        where = "GPU " + ",".join(command.train_gpus)
    else:
        where = "another machine (the server takes every GPU of this one)"
    lines = [
        f"vLLM server on GPU {gpus}{' (dry run: not started)' if dry_run else ''}:",
        f"  {command.shell()}",
        f"When it says 'Application startup complete', train on {where}, in another shell:",
        f"  {command.train}",
    ]
    return "\n".join(lines)
