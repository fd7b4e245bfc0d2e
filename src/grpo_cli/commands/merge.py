"""`grpo merge RUN_DIR|ADAPTER_DIR`: the LoRA adapter merged into a 16-bit copy of its base model,
with tokenizer, chat template and a model card; optionally GGUF files and a Hub upload.

resolve the source -> check every flag, the output folder and the token -> merge into a
temporary folder beside the output -> model card -> rename into place -> publish.
Nothing heavy is loaded until every check a user can fail has passed; the work is done in
`grpo_cli.merging` and `grpo_cli.model_loading`.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from grpo_cli.errors import GrpoError
from grpo_cli.merging.card import card_facts, training_figure
from grpo_cli.merging.hub import check_publish_flags, hub_token, publish, push_plan
from grpo_cli.merging.staging import clean_leftovers, staging
from grpo_cli.merging.weights import (
    choose_merger,
    copy_adapter,
    merge_with_peft,
    merge_with_unsloth,
    parse_quants,
)
from grpo_cli.model_loading import check_local_base, check_unquantized_base
from grpo_cli.model_source import TRAINED_CONFIG, ModelSource, resolve_model
from grpo_cli.modelcard import model_card
from grpo_cli.training.models import DTYPES, quiet_progress_bars


def merge(
    source: Path,
    *,
    output: Path | None = None,
    dtype: str = "bf16",
    push_to_hub: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    adapter_only: bool = False,
    gguf: str | None = None,
    force: bool = False,
) -> Path:
    """Merge (or, with adapter_only, package) SOURCE into OUTPUT, in bf16, fp16 or fp32."""
    started = time.perf_counter()
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    if dtype not in DTYPES:
        raise GrpoError(f"--dtype {dtype!r} is not one of bf16, fp16, fp32", "use --dtype bf16")
    src = resolve_source(source)
    quants = parse_quants(gguf, adapter_only)
    repo_id = check_publish_flags(push_to_hub, private, revision)
    target = output if output is not None else default_output(src, source, adapter_only)
    for note in clean_leftovers(target):  # before the checks: a restored model counts in them
        console.print(f"note: {note}")
    check_output(target, src, force)
    token = hub_token() if repo_id else None
    if repo_id is None and src.config.get("output", {}).get("hub_repo"):
        console.print(f"note: to publish, add --push-to-hub {src.config['output']['hub_repo']}")
    merger = None if adapter_only else choose_merger(src, quants, console)
    if merger == "peft":
        check_unquantized_base(src)
    elif merger == "unsloth":
        check_local_base(src)  # Unsloth maps a quantized Hub base to its 16-bit weights itself
    trained_on = src.config.get("model", {}).get("quantization", "none")
    if merger and src.base_note("merging into"):
        console.print(src.base_note("merging into"), markup=False)
    elif merger and trained_on != "none":
        console.print(f"note: training used {trained_on} base weights; merging into a 16-bit copy")

    quiet_progress_bars()
    with staging(target, force) as tmp:
        if adapter_only:
            assert src.adapter is not None  # resolve_source refused the one kind without
            copy_adapter(src.adapter, tmp)
        elif merger == "unsloth":
            merge_with_unsloth(src, tmp, dtype, quants)
        else:
            merge_with_peft(src, tmp, dtype)
        if src.run is not None and src.run.config.is_file():
            shutil.copyfile(src.run.config, tmp / TRAINED_CONFIG)
        facts = card_facts(src, dtype, adapter_only, repo_id, merger or "peft", quants)
        facts.figure = training_figure(src, tmp)
        (tmp / "README.md").write_text(model_card(facts), encoding="utf-8")
    summary(console, target, src, dtype, adapter_only, merger, time.perf_counter() - started)

    if repo_id is not None:
        default_private = src.config.get("output", {}).get("private", True)
        plan = push_plan(
            target, repo_id, default_private if private is None else private, revision, adapter_only
        )
        assert token is not None  # read with the other checks whenever repo_id is set
        url = publish(plan, token)
        console.print(f"Published {len(plan.files)} files to {url}")
    return target


def resolve_source(path: Path) -> ModelSource:
    """A run directory (outputs/NAME), its adapter/ or a checkpoint, or any PEFT adapter."""
    src = resolve_model(str(path))
    if src.sft is not None and src.adapter is None:
        # Nothing to merge, and a copy would only duplicate the weights under another name.
        folder = src.sft.run.model
        raise GrpoError(
            f"{path} is a grpo sft run with full fine-tuning: {folder} is already a whole model",
            f"use {folder} as it is (`grpo eval CONFIG --model {path}`, or model.name: {path} "
            "to train GRPO from it); merge the grpo run trained from it instead",
        )
    if src.kind == "merged":
        raise GrpoError(
            f"{path} holds a full model, not a LoRA adapter",
            "there is nothing to merge: load it as it is, or give the run directory",
        )
    return src


def default_output(src: ModelSource, given: Path, adapter_only: bool) -> Path:
    name = "adapter-release" if adapter_only else "merged"
    if src.kind in ("run", "sft") and src.run is not None:
        return src.run.path / name
    if src.kind == "checkpoint" and src.run is not None and src.adapter is not None:
        # beside checkpoints/, not in it: the trainer takes any `*checkpoint-N` folder there for
        # one of its own, and save_total_limit would delete the merged model
        return src.run.path / f"{name}-{src.adapter.name}"
    given = given.resolve()  # "." has no name to put a suffix on
    return given.with_name(f"{given.name}-{name.split('-')[-1]}")


def check_output(target: Path, src: ModelSource, force: bool) -> None:
    if target.exists() and not target.is_dir():
        raise GrpoError(f"--output {target} is a file", "give a folder for the merged model")
    resolved = target.resolve()
    keep = [p.resolve() for p in (src.adapter, src.run.path if src.run else None) if p]
    if any(p == resolved or p.is_relative_to(resolved) for p in keep):
        raise GrpoError(
            f"--output {target} would replace the adapter or run being merged",
            "choose a folder outside them, e.g. the default (leave --output out)",
        )
    if target.is_dir() and any(target.iterdir()) and not force:
        raise GrpoError(
            f"output folder {target} is not empty",
            "pass --force to replace it, or choose another --output",
        )


def summary(
    console: Console,
    target: Path,
    src: ModelSource,
    dtype: str,
    adapter_only: bool,
    merger: str | None,
    wall: float,
) -> None:
    files = sorted(p for p in target.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in files)
    table = Table(title="grpo merge: done", title_justify="left", show_header=False)
    table.add_column("")
    table.add_column("")
    table.add_row("adapter" if adapter_only else "merged model", str(target))
    table.add_row("base model", src.base)
    if src.sft is not None:
        table.add_row("warmed up by", src.sft.describe())
    if not adapter_only:
        via = "Unsloth merged_16bit" if merger == "unsloth" else "PEFT merge_and_unload"
        table.add_row("weights", f"{dtype} safetensors ({via})")
    table.add_row("files", ", ".join(p.relative_to(target).as_posix() for p in files))
    table.add_row("size", f"{size / 2**20:.1f} MiB")
    table.add_row("wall time", f"{wall:.1f} s")
    console.print(table)
