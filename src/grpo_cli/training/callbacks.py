"""What a run records and shows while it trains: metrics.jsonl, completions.jsonl, a progress
line per step, accuracy, and a clean stop on Ctrl-C / SIGTERM that leaves a checkpoint."""

from __future__ import annotations

import math
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from rich.console import Console
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from grpo_cli.distributed import any_process, barrier, is_main
from grpo_cli.files import read_jsonl
from grpo_cli.rewards.builtin import completion_text, strictly_correct
from grpo_cli.rewards.runner import BoundReward
from grpo_cli.training.checkpoints import mark_complete
from grpo_cli.training.health import HealthWatch
from grpo_cli.training.rundir import RunDir

if TYPE_CHECKING:
    from grpo_cli.data.prompts import PromptFormat


class AccuracyProbe:
    """Wraps the first reward: also logs strict accuracy and the gold answers, through the
    `log_metric` / `log_extra` hooks TRL passes to reward functions."""

    def __init__(self, bound: BoundReward, answer_tag: str):
        self.bound, self.answer_tag = bound, answer_tag
        self.__name__ = bound.__name__
        self.weight = bound.weight

    def __call__(self, completions: list[Any], **columns: Any) -> list[float | None]:
        values = self.bound(completions, **columns)
        answers = columns.get("answer")
        if answers is not None and "log_metric" in columns:
            right = sum(
                # grade()'s strict rule alone: the flexible reading would cost every step, and
                # strict_value is cached from the correctness reward that just ran
                strictly_correct(completion_text(c), gold, self.answer_tag)
                for c, gold in zip(completions, answers, strict=True)
            )
            columns["log_metric"]("accuracy", right / max(1, len(completions)))
            if "log_extra" in columns:
                columns["log_extra"]("gold", [str(a) for a in answers])
        return values


class RunRecorder(TrainerCallback):
    """metrics.jsonl (every log), completions.jsonl (every N steps), and what the user sees: a
    progress bar in a terminal, one line per logged step elsewhere (CI logs, pipes)."""

    def __init__(
        self,
        run: RunDir,
        samples: int,
        every: int,
        console: Console,
        watch_health: bool = True,
        batch_name: str | None = None,
    ):
        self.run, self.samples, self.every, self.console = run, samples, every, console
        # BATCH_NAME: the key under which each record counts what one optimizer step trained on,
        # over every process (grpo train: completions)
        self.batch_name = batch_name
        self.trainer: Any = None  # set once the trainer exists; its sample buffer is read
        self.step_started = 0.0
        self.step_times: list[float] = []
        self.history: list[dict[str, Any]] = []
        # the health rules read GRPO's metrics; grpo sft's run has none of them
        self.health = HealthWatch(run.path) if watch_health else None
        self.progress: Any = None
        self.task: Any = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not self.console.is_terminal or not state.is_world_process_zero:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("step {task.completed}/{task.total}"),
            BarColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
        )
        self.task = self.progress.add_task(
            "train", total=state.max_steps, completed=state.global_step, status=""
        )
        self.progress.start()

    def close(self) -> None:
        """Stop the progress bar (also when training raised), leaving the terminal usable."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.step_started = time.perf_counter()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.step_times.append(time.perf_counter() - self.step_started)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not logs or "loss" not in logs and "reward" not in logs:
            return
        # TRL gathers the metrics and samples of every process before it logs
        # (trl/trainer/grpo_trainer.py, gather / gather_object): the main process writes them
        if not state.is_world_process_zero:
            return
        record = {"step": state.global_step, "epoch": state.epoch}
        record.update({k: _plain(v) for k, v in logs.items()})
        if self.batch_name:
            # as the trainer runs, not as the config asked: world_size is the processes it sees
            batch = args.per_device_train_batch_size * args.gradient_accumulation_steps
            record[self.batch_name] = batch * args.world_size
        if self.step_times:
            record["step_time"] = round(self.step_times[-1], 4)
        self.run.append_jsonl(self.run.metrics, record)
        self.history.append(record)
        if self.health is not None:
            self.health.observe(self.history)
        line = _progress_line(record, state.max_steps)
        if self.progress is not None:
            status = line.split("  ", 1)[1] if "  " in line else ""
            self.progress.update(self.task, completed=state.global_step, status=status)
        else:
            self.console.print(line)
        if self.samples and self.trainer is not None and state.global_step % self.every == 0:
            self._write_samples(state.global_step)

    def record_start(self, state: TrainerState, figures: dict[str, Any]) -> None:
        """The held-out figures of the model training starts from, as step 0 of metrics.jsonl,
        so the report's curve starts where training did. Not in the health history: the
        health rules read training's metrics, which step 0 has none of."""
        if not state.is_world_process_zero:
            return
        record = {"step": 0, **{k: _plain(v) for k, v in figures.items()}}
        # a run started again from the start (no complete checkpoint) kept the step 0 it wrote
        # (checkpoints.py keeps step 0): the same starting model, written once
        if not any(r.get("step") == 0 for r in read_jsonl(self.run.metrics)):
            self.run.append_jsonl(self.run.metrics, record)
        line = _progress_line(record, state.max_steps)
        if self.progress is not None:
            self.progress.update(self.task, status=line.split("  ", 1)[1])
        else:
            self.console.print(line)

    def _write_samples(self, step: int) -> None:
        logs = self.trainer._logs  # TRL's buffer of the last generation round
        prompts, completions = list(logs["prompt"]), list(logs["completion"])
        golds = list(logs["extra"].get("gold", []))
        rewards = {name: list(values) for name, values in logs["rewards"].items()}
        for i in range(min(self.samples, len(completions))):
            self.run.append_jsonl(
                self.run.completions,
                {
                    "step": step,
                    "prompt": prompts[i],
                    "gold": golds[i] if i < len(golds) else None,
                    "completion": completion_text(completions[i]),
                    "rewards": {name: _plain(values[i]) for name, values in rewards.items()},
                },
            )


class PeriodicEval(TrainerCallback):
    """Greedy accuracy on a few held-out rows every N steps, graded like `grpo eval`. The
    figures join the step's training metrics (so metrics.jsonl and the tracker get them) through
    GRPOTrainer's metric buffer, which its `log()` averages and clears at every log."""

    KEYS = ("strict_accuracy", "flexible_accuracy", "format_rate", "mean_completion_tokens")

    def __init__(
        self,
        rows: list[dict[str, Any]],
        fmt: PromptFormat,
        every: int,
        batch_size: int,
        max_new_tokens: int,
    ):
        from grpo_cli.evaluation.generate import Sampling

        self.rows, self.fmt, self.every, self.batch_size = rows, fmt, every, batch_size
        self.sampling = Sampling(max_new_tokens=max_new_tokens)
        self.trainer: Any = None
        self.recorder: RunRecorder | None = None  # writes step 0, the model before training

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        processing_class: Any = None,
        **kwargs: Any,
    ) -> None:
        # A start from step 0 only: a run resumed from a checkpoint has its step 0. Every
        # process evaluates whatever the run holds (under ZeRO-3 and FSDP the forward passes
        # need them all), so none decides from a file another may be writing.
        if state.global_step != 0 or self.trainer is None or self.recorder is None:
            return
        figures = self.evaluate(model, processing_class)
        self.recorder.record_start(state, {f"eval/{k}": v for k, v in figures.items()})

    def on_step_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        processing_class: Any = None,
        **kwargs: Any,
    ) -> None:
        if state.global_step % self.every or self.trainer is None:
            return
        # Every process evaluates (the same rows, so the averaged figures are the one-process
        # ones): under ZeRO-3 and FSDP each forward pass needs all of them to gather weights.
        self.trainer._metrics["train"].update(
            {f"eval/{k}": [v] for k, v in self.evaluate(model, processing_class).items()}
        )

    def evaluate(self, model: Any, tokenizer: Any) -> dict[str, float]:
        from grpo_cli.evaluation.generate import TransformersEngine
        from grpo_cli.evaluation.metrics import summarize
        from grpo_cli.evaluation.predictions import generate_and_grade

        started = time.perf_counter()
        engine = TransformersEngine(model, tokenizer)
        records = []
        for start in range(0, len(self.rows), self.batch_size):
            batch = self.rows[start : start + self.batch_size]
            records += generate_and_grade(engine, batch, self.sampling, self.fmt)
        metrics = summarize(records)
        out = {k: float(metrics[k]) for k in self.KEYS}
        out["seconds"] = time.perf_counter() - started
        return out


class MarkCheckpoints(TrainerCallback):
    """Marks each checkpoint complete. The Trainer calls on_save after `_save_checkpoint` has
    written weights, optimizer, scheduler, RNG and trainer state, so a checkpoint a hard stop or
    a full disk interrupted never gets the marker, and --resume never picks it."""

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        assert args.output_dir is not None  # TrainingArguments fills it in when not given
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        # every process writes its own RNG state (rng_state_<rank>.pth) into the checkpoint:
        # it is complete once all of them are done
        barrier()
        if state.is_world_process_zero and checkpoint.is_dir():
            mark_complete(checkpoint)


class GracefulStop(TrainerCallback):
    """Ctrl-C or SIGTERM: finish the current step, save a checkpoint, stop. A second Ctrl-C
    stops at once. Under several processes the stop is decided together at every step's end,
    so that all of them stop at the same step and save one checkpoint, whichever got the
    signal."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        if not is_main():
            return
        print(
            f"\n{self.requested}: saving a checkpoint after this step, then stopping "
            "(press Ctrl-C again to stop at once, without saving)",
            file=sys.stderr,
        )

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if any_process(self.requested is not None):
            self.requested = self.requested or "a signal to another process"
            control.should_save = True
            control.should_training_stop = True


def _progress_line(record: dict[str, Any], max_steps: int) -> str:
    parts = [f"step {record['step']}/{max_steps}"]
    for key, label in (
        ("reward", "reward"),
        ("accuracy", "accuracy"),
        ("loss", "loss"),
        ("mean_token_accuracy", "token accuracy"),
        ("completions/mean_length", "length"),
        ("eval/strict_accuracy", "eval accuracy"),
    ):
        value = record.get(key)
        if isinstance(value, (int, float)):
            parts.append(
                f"{label} {value:.3f}"
                if key != "completions/mean_length"
                else f"{label} {value:.0f}"
            )
    if "step_time" in record:
        parts.append(f"{record['step_time']:.2f}s/step")
    return "  ".join(parts)


def _plain(value: Any) -> Any:
    """JSON-safe: floats stay floats (NaN becomes null), tensors become numbers."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
