"""What a user sees while training: a progress bar in a terminal, a line per step elsewhere."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

from rich.console import Console

from grpo_cli.training.callbacks import RunRecorder
from grpo_cli.training.rundir import RunDir

LOGS = {"loss": 0.5, "reward": 1.25, "accuracy": 0.5, "completions/mean_length": 40.0}


def record_two_steps(tmp_path, terminal: bool, main: bool = True) -> tuple[str, RunDir]:
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=120)
    run = RunDir(tmp_path)
    recorder = RunRecorder(run, samples=0, every=1, console=console)
    state = SimpleNamespace(global_step=0, max_steps=2, epoch=0.0, is_world_process_zero=main)
    recorder.on_train_begin(None, state, None)
    for step in (1, 2):
        state.global_step = step
        recorder.on_step_begin(None, state, None)
        recorder.on_step_end(None, state, None)
        recorder.on_log(None, state, None, logs=dict(LOGS))
    recorder.close()
    return out.getvalue(), run


def test_a_terminal_gets_a_progress_bar(tmp_path):
    text, _ = record_two_steps(tmp_path, terminal=True)
    assert "step 2/2" in text and "━" in text and "reward 1.250" in text


def test_only_the_main_process_writes_and_draws(tmp_path):
    # under several processes TRL logs on each; the metrics it logs are already gathered
    text, run = record_two_steps(tmp_path, terminal=True, main=False)
    assert text == "" and not run.metrics.exists()


def test_logs_and_pipes_get_one_line_per_step(tmp_path):
    text, run = record_two_steps(tmp_path, terminal=False)
    assert text.splitlines()[0].startswith("step 1/2  reward 1.250  accuracy 0.500  loss 0.500")
    rows = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and rows[0]["reward"] == 1.25
    assert "━" not in text


def start_eval(tmp_path, global_step: int, main: bool = True) -> tuple[str, RunDir, list[str]]:
    """PeriodicEval at the start of training, its evaluation stubbed: what it writes and says."""
    from grpo_cli.training.callbacks import PeriodicEval

    out = io.StringIO()
    run = RunDir(tmp_path)
    recorder = RunRecorder(run, samples=0, every=1, console=Console(file=out, width=120))
    periodic = PeriodicEval([], None, every=50, batch_size=8, max_new_tokens=8)  # type: ignore[arg-type]
    periodic.trainer, periodic.recorder = object(), recorder
    called: list[str] = []

    def evaluate(model, tokenizer):
        called.append("evaluate")
        return {"strict_accuracy": 0.305, "flexible_accuracy": 0.31, "seconds": 1.5}

    periodic.evaluate = evaluate  # type: ignore[method-assign]
    state = SimpleNamespace(global_step=global_step, max_steps=300, is_world_process_zero=main)
    periodic.on_train_begin(None, state, None)  # type: ignore[arg-type]
    return out.getvalue(), run, called


def test_a_fresh_run_records_the_held_out_accuracy_it_starts_from_as_step_0(tmp_path):
    """The report's held-out curve starts where training did (the warm-up's accuracy), not at
    the first eval.every_steps step."""
    text, run, called = start_eval(tmp_path, global_step=0)
    rows = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    assert called == ["evaluate"]
    figures = {"eval/strict_accuracy": 0.305, "eval/flexible_accuracy": 0.31, "eval/seconds": 1.5}
    assert rows == [{"step": 0, **figures}]
    assert text.startswith("step 0/300  eval accuracy 0.305")


def test_step_0_is_written_once(tmp_path):
    # resumed from a checkpoint: step 0 is in the run already
    _, run, called = start_eval(tmp_path, global_step=100)
    assert called == [] and not run.metrics.exists()
    # started again from the start (no complete checkpoint): resume kept the step 0 it wrote.
    # Every process still evaluates (none reads a file another may be writing); none writes.
    start_eval(tmp_path, global_step=0)
    _, run, called = start_eval(tmp_path, global_step=0)
    assert called == ["evaluate"] and len(run.metrics.read_text().splitlines()) == 1


def test_every_process_evaluates_step_0_and_only_the_main_one_writes_it(tmp_path):
    # under ZeRO-3 and FSDP each forward pass needs every process
    text, run, called = start_eval(tmp_path, global_step=0, main=False)
    assert called == ["evaluate"] and text == "" and not run.metrics.exists()
