"""grpo train on two processes for real: accelerate's DDP on the gloo backend, on CPU, with the
tiny model. Each run starts two Python processes that import torch (about 15 s on 2 cores)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import CONFIGS, REPO, smoke_args

pytestmark = pytest.mark.slow

# Measured on 2 cores, configs/smoke_cpu.yaml (4 steps, seed 3407): 1 and 2 processes train the
# same prompts in every step, but each process samples its completions from its own random
# stream, so the curves differ by sampling: per step by up to 0.18 in reward and 0.09 in loss,
# over the 4 steps by 0.046 in mean reward and 0.011 in mean loss. The tolerances are about 3x.
MEAN_REWARD_TOLERANCE = 0.15
MEAN_LOSS_TOLERANCE = 0.05


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "GRPO_THREADS"):
        env.pop(key, None)
    return env


def grpo(*args: str, cwd: Path, tmpdir: Path | None = None) -> subprocess.Popen[str]:
    env = environment()
    if tmpdir is not None:  # the system's temporary folder, for this command alone
        tmpdir.mkdir(parents=True, exist_ok=True)
        env["TMPDIR"] = str(tmpdir)
    return subprocess.Popen(
        [sys.executable, "-m", "grpo_cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(process: subprocess.Popen[str], limit: float = 600) -> tuple[int, str]:
    out, err = process.communicate(timeout=limit)
    return process.returncode, out + err


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def prompt_tokens(rows: list[dict]) -> list[float]:
    """Prompt tokens each step trained on: TRL's num_tokens counts prompt and completion tokens
    of every process, summed over the run (trl/trainer/grpo_trainer.py, num_input_tokens_seen)."""
    seen, out = 0.0, []
    for row in rows:
        out.append(row["num_tokens"] - seen - row["completions"] * row["completions/mean_length"])
        seen = row["num_tokens"]
    return out


def mean(rows: list[dict], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows)


def test_two_processes_train_the_same_global_batch_as_one(cli, tiny_model, tmp_path):
    started = time.perf_counter()
    one = cli(*smoke_args(tiny_model, tmp_path / "one"))
    assert one.code == 0, one.err
    port = str(free_port())
    two = grpo(
        *smoke_args(tiny_model, tmp_path / "two", "--processes", "2", "--main-process-port", port),
        cwd=tmp_path,
        tmpdir=tmp_path / "system-tmp",
    )
    code, text = finished(two)
    assert code == 0, text
    # the launch leaves nothing in the system's temporary folder (torch's elastic agent made a
    # torchelastic_* folder there for every launch)
    assert list((tmp_path / "system-tmp").iterdir()) == []
    runs = list((tmp_path / "two" / "outputs").iterdir())
    assert [r.name for r in runs] == ["smoke-cpu"]
    run = runs[0]
    assert text.count("run directory:") == 1  # the main process speaks for both
    rows, alone = metrics(run), metrics(tmp_path / "one" / "outputs" / "smoke-cpu")
    # one row per step, not one per process; step 0 (held-out before training) once too
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4]
    rows, alone = rows[1:], alone[1:]
    assert [r["completions"] for r in rows] == [r["completions"] for r in alone] == [8] * 4
    # the same prompts in every step: the global batch was split, not repeated
    assert prompt_tokens(rows) == pytest.approx(prompt_tokens(alone))
    assert abs(mean(rows, "reward") - mean(alone, "reward")) <= MEAN_REWARD_TOLERANCE
    assert abs(mean(rows, "loss") - mean(alone, "loss")) <= MEAN_LOSS_TOLERANCE
    env = json.loads((run / "env.json").read_text())
    assert env["distributed"] == {"world_size": 2, "launcher": "accelerate", "mode": "ddp"}
    checkpoint = run / "checkpoints" / "checkpoint-4"
    assert {"rng_state_0.pth", "rng_state_1.pth", "checkpoint_complete.json"} <= {
        p.name for p in checkpoint.iterdir()
    }

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    model = PeftModel.from_pretrained(base, run / "adapter")
    assert any("lora_A" in name for name, _ in model.named_parameters())
    print(f"1 vs 2 processes: {time.perf_counter() - started:.1f} s")


def test_two_machines_meet_at_the_main_ones_address(tiny_model, tmp_path):
    """Two `accelerate launch` commands, one per simulated machine, one process each."""
    started = time.perf_counter()
    port = str(free_port())
    train = smoke_args(tiny_model, tmp_path, "--set", "training.max_steps=2")
    machines = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "accelerate.commands.launch",
                "--config_file",
                str(CONFIGS / "accelerate" / "ddp.yaml"),
                "--num_processes",
                "2",
                "--num_machines",
                "2",
                "--machine_rank",
                str(rank),
                "--main_process_ip",
                "127.0.0.1",
                "--main_process_port",
                port,
                "--log_dir",  # not a torchelastic_* folder in the system's temporary folder
                str(tmp_path / f"launcher-logs-{rank}"),
                "-m",
                "grpo_cli",
                *train,
            ],
            cwd=tmp_path,
            env=environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    (code0, text0), (code1, text1) = (finished(m) for m in machines)
    assert (code0, code1) == (0, 0), text0 + text1
    assert "run directory:" in text0 and "run directory:" not in text1
    run = tmp_path / "outputs" / "smoke-cpu"
    assert [r["step"] for r in metrics(run)] == [0, 1, 2]
    assert json.loads((run / "env.json").read_text())["distributed"]["world_size"] == 2
    assert (run / "adapter" / "adapter_config.json").is_file()
    print(f"two machines: {time.perf_counter() - started:.1f} s")


def test_ctrl_c_stops_both_processes_at_one_step_and_resume_goes_on(tiny_model, tmp_path):
    started = time.perf_counter()
    port = str(free_port())
    settings = ["--set", "training.max_steps=20", "--set", "training.save_steps=100"]
    settings += ["--set", "eval.every_steps=null", "--set", "training.lr_scheduler_type=linear"]
    launch = ["--processes", "2", "--main-process-port", port]
    first = grpo(*smoke_args(tiny_model, tmp_path, *settings, *launch), cwd=tmp_path)
    run = tmp_path / "outputs" / "smoke-cpu"
    while not (run / "metrics.jsonl").is_file() or not metrics(run):
        assert first.poll() is None, finished(first)[1]
        time.sleep(0.05)
    first.send_signal(signal.SIGINT)
    code, text = finished(first)
    assert code == 130, text
    stopped = metrics(run)
    step = stopped[-1]["step"]
    assert step < 20, "the run ended before the stop reached it"
    assert [c.name for c in (run / "checkpoints").glob("checkpoint-*")] == [f"checkpoint-{step}"]
    assert f"Stopped by SIGINT at step {step}" in text
    assert "--resume --processes 2" in text

    resumed = grpo(
        "train", str(run / "config.yaml"), "--resume", *launch[:2], "--main-process-port",
        str(free_port()), cwd=tmp_path,
    )  # fmt: skip
    code, text = finished(resumed)
    assert code == 0, text
    rows = metrics(run)
    assert [r["step"] for r in rows] == list(range(1, 21))  # no step twice, none missing
    rates = [r["learning_rate"] for r in rows]
    # the linear schedule goes on from where it stopped: one decrement all the way down
    assert [a - b for a, b in itertools.pairwise(rates)] == pytest.approx([rates[0] / 20] * 19)
    print(f"stop and resume: {time.perf_counter() - started:.1f} s")


ONE_PROCESS_FAILS = """
import os
from grpo_cli.rewards import reward

@reward("fails_on_process_1")
def fails_on_process_1(completions, **kwargs):
    if os.environ.get("RANK") == "1" and completions:  # at a step, after the config checks
        raise ValueError("the scratch disk of process 1 is full")
    return [0.0 for _ in completions]
"""


def test_a_failure_of_one_process_alone_is_said_and_is_the_exit_code(tiny_model, tmp_path):
    """Process 1 fails at a step and exits with 2, saying nothing (only the main process
    speaks); the main one then loses its connection. The user reads process 1's error, once,
    and the run ends with its code, not the main process's lost connection."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "fails.py").write_text(ONE_PROCESS_FAILS)
    train = smoke_args(
        tiny_model,
        tmp_path,
        "--set",
        f"reward_plugins=[{plugins}]",
        "--set",
        "rewards=[{name: correctness}, {name: fails_on_process_1}]",
        "--set",
        "training.max_steps=3",
        "--processes",
        "2",
        "--main-process-port",
        str(free_port()),
    )
    code, text = finished(grpo(*train, cwd=tmp_path))
    assert code == 2, text
    assert "process 1 of the run failed (exit 2)" in text
    assert text.count("the scratch disk of process 1 is full") == 1, text
