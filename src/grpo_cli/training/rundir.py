"""The run directory `outputs/<run_name>/`: everything `eval` and `merge` need, and nothing that
could hold a secret.

    config.yaml        the resolved config (extends, overrides and defaults applied)
    env.json           library versions, device, GPU, git commit of the project
    data.json          what happened to the rows (counts, drops, held-out size)
    heldout.json       ids of the training rows set aside for evaluation (data.heldout_size)
    metrics.jsonl      one line per logged step
    completions.jsonl  sampled prompts, golds and completions with their rewards
    checkpoints/       trainer checkpoints (optimizer, scheduler, RNG, step)
                       each complete one holds checkpoint_complete.json
    adapter/           the final LoRA adapter and the tokenizer
    tensorboard/ wandb/  tracker files, when logging.report_to names one
    eval.json          written by `grpo eval`: {split name: metrics}, read by `grpo merge`
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from grpo_cli.config import dump_config
from grpo_cli.config.schema import HUB_TOKEN_RE, GrpoConfig
from grpo_cli.errors import GrpoError
from grpo_cli.files import write_atomic
from grpo_cli.training.checkpoints import complete_checkpoints

LIBRARIES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "unsloth",
             "unsloth_zoo", "vllm", "bitsandbytes", "grpo-cli")  # fmt: skip


class RunDir:
    def __init__(self, path: Path):
        self.path = path

    config = property(lambda self: self.path / "config.yaml")
    env = property(lambda self: self.path / "env.json")
    data = property(lambda self: self.path / "data.json")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    completions = property(lambda self: self.path / "completions.jsonl")
    checkpoints = property(lambda self: self.path / "checkpoints")
    adapter = property(lambda self: self.path / "adapter")
    evals = property(lambda self: self.path / "eval.json")

    def latest_checkpoint(self) -> Path | None:
        """The checkpoint with the highest step that the trainer finished writing."""
        complete = complete_checkpoints(self.checkpoints)
        return complete[-1] if complete else None

    def write_json(self, path: Path, record: dict[str, Any]) -> None:
        write_atomic(path, json.dumps(record, indent=1, default=str) + "\n")

    def append_jsonl(self, path: Path, record: dict[str, Any]) -> None:
        """One record, on a line of its own even after a hard stop cut the last one short."""
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        with path.open("a+b") as f:
            if f.tell() and (f.seek(-1, os.SEEK_END), f.read(1))[1] != b"\n":
                line = "\n" + line
            f.write(line.encode("utf-8"))  # one write: a kill leaves a whole record or a cut one


def enclosing_run(folder: Path) -> RunDir | None:
    """The run that holds an adapter folder: RUN/adapter or RUN/checkpoints/checkpoint-N."""
    for parent in list(folder.resolve().parents)[:2]:
        if (parent / "config.yaml").is_file() and (parent / "env.json").is_file():
            return RunDir(parent)
    return None


def adapter_base(adapter: Path) -> tuple[str, str | None]:
    """(base model, revision) a PEFT adapter folder was trained on, from adapter_config.json."""
    try:
        meta = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise GrpoError(
            f"{adapter}/adapter_config.json cannot be read: {exc}",
            "the adapter folder is damaged; take a checkpoint of the run instead",
        ) from None
    base = meta.get("base_model_name_or_path")
    if not base:
        raise GrpoError(
            f"{adapter}/adapter_config.json names no base model (base_model_name_or_path)",
            "set base_model_name_or_path to the Hub id or folder the adapter was trained on",
        )
    return str(base), meta.get("revision")


def run_name(cfg: GrpoConfig, config_path: Path, now: datetime | None = None) -> str:
    if cfg.output.run_name:
        return cfg.output.run_name
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    return f"{config_path.stem}-{stamp}"


def prepare(path: Path, *, resume: bool, overwrite: bool) -> RunDir:
    """The run directory, created; an existing one is kept for --resume, replaced only with
    --overwrite, and refused otherwise."""
    run = RunDir(path)
    exists = any(path.iterdir()) if path.is_dir() else path.exists()
    if resume:
        if not exists:
            raise GrpoError(
                f"--resume: {path} does not exist",
                "resume names the run through output.run_name (or --set output.run_name=...)",
            )
        if run.latest_checkpoint() is None:
            raise GrpoError(
                f"--resume: {path} has no checkpoint yet",
                "run again with --overwrite to start over",
            )
        return run
    if exists and not overwrite:
        raise GrpoError(
            f"run directory {path} already exists",
            "continue it with --resume, replace it with --overwrite, or set another "
            "output.run_name",
        )
    if exists:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return run


def write_config(run: RunDir, cfg: GrpoConfig, source: str) -> None:
    header = f"# Resolved from {source} by grpo train; `grpo train` accepts this file as is.\n"
    body = yaml.safe_dump(dump_config(cfg), sort_keys=False, allow_unicode=True)
    write_atomic(run.config, header + body)


def environment(hardware: dict[str, Any], backend: str, reason: str, precision: str) -> dict:
    """Versions, device and project commit: what a reader needs to reproduce the run."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": sys.version.split()[0],
        "platform": sys.platform,
        "versions": versions,
        "hardware": hardware,
        "backend": backend,
        "backend_reason": reason,
        "precision": precision,
        "git": git_commit(Path(__file__).resolve().parents[3]),
        "argv": [a for a in sys.argv if not HUB_TOKEN_RE.search(a)],
        "started": datetime.now().isoformat(timespec="seconds"),
    }


def git_commit(folder: Path) -> dict[str, Any] | None:
    """The project's commit and whether the tree had changes, or None outside a git checkout."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty)}
