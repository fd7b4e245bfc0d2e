"""`grpo train CONFIG`: the training recipe, top to bottom.

resolve the config -> refuse a run directory in use or already trained (before torch is
imported, so at once) -> check it against this machine -> rewards -> run directory, locked
(config, environment) -> tokenizer -> data -> model with LoRA -> GRPOTrainer -> train -> save the
adapter. Every check a user can fail runs before any weights are loaded; a Ctrl-C at any point
stops with a message saying what was kept and how to go on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from grpo_cli import distributed, errors
from grpo_cli.config import LoadedConfig, load_config
from grpo_cli.config.loader import config_error
from grpo_cli.config.yamlio import display_path
from grpo_cli.errors import INTERRUPTED_EXIT, GrpoError
from grpo_cli.geometry import geometry_problems
from grpo_cli.hardware import Hardware, preflight
from grpo_cli.threads import apply_threads

if TYPE_CHECKING:  # heavy imports (transformers, datasets): for the checker only
    from datasets import Dataset
    from transformers import TrainerCallback

    from grpo_cli.config.schema import GrpoConfig
    from grpo_cli.distributed import Launch
    from grpo_cli.rewards.runner import BoundReward
    from grpo_cli.training.callbacks import AccuracyProbe, GracefulStop, PeriodicEval, RunRecorder
    from grpo_cli.training.interrupts import Interrupts
    from grpo_cli.training.rundir import RunDir

    TrainingReward = BoundReward | AccuracyProbe
    HubAnswer = Callable[[], tuple[bool, str]]


@dataclass
class Plan:
    """The decisions taken before anything heavy: what runs where, and why."""

    loaded: LoadedConfig
    hardware: Hardware
    backend: str
    backend_reason: str
    precision: str
    precision_reason: str
    tracker: str  # logging.report_to resolved: auto becomes the tracker that can log here


def train(
    config_path: Path,
    overrides: list[str],
    *,
    resume: bool = False,
    overwrite: bool = False,
    dry_run: bool = False,
    threads: int | None = None,
    launch: Launch | None = None,
) -> int:
    """The recipe, with Ctrl-C / SIGTERM turned into a stop that says what was kept, and the run
    directory handed back to other processes however the recipe ends. With LAUNCH (--processes),
    the recipe runs in the processes `accelerate launch` starts."""
    if launch is not None and not dry_run:
        return launched(config_path, overrides, resume, overwrite, threads, launch)
    if launch is not None:  # a dry run refuses what the N processes would refuse
        refuse_before_launch(config_path, overrides, launch)
    return run_stage("train", recipe, config_path, overrides, resume, overwrite, dry_run, threads)


def launched(
    config_path: Path,
    overrides: list[str],
    resume: bool,
    overwrite: bool,
    threads: int | None,
    launch: Launch,
) -> int:
    """`grpo train --processes N`: what can be refused without the processes is refused here,
    once (the flags, a step that does not split over N processes, backend unsloth, a run
    directory in the way), then accelerate starts the recipe in N processes."""
    from grpo_cli.training import rundir

    cfg = refuse_before_launch(config_path, overrides, launch)
    if launch.machine_rank == 0:
        rundir.check(find_run_dir(cfg, config_path, resume), resume=resume, overwrite=overwrite)
    args = ["train", str(config_path)]
    for override in overrides:
        args += ["--set", override]
    args += ["--resume"] * resume + ["--overwrite"] * overwrite
    if threads is not None:
        args += ["--threads", str(threads)]
    args += ["--debug"] * errors.DEBUG  # each process shows its own traceback
    with distributed.launch_folder() as folder:
        command = distributed.launch_command(launch, args, folder)
        Console(stderr=True, soft_wrap=True, highlight=False).print(
            f"launching {launch.processes} processes ({launch.mode}): {' '.join(command)}",
            markup=False,
        )
        return distributed.run_launcher(command, folder)


def refuse_before_launch(config_path: Path, overrides: list[str], launch: Launch) -> GrpoConfig:
    """What N processes would refuse, said once before any starts: the launch flags, a step
    that does not split over N processes, backend unsloth, a mode this machine cannot run."""
    if distributed.current().several:
        raise GrpoError(
            "--processes: this process is already one of "
            f"{distributed.current().world_size} that {distributed.current().launcher} started",
            "drop --processes when launching with accelerate launch or torchrun",
        )
    flags = distributed.launch_problems(launch)
    if flags:
        raise GrpoError(
            "; ".join(f"{flag}: {message}" for flag, message in flags),
            "grpo train --help lists the launch flags",
        )
    loaded = load_config(config_path, overrides)
    cfg = loaded.config
    problems = geometry_problems(cfg.training, launch.processes)
    problems += distributed.unsloth_problems(cfg.model.backend, launch.processes)
    if problems:
        raise config_error(loaded, problems)
    if launch.mode != "ddp":
        from grpo_cli.hardware import probe

        refuse_mode(launch.mode, probe().device)
    return cfg


def run_stage(command: str, steps: Callable[..., int], *args: Any) -> int:
    """STEPS(stage, *ARGS), the recipe of `grpo COMMAND`, with Ctrl-C / SIGTERM turned into a
    stop that says what was kept, and the run directory released however it ends."""
    from grpo_cli.training.interrupts import Interrupts

    # under several processes the main one speaks for all of them
    console = Console(stderr=True, soft_wrap=True, highlight=False, quiet=not distributed.is_main())
    with Interrupts() as interrupts:
        stage = Stage(console, interrupts, command=command)
        try:
            return steps(stage, *args)
        except KeyboardInterrupt:
            console.print(stage.stopped(), markup=False)
            return INTERRUPTED_EXIT
        finally:
            if stage.run is not None:
                stage.run.release()


class Stage:
    """Where the recipe is, so that a stop can say what was saved and how to go on."""

    def __init__(self, console: Console, interrupts: Interrupts, command: str = "train"):
        self.console, self.interrupts, self.command = console, interrupts, command
        self.name = "reading the config"
        self.run: RunDir | None = None  # once this process owns it

    def enter(self, name: str) -> None:
        self.interrupts.raise_if_received()
        self.name = name

    def note(self, text: str) -> None:
        self.console.print(text, markup=False)

    def stopped(self) -> str:
        signal = "SIGTERM" if self.interrupts.received == "SIGTERM" else "Ctrl-C"
        text = f"Stopped by {signal} while {self.name}"
        run = self.run
        if run is None or not run.config.is_file():
            return f"{text}; nothing was written.\nStart again with the same command."
        resume = f"grpo {self.command} {display_path(run.config)} --resume"
        checkpoint = run.latest_checkpoint()
        if checkpoint is None:
            return f"{text}; no checkpoint was saved yet.\nStart again from step 0 with: {resume}"
        return (
            f"{text}; {checkpoint.name} is kept in {display_path(run.checkpoints)}.\n"
            f"Resume with: {resume}"
        )


def recipe(
    stage: Stage,
    config_path: Path,
    overrides: list[str],
    resume: bool,
    overwrite: bool,
    dry_run: bool,
    threads: int | None = None,
) -> int:
    console = stage.console
    loaded = load_config(config_path, overrides)  # the same answer on every process
    cfg = loaded.config
    processes = distributed.current()
    distributed.start()  # with several processes: join them (imports torch)
    from grpo_cli.vllm_server import refuse_unusable_server

    # seconds, not minutes; asked once, and a refusal said once, under several processes
    distributed.decided_by_main(
        lambda: refuse_unusable_server(cfg, display_path(config_path), overrides)
    )
    if not dry_run:
        from grpo_cli.training import rundir

        def checked_run_dir() -> Path:
            # Before torch and trl are imported: a run that is refused is refused at once.
            run_path = find_run_dir(cfg, config_path, resume)
            rundir.check(run_path, resume=resume, overwrite=overwrite)
            return run_path

        # decided once: a time-stamped name, or a refusal, is the main process's
        run_path = distributed.decided_by_main(checked_run_dir)
    from grpo_cli.hub_access import config_items, start_probe

    hub = start_probe(config_items(cfg))  # answered while torch imports
    stage.enter("checking this machine")
    plan = resolve(loaded, console, hub)
    refuse_mode(processes.mode, plan.hardware.device)
    if line := apply_threads(threads, plan.hardware.device):
        console.print(line, markup=False)
    from grpo_cli.training.models import quiet_progress_bars

    quiet_progress_bars()
    stage.enter("building the rewards")
    rewards = build_training_rewards(cfg)
    if dry_run:
        return dry_run_report(plan, rewards, console)

    from grpo_cli.training.checkpoints import failures_explained, load_if_finished

    run, checkpoint = open_run(stage, run_path, cfg, resume, overwrite)
    if processes.is_main:
        if not resume or not run.config.is_file():
            rundir.write_config(run, with_run_name(cfg, run_path.name), display_path(config_path))
        from grpo_cli.model_source import lineage

        env = rundir.environment(
            plan.hardware.as_dict(), plan.backend, plan.backend_reason, plan.precision
        )
        # what the weights were before this run: eval, merge and the model card read it back
        env["lineage"] = lineage(cfg.model.name, cfg.model.revision)
        env["distributed"] = processes.as_dict()
        run.write_json(run.env, env)
    console.print(f"run directory: {display_path(run.path)}")
    if processes.several:
        console.print(
            f"processes: {processes.world_size} ({processes.mode}, launched by "
            f"{processes.launcher}); prompts_per_step {cfg.training.prompts_per_step} over all",
            markup=False,
        )
    point_tracker_at(cfg, run)

    stage.enter("loading the tokenizer")
    tokenizer = load_tokenizer(plan)
    stage.enter("reading the data")
    data, eval_rows = load_data(cfg, tokenizer, run, console)
    stage.enter("loading the model")
    model, tokenizer = load_model(plan, tokenizer, console)
    stage.enter("building the trainer")
    trainer, recorder, stop = build_trainer(
        plan, model, tokenizer, data, eval_rows, rewards, run, console
    )

    stage.enter("training")
    started = time.perf_counter()
    stop.install()
    try:
        with failures_explained(run, trainer, checkpoint):  # a full disk, a damaged checkpoint
            if not load_if_finished(trainer, checkpoint):
                trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    finally:
        stop.uninstall()
        recorder.close()
    wall = time.perf_counter() - started
    from grpo_cli.commands.report import report_into_run

    if processes.is_main:  # on Ctrl-C too: the pictures of what was done so far
        report_into_run(run.path, console)

    resume_cmd = f"grpo train {display_path(run.config)} --resume"
    if processes.several:  # any number that splits the step will do; the same is simplest
        resume_cmd += f" --processes {processes.world_size}"
    if stop.requested:
        console.print(
            f"Stopped by {stop.requested} at step {trainer.state.global_step}; checkpoint saved "
            f"in {display_path(run.checkpoints)}.\nResume with: {resume_cmd}"
        )
        return INTERRUPTED_EXIT
    stage.enter("saving the adapter")
    with failures_explained(run, trainer):
        trainer.save_model(str(run.adapter))  # the adapter and the tokenizer (processing_class)
    closing_table(recorder.history, trainer.state.global_step, wall, run, console)
    return 0


def refuse_mode(mode: str, device: str) -> None:
    for flag, message in distributed.mode_problems(mode, device):
        raise GrpoError(
            f"{flag}: {message}",
            "grpo train CONFIG --processes N --distributed ddp (or accelerate launch with a "
            "MULTI_GPU config)",
        )


def open_run(
    stage: Stage, run_path: Path, cfg: GrpoConfig, resume: bool, overwrite: bool
) -> tuple[RunDir, Path | None]:
    """The run directory, owned by this process (STAGE.run), and with --resume the checkpoint
    to go on from, said with what was cleaned up past it."""
    from grpo_cli.training import rundir
    from grpo_cli.training.checkpoints import resume_point

    stage.enter("preparing the run directory")

    def prepare() -> Path | None:
        stage.run = run = rundir.prepare(
            run_path, resume=resume, overwrite=overwrite, note=stage.note
        )
        cleaned: list[str] = []  # said after the line that says where the run resumes
        checkpoint = resume_point(run, cleaned.append) if resume else None
        if resume:
            for line in [resuming(checkpoint, cfg, run, stage.command), *cleaned]:
                stage.console.print(line, markup=False)
        return checkpoint

    # Under several processes the main one prepares (and owns) the run directory; the others
    # wait for its decision, refusals included, and resume from the checkpoint it chose.
    checkpoint = distributed.decided_by_main(prepare)
    if stage.run is None:
        stage.run = rundir.RunDir(run_path)
    return stage.run, checkpoint


def resuming(checkpoint: Path | None, cfg: GrpoConfig, run: RunDir, command: str = "train") -> str:
    """Where --resume goes on from, counted in the steps of COMMAND's section of the config
    (`training`, or `sft` for grpo sft)."""
    t = cfg.sft if command == "sft" else cfg.training
    of = f"of {t.max_steps}" if t.max_steps is not None else f"of {t.num_train_epochs:g} epochs"
    if checkpoint is None:
        return f"--resume: {display_path(run.path)} has no checkpoint yet; starting from step 0"
    step = checkpoint.name.rsplit("-", 1)[-1]
    return f"resuming from {checkpoint.name} (step {step} {of})"


def point_tracker_at(cfg: GrpoConfig, run: RunDir) -> None:
    """Tracker files go into the run directory, under the config's project name. Environment
    variables are how transformers' TensorBoard and wandb callbacks take these settings."""
    import os

    project = cfg.logging.project or "grpo-cli"
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(run.path / "tensorboard")
    if cfg.logging.project or "WANDB_PROJECT" not in os.environ:
        os.environ["WANDB_PROJECT"] = project
    os.environ["WANDB_DIR"] = str(run.path)


def resolve(
    loaded: LoadedConfig, console: Console, hub: HubAnswer | None = None, stage: str = "grpo"
) -> Plan:
    """The config, checked against this machine (`hardware.preflight`, which `grpo doctor`
    shares): backend, precision, tracker, installed packages; then whether the Hub is needed
    and answers (HUB, a probe started earlier). Unsloth, when chosen, is imported here: after
    torch, before trl / transformers / peft. STAGE sft (grpo sft) builds no GRPOConfig."""
    cfg = loaded.config
    checked = preflight(cfg)
    backend, backend_reason = checked.backend, checked.backend_reason

    def refuse(problems: list[tuple[str, str]]) -> None:
        if problems:
            error = config_error(loaded, problems)
            error.hint = (
                f"this machine: {checked.hardware.describe()}; backend {backend} ({backend_reason})"
            )
            raise error

    refuse(checked.problems)
    if hub is not None:  # before unsloth's and trl's imports: offline, the refusal comes at once
        from grpo_cli.hub_access import config_items, refuse_unreachable

        refuse_unreachable(config_items(cfg), hub)
    console.print(f"backend: {backend} ({backend_reason})")
    console.print(f"precision: {checked.precision} ({checked.precision_reason})")
    for note in checked.notes:
        console.print(note, markup=False)
    if backend == "unsloth":
        from grpo_cli.training.models import import_unsloth_first

        import_unsloth_first()
    if stage == "grpo":
        from grpo_cli.training.trl_args import check_construction

        device = checked.hardware.device
        check_construction(loaded, backend, checked.precision, device, checked.tracker)
    return Plan(
        loaded,
        checked.hardware,
        backend,
        backend_reason,
        checked.precision,
        checked.precision_reason,
        checked.tracker,
    )


def build_training_rewards(cfg: GrpoConfig) -> list[TrainingReward]:
    from grpo_cli.rewards.runner import RewardContext, build_rewards
    from grpo_cli.training.callbacks import AccuracyProbe

    context = RewardContext.from_config(cfg)
    bound = build_rewards(cfg.rewards, context, cfg.reward_plugins)
    return [AccuracyProbe(bound[0], context.answer_tag), *bound[1:]]


def find_run_dir(cfg: GrpoConfig, config_path: Path, resume: bool, stage: str = "grpo") -> Path:
    """outputs/<run_name>; with --resume and no run_name, the newest run of this config (of
    STAGE: grpo sft's runs are named <config>-sft-<date>, see rundir.run_name)."""
    from grpo_cli.training.rundir import STAGE_COMMANDS, named_run, run_name, stamped_prefix

    root = Path(cfg.output.dir).expanduser()
    if named_run(cfg, stage) or not resume:
        return root / run_name(cfg, config_path, stage=stage)
    prefix = stamped_prefix(config_path, stage)
    sft = stamped_prefix(config_path, "sft")
    runs = sorted(
        p
        for p in root.glob(f"{prefix}*")
        if (p / "checkpoints").is_dir() and (stage == "sft" or not p.name.startswith(sft))
    )
    if not runs:
        command = STAGE_COMMANDS[stage]
        raise GrpoError(
            f"--resume: no {command} run of {config_path.name} with checkpoints in {root}",
            "name the run with --set output.run_name=NAME, or resume from its config: "
            f"{command} outputs/NAME/config.yaml --resume",
        )
    return runs[-1]


def with_run_name(cfg: GrpoConfig, name: str) -> GrpoConfig:
    """The config as saved in the run: its run name fixed, so the copy resumes this run."""
    return cfg.model_copy(update={"output": cfg.output.model_copy(update={"run_name": name})})


def load_tokenizer(plan: Plan) -> Any:
    """The tokenizer, read before the weights: its chat template is checked and the data's
    prompts are measured with it. Unsloth's own copy comes back with its model."""
    from grpo_cli.training import models

    return models.load_tokenizer(plan.loaded.config)


def load_model(plan: Plan, tokenizer: Any, console: Console) -> tuple[Any, Any]:
    from grpo_cli.training import models

    cfg = plan.loaded.config
    if line := models.starting_point(cfg):
        console.print(line, markup=False)
    if plan.backend == "unsloth":
        if cfg.model.fast_inference:  # said before vLLM starts, which is when it runs short
            console.print(models.vllm_memory_line(cfg, plan.hardware.gpu_memory_gib), markup=False)
        model, tokenizer = models.load_unsloth_model(cfg, plan.precision)
    else:
        model = models.load_trl_model(cfg, plan.precision)
    return models.saved_without_hub_lookup(model), tokenizer


def load_data(
    cfg: GrpoConfig, tokenizer: Any, run: RunDir, console: Console
) -> tuple[Dataset, Dataset | None]:
    """Training rows with the held-out slice removed and over-long prompts dropped (TRL no
    longer truncates prompts), and the rows evaluated during training."""
    from grpo_cli.data.loading import load_training_data, write_heldout

    data = load_training_data(cfg)  # every process reads the same rows (seeded)
    main = distributed.is_main()
    if data.report.warning():
        console.print(f"Warning: {data.report.warning()}", markup=False)
    if data.heldout_ids and main:
        write_heldout(run.path, cfg, data.heldout_ids)
    limit = cfg.training.max_prompt_length

    def fits(prompt: list[dict[str, str]]) -> bool:
        ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True)
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids  # a BatchEncoding in 5.x
        return len(ids) <= limit

    before = len(data.train)
    # A plain loop, not Dataset.filter: datasets would hash `fits` and the tokenizer in it with
    # dill (slow), inside a bare `except:` that swallows a Ctrl-C.
    train = data.train.select([i for i, p in enumerate(data.train["prompt"]) if fits(p)])
    dropped = before - len(train)
    if dropped:
        console.print(
            f"[yellow]Warning:[/] dropped {dropped} of {before} prompts longer than "
            f"training.max_prompt_length {limit} tokens"
        )
    if len(train) == 0:
        raise GrpoError(
            f"every prompt is longer than training.max_prompt_length {limit} tokens",
            "raise training.max_prompt_length (and model.max_seq_length)",
        )
    report = {**data.report.__dict__, "too_long": dropped, "trained_on": len(train)}
    if main:
        run.write_json(run.data, report)
    console.print(f"data: {data.report.summary()}; {len(train)} prompts to train on", markup=False)
    eval_rows = data.heldout
    if cfg.eval.every_steps is not None and eval_rows is None:
        from grpo_cli.data.loading import load_eval_data

        eval_rows = load_eval_data(cfg)[0]
    return train, eval_rows


def periodic_eval(cfg: GrpoConfig, rows: Dataset | None, console: Console) -> PeriodicEval | None:
    """eval.every_steps: greedy accuracy on the first eval.rows held-out rows."""
    if cfg.eval.every_steps is None:
        return None
    from grpo_cli.data.prompts import PromptFormat
    from grpo_cli.training.callbacks import PeriodicEval

    assert rows is not None  # load_data reads eval rows whenever eval.every_steps is set
    first = [rows[i] for i in range(min(cfg.eval.rows, len(rows)))]
    console.print(f"evaluating {len(first)} rows every {cfg.eval.every_steps} steps", markup=False)
    return PeriodicEval(
        first,
        PromptFormat.from_config(cfg.data),
        cfg.eval.every_steps,
        cfg.eval.batch_size,
        cfg.training.max_completion_length,
    )


def build_trainer(
    plan: Plan,
    model: Any,
    tokenizer: Any,
    train_data: Dataset,
    eval_rows: Dataset | None,
    rewards: list[TrainingReward],
    run: RunDir,
    console: Console,
) -> tuple[Any, RunRecorder, GracefulStop]:
    from trl import GRPOTrainer

    from grpo_cli.training.callbacks import GracefulStop, MarkCheckpoints, RunRecorder
    from grpo_cli.training.cpu_kernels import install_if_missing
    from grpo_cli.training.trl_args import (
        build_grpo_config,
        grpo_config_kwargs,
        rewritten_settings,
    )

    cfg = plan.loaded.config
    if plan.hardware.device != "cuda" and install_if_missing():
        console.print("note: TRL's Triton log-prob kernel is unavailable here; using plain torch")
    weights = [reward.weight for reward in rewards]
    asked = grpo_config_kwargs(
        cfg,
        str(run.checkpoints),
        plan.precision,
        plan.hardware.device,
        weights,
        tracker=plan.tracker,
    )
    args = build_grpo_config(asked)
    # Unsloth's GRPOConfig rewrites settings inside its own construction: checked before the
    # trainer is built, then again for what the trainer itself changes.
    check_rewrites(plan.backend, rewritten_settings(asked, args), set(asked), console)
    log = cfg.logging
    recorder = RunRecorder(
        run,
        log.completion_samples,
        log.completion_samples_every,
        console,
        batch_name="completions",
    )
    stop = GracefulStop()
    requested = args.to_dict()
    callbacks: list[TrainerCallback] = [recorder, stop, MarkCheckpoints()]
    periodic = periodic_eval(cfg, eval_rows, console)
    if periodic is not None:
        callbacks.append(periodic)
    trainer = GRPOTrainer(
        model=model,
        # TRL annotates an invariant list of a union of types; a list of reward objects is fine
        reward_funcs=rewards,  # type: ignore[arg-type]
        args=args,
        train_dataset=train_data,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    recorder.trainer = trainer
    if periodic is not None:
        periodic.trainer, periodic.recorder = trainer, recorder
    check_rewrites(
        plan.backend, changed_settings(requested, trainer.args.to_dict()), set(asked), console
    )
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)  # RunRecorder prints one line per step instead
    trainer.remove_callback(ProgressCallback)
    return trainer, recorder, stop


def changed_settings(before: dict[str, Any], after: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Training settings the trainer (Unsloth's patch, or TRL itself) changed on its own."""
    return {k: (before[k], after.get(k)) for k in before if before[k] != after.get(k)}


def check_rewrites(
    backend: str, changes: dict[str, tuple[Any, Any]], explicit: set[str], console: Console
) -> None:
    """Refuse a run whose trainer changed a setting that decides what is learned; note the
    other changes."""
    from grpo_cli.training.trl_args import rewrite_hint, rewrite_problems

    refusals, notes = rewrite_problems(backend, changes, explicit)
    for line in notes:
        console.print(line, markup=False)
    if refusals:
        raise GrpoError(
            "; ".join(f"{key}: {message}" for key, message in refusals), rewrite_hint(backend)
        )


def dry_run_report(plan: Plan, rewards: list[TrainingReward], console: Console) -> int:
    """Tokenizer, a few rows, one rendered prompt and every reward on a right and a wrong
    answer written in the target format; no weights are loaded."""
    from grpo_cli.data.loading import DataReport, format_split, read_config_split
    from grpo_cli.data.prompts import PromptFormat
    from grpo_cli.training.models import load_tokenizer

    cfg = plan.loaded.config
    d = cfg.data
    tokenizer = load_tokenizer(cfg)
    raw = read_config_split(cfg, limit=8)
    rows = format_split(
        raw, d.formatter, PromptFormat.from_config(d), DataReport(d.source, d.split)
    )
    row = rows[0]
    text = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    out = Console(soft_wrap=True)
    out.rule("rendered prompt (chat template applied)")
    out.print(text, markup=False, highlight=False)
    out.rule(f"{len(ids)} tokens (max_prompt_length {cfg.training.max_prompt_length})")
    fmt = PromptFormat.from_config(d)
    gold = str(row["answer"])
    wrong = str(int(float(gold)) + 1) if gold.lstrip("-").replace(".", "", 1).isdigit() else "0"
    right_text, wrong_text = fmt.target("Worked solution.", gold), fmt.target("Worked.", wrong)
    table = Table(title=f"rewards on the gold answer ({gold}) and a wrong one ({wrong})")
    for column in ("reward", "weight", "gold answer", "wrong answer"):
        table.add_column(column)
    columns = {k: [row[k]] * 2 for k in row if k != "prompt"}
    columns["prompts"] = [row["prompt"]] * 2
    failures = []
    for reward in rewards:
        bound = getattr(reward, "bound", reward)
        right_v, wrong_v = bound([right_text, wrong_text], **columns)
        table.add_row(bound.__name__, str(bound.weight), f"{right_v}", f"{wrong_v}")
        if bound.__name__ == "correctness" and not (right_v and right_v > (wrong_v or 0)):
            failures.append("correctness does not pay the gold answer more than a wrong one")
    out.print(table)
    if failures:
        raise GrpoError("; ".join(failures), "check data.answer_tag and the formatter")
    out.print("dry run: config, tokenizer, data and rewards are ready; no weights were loaded")
    return 0


def first_last(history: list[dict[str, Any]], key: str) -> str:
    """KEY's mean over the first and the last tenth of the logged steps: `0.120 -> 0.480`."""
    values = [r[key] for r in history if isinstance(r.get(key), (int, float))]
    if not values:
        return "-"
    tenth = max(1, len(values) // 10)
    first = sum(values[:tenth]) / tenth
    last = sum(values[-tenth:]) / tenth
    return f"{first:.3f} -> {last:.3f}"


def closing_table(
    history: list[dict[str, Any]], steps: int, wall: float, run: RunDir, console: Console
) -> None:
    table = Table(title="grpo train: done", title_justify="left", show_header=False)
    table.add_column("")
    table.add_column("")
    table.add_row("steps", str(steps))
    table.add_row("wall time", f"{wall:.1f} s")
    table.add_row("reward (first -> last 10% of logs)", first_last(history, "reward"))
    table.add_row("accuracy (first -> last 10%)", first_last(history, "accuracy"))
    from grpo_cli.training import health

    warnings = health.read(run.path)
    for warning in warnings:  # the fixes were printed when each was raised, and are in the file
        table.add_row(f"warning (step {warning.step})", warning.message)
    where = display_path(run.path / health.HEALTH_FILE)
    table.add_row("health", f"causes and fixes in {where}" if warnings else "no warnings")
    table.add_row("adapter", display_path(run.adapter))
    console.print(table)
