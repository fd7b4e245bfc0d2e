"""`grpo sft CONFIG`: the cold start, supervised fine-tuning on worked solutions before GRPO.

resolve the config -> refuse a run directory in use or already trained (at once) -> check it
against this machine -> run directory, locked (config, environment with stage sft) -> tokenizer
-> rows with worked solutions, as prompt + completion -> model (LoRA or every weight) ->
SFTTrainer -> train -> save RUN/adapter or RUN/model. The stage machinery, run directory,
checkpoints and Ctrl-C handling are grpo train's (commands/train.py, training/).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from grpo_cli.commands.train import (
    Plan,
    Stage,
    find_run_dir,
    first_last,
    open_run,
    resolve,
    run_stage,
)
from grpo_cli.config import LoadedConfig, load_config
from grpo_cli.config.loader import config_error
from grpo_cli.config.yamlio import display_path
from grpo_cli.errors import INTERRUPTED_EXIT, GrpoError
from grpo_cli.threads import apply_threads

if TYPE_CHECKING:
    from datasets import Dataset

    from grpo_cli.config.schema import GrpoConfig
    from grpo_cli.training.callbacks import GracefulStop, RunRecorder
    from grpo_cli.training.rundir import RunDir


def sft(
    config_path: Path,
    overrides: list[str],
    *,
    resume: bool = False,
    overwrite: bool = False,
    dry_run: bool = False,
    threads: int | None = None,
) -> int:
    """The recipe, stopped cleanly by Ctrl-C / SIGTERM, as `grpo train`'s is."""
    return run_stage("sft", recipe, config_path, overrides, resume, overwrite, dry_run, threads)


def recipe(
    stage: Stage,
    config_path: Path,
    overrides: list[str],
    resume: bool,
    overwrite: bool,
    dry_run: bool,
    threads: int | None,
) -> int:
    console = stage.console
    loaded = load_config(config_path, overrides)
    cfg = loaded.config
    refuse_warm_start(loaded)
    if not dry_run:
        from grpo_cli.training import rundir

        run_path = find_run_dir(cfg, config_path, resume, stage="sft")
        rundir.check(run_path, resume=resume, overwrite=overwrite)
    from grpo_cli.hub_access import config_items, start_probe

    hub = start_probe(config_items(cfg))
    stage.enter("checking this machine")
    plan = resolve(on_trl(loaded, console), console, hub, stage="sft")
    refuse_packing_without_flash_attention(loaded, plan.hardware.device)
    if not dry_run:  # TRL's refusals of an sft setting, before --overwrite clears the old run
        from grpo_cli.training.sft import build_sft_config, sft_config_kwargs

        args = build_sft_config(
            sft_config_kwargs(
                cfg,
                str(run_path / "checkpoints"),
                plan.precision,
                plan.hardware.device,
                plan.tracker,
            )
        )
    if line := apply_threads(threads, plan.hardware.device):
        console.print(line, markup=False)
    from grpo_cli.training.models import quiet_progress_bars

    quiet_progress_bars()
    if dry_run:
        return dry_run_report(plan, console)

    from grpo_cli.training.checkpoints import failures_explained, load_if_finished

    run, checkpoint = open_run(stage, run_path, cfg, resume, overwrite)
    if not resume or not run.config.is_file():
        saved = with_sft_run_name(cfg, run_path.name)
        rundir.write_config(run, saved, display_path(config_path), command="grpo sft")
    env = rundir.environment(
        plan.hardware.as_dict(), plan.backend, plan.backend_reason, plan.precision, stage="sft"
    )
    env["sft_method"] = cfg.sft.method
    run.write_json(run.env, env)
    console.print(f"run directory: {display_path(run.path)}")
    from grpo_cli.commands.train import load_tokenizer, point_tracker_at

    point_tracker_at(cfg, run)

    stage.enter("loading the tokenizer")
    tokenizer = load_tokenizer(plan)
    stage.enter("reading the data")
    rows = load_rows(cfg, tokenizer, run, console)
    stage.enter("loading the model")
    from grpo_cli.training import sft as sft_training

    model = sft_training.load_model(cfg, plan.precision)
    stage.enter("building the trainer")
    trainer, recorder, stop = build_trainer(plan, args, model, tokenizer, rows, run, console)

    stage.enter("training")
    started = time.perf_counter()
    stop.install()
    try:
        with failures_explained(run, trainer, checkpoint):
            if not load_if_finished(trainer, checkpoint):
                trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    finally:
        stop.uninstall()
        recorder.close()
    wall = time.perf_counter() - started

    if stop.requested:
        console.print(
            f"Stopped by {stop.requested} at step {trainer.state.global_step}; checkpoint saved "
            f"in {display_path(run.checkpoints)}.\n"
            f"Resume with: grpo sft {display_path(run.config)} --resume"
        )
        return INTERRUPTED_EXIT
    output = sft_training.output_folder(run, cfg.sft.method)
    stage.enter(f"saving {output.name}/")
    with failures_explained(run, trainer, staged=output):
        sft_training.save(trainer, output)
    closing_table(recorder.history, trainer.state.global_step, wall, run, output, console)
    console.print(
        f"next: grpo train {display_path(config_path)} --set model.name={display_path(run.path)}",
        markup=False,
    )
    return 0


def refuse_warm_start(loaded: LoadedConfig) -> None:
    """grpo sft starts from a model, not from another warm-up: a LoRA warm-up would be dropped
    (full fine-tuning loads its base only) or stacked on a base the next stage cannot find. The
    config is a GRPO stage's: its model.name is the warm-up run GRPO continues."""
    from grpo_cli.model_source import sft_run

    name = loaded.config.model.name
    if sft_run(name) is not None:
        raise config_error(
            loaded,
            [
                (
                    "model.name",
                    f"{name} is a grpo sft run: grpo sft starts from a base model. To train "
                    "it with GRPO: grpo train; to warm up again, set model.name to its base",
                )
            ],
        )


def on_trl(loaded: LoadedConfig, console: Console) -> LoadedConfig:
    """The config to plan with: grpo sft trains through TRL's SFTTrainer on transformers + PEFT.
    Unsloth rewrites SFTTrainer's data preparation and arguments on a GPU (unsloth/models/rl.py,
    patch_trl_rl_trainers; skipped under UNSLOTH_ALLOW_CPU=1), where the prompt masking and
    length limits pinned here on CPU are not checked yet: model.backend unsloth is refused and
    auto means trl. The saved config keeps the backend as written, for grpo train."""
    model = loaded.config.model
    if model.backend == "unsloth":
        error = config_error(
            loaded,
            [
                (
                    "model.backend",
                    "grpo sft trains on the trl backend (TRL's SFTTrainer), not unsloth",
                )
            ],
        )
        error.hint = "warm up with --set model.backend=trl; grpo train can still use unsloth"
        raise error
    if model.backend == "trl":
        return loaded
    console.print(
        "note: grpo sft trains on the trl backend (TRL's SFTTrainer), whatever model.backend "
        "auto would choose",
        markup=False,
    )
    update = {"model": model.model_copy(update={"backend": "trl"})}
    return dataclasses.replace(loaded, config=loaded.config.model_copy(update=update))


def refuse_packing_without_flash_attention(loaded: LoadedConfig, device: str) -> None:
    """trl/trainer/sft_trainer.py warns that packed rows attend to each other unless the model
    runs flash attention, which needs a CUDA GPU; on any other device packing is refused."""
    if loaded.config.sft.packing and device != "cuda":
        message = (
            "packed rows would attend to each other without flash attention, which needs a "
            "CUDA GPU: set sft.packing: false"
        )
        raise config_error(loaded, [("sft.packing", message)])


def with_sft_run_name(cfg: GrpoConfig, name: str) -> GrpoConfig:
    """The config as saved in the run: sft.run_name fixed, so the copy resumes this run."""
    return cfg.model_copy(update={"sft": cfg.sft.model_copy(update={"run_name": name})})


def load_rows(cfg: GrpoConfig, tokenizer: Any, run: RunDir, console: Console) -> Dataset:
    """The warm-up rows as prompt + worked solution, those longer than the sft length limit
    dropped; what happened to the rows goes to data.json."""
    from grpo_cli.data.loading import load_sft_data
    from grpo_cli.data.prompts import PromptFormat
    from grpo_cli.training import sft as sft_training

    data = load_sft_data(cfg)
    if data.report.warning():
        console.print(f"Warning: {data.report.warning()}", markup=False)
    rows = sft_training.sft_rows(data.train, PromptFormat.from_config(cfg.data))
    limit = sft_training.max_length(cfg)
    completion_limit = cfg.training.max_completion_length
    fitted = sft_training.fit_length(rows, tokenizer, limit, completion_limit)
    key = "sft.max_length" if cfg.sft.max_length else "model.max_seq_length (sft.max_length null)"
    if fitted.too_long:
        console.print(
            f"Warning: dropped {fitted.too_long} of {len(rows)} rows whose prompt and worked "
            f"solution are longer than {key} {limit} tokens",
            markup=False,
        )
    if len(fitted.rows) == 0:
        raise GrpoError(
            f"every row's prompt and worked solution is longer than {key} {limit} tokens",
            "raise sft.max_length (and model.max_seq_length)",
        )
    if fitted.over_completion:
        console.print(
            f"Warning: {fitted.over_completion} of {len(fitted.rows)} worked solutions are longer "
            f"than training.max_completion_length {completion_limit} tokens: grpo train would "
            "cut such answers off; raise training.max_completion_length",
            markup=False,
        )
    report = {
        **data.report.__dict__,
        "too_long": fitted.too_long,
        "trained_on": len(fitted.rows),
        "over_completion_length": fitted.over_completion,
    }
    run.write_json(run.data, report)
    console.print(
        f"data: {data.report.summary()}; {len(fitted.rows)} worked solutions to train on",
        markup=False,
    )
    return fitted.rows


def build_trainer(
    plan: Plan,
    args: Any,
    model: Any,
    tokenizer: Any,
    rows: Dataset,
    run: RunDir,
    console: Console,
) -> tuple[Any, RunRecorder, GracefulStop]:
    """TRL's SFTTrainer with ARGS (the SFTConfig built before the run directory was touched)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import SFTTrainer

    from grpo_cli.training.callbacks import GracefulStop, MarkCheckpoints, RunRecorder

    if plan.hardware.device != "cuda":
        from grpo_cli.training.cpu_kernels import install_if_missing

        # SFTTrainer computes its loss through the same Triton log-prob kernel as GRPOTrainer
        # (trl/trainer/sft_trainer.py: add_fused_lm_head; trl/trainer/utils.py: _fused_forward)
        if install_if_missing():
            console.print("note: TRL's Triton log-prob kernel is unavailable; using plain torch")
    recorder = RunRecorder(run, 0, 1, console, watch_health=False)  # no completions sampled
    stop = GracefulStop()
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=rows,
        processing_class=tokenizer,
        callbacks=[recorder, stop, MarkCheckpoints()],
    )
    trainer.remove_callback(PrinterCallback)  # RunRecorder prints one line per step instead
    trainer.remove_callback(ProgressCallback)
    return trainer, recorder, stop


def closing_table(
    history: list[dict[str, Any]],
    steps: int,
    wall: float,
    run: RunDir,
    output: Path,
    console: Console,
) -> None:
    table = Table(title="grpo sft: done", title_justify="left", show_header=False)
    table.add_column("")
    table.add_column("")
    table.add_row("steps", str(steps))
    table.add_row("wall time", f"{wall:.1f} s")
    table.add_row("loss (first -> last 10% of logs)", first_last(history, "loss"))
    table.add_row("token accuracy (first -> last 10%)", first_last(history, "mean_token_accuracy"))
    table.add_row(output.name, display_path(output))
    console.print(table)


def dry_run_report(plan: Plan, console: Console) -> int:
    """Tokenizer, the warm-up rows, one rendered prompt + worked solution with the part the loss
    ignores marked, and every reward on that solution; no weights are loaded."""
    from grpo_cli.data.loading import load_sft_data
    from grpo_cli.data.prompts import PromptFormat
    from grpo_cli.rewards.runner import RewardContext, build_rewards
    from grpo_cli.training import sft as sft_training
    from grpo_cli.training.models import load_tokenizer

    cfg = plan.loaded.config
    tokenizer = load_tokenizer(cfg)
    data = load_sft_data(cfg)
    if data.report.warning():
        console.print(f"Warning: {data.report.warning()}", markup=False)
    rows = sft_training.sft_rows(data.train.select(range(1)), PromptFormat.from_config(cfg.data))
    row = rows[0]
    measured = sft_training.lengths(tokenizer, row)
    ids = sft_training.token_ids(tokenizer, row["prompt"] + row["completion"], False)
    out = Console(soft_wrap=True)
    out.rule(f"prompt: {measured.prompt} tokens, left out of the loss")
    out.print(tokenizer.decode(ids[: measured.prompt]), markup=False, highlight=False)
    out.rule(f"completion: {measured.completion} tokens, trained on")
    out.print(tokenizer.decode(ids[measured.prompt :]), markup=False, highlight=False)
    out.rule(f"{measured.total} tokens (max_length {sft_training.max_length(cfg)})")
    context = RewardContext.from_config(cfg)
    rewards = build_rewards(cfg.rewards, context, cfg.reward_plugins)
    text = row["completion"][0]["content"]
    table = Table(title="rewards on this worked solution")
    for column in ("reward", "weight", "value"):
        table.add_column(column)
    columns = {"answer": [data.train[0]["answer"]], "prompts": [row["prompt"]]}
    for reward in rewards:
        (value,) = reward([text], **columns)
        table.add_row(reward.__name__, str(reward.weight), f"{value}")
    out.print(table)
    out.print(
        f"dry run: {data.report.summary()}; config, tokenizer and data are ready; no weights "
        "were loaded",
        markup=False,
    )
    return 0
