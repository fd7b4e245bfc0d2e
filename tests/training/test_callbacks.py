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
