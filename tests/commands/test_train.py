"""`grpo train` end to end on the tiny model on CPU: the run directory, the adapter, resume after
an interruption, --dry-run, and the refusals that come before any weights are loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..conftest import CONFIGS

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

INTERRUPT = """
import os, signal
sent = []

def interrupt_in_step_2(completions, trainer_state=None, **kwargs):
    if trainer_state is not None and trainer_state.global_step == 1 and not sent:
        sent.append(True)
        os.kill(os.getpid(), signal.SIGINT)
    return [0.0] * len(completions)
"""


def smoke_args(tiny_model: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "train", str(CONFIGS / "smoke_cpu.yaml"),
        "--set", f"model.name={tiny_model}",
        "--set", f"output.dir={tmp_path / 'outputs'}",
        *extra,
    ]  # fmt: skip


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_smoke_run_writes_the_whole_run_directory(cli, tiny_model, tmp_path):
    result = cli(*smoke_args(tiny_model, tmp_path))
    assert result.code == 0, result.err
    run = tmp_path / "outputs" / "smoke-cpu"
    for name in ("config.yaml", "env.json", "data.json", "heldout.json", "metrics.jsonl",
                 "completions.jsonl", "checkpoints/checkpoint-4", "adapter/adapter_config.json",
                 "adapter/adapter_model.safetensors", "adapter/tokenizer.json"):  # fmt: skip
        assert (run / name).exists(), name
    rows = metrics(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for key in ("loss", "reward", "rewards/correctness/mean", "rewards/correctness/std",
                "completions/mean_length", "completions/clipped_ratio", "learning_rate",
                "step_time", "accuracy"):  # fmt: skip
        assert key in rows[0], key
    # eval.every_steps 2: greedy accuracy on the held-out rows at steps 2 and 4 only
    assert [("eval/strict_accuracy" in r) for r in rows] == [False, True, False, True]
    assert {"eval/flexible_accuracy", "eval/format_rate", "eval/seconds"} <= set(rows[1])
    sample = json.loads((run / "completions.jsonl").read_text().splitlines()[0])
    assert {"step", "prompt", "gold", "completion", "rewards"} <= set(sample)
    assert sample["gold"].isdigit() and "correctness" in sample["rewards"]
    env = json.loads((run / "env.json").read_text())
    assert env["backend"] == "trl" and env["precision"] == "fp32"
    assert env["versions"]["trl"] == "1.15.0" and env["hardware"]["device"] == "cpu"
    assert "backend: trl" in result.err and "step 4/4" in result.err
    assert "grpo train: done" in result.err and "adapter" in result.err
    # the saved config resumes this very run
    assert "run_name: smoke-cpu" in (run / "config.yaml").read_text()


def test_only_the_lora_weights_train(cli, tiny_model, tmp_path):
    from safetensors.torch import load_file

    assert cli(*smoke_args(tiny_model, tmp_path)).code == 0
    adapter = load_file(tmp_path / "outputs/smoke-cpu/adapter/adapter_model.safetensors")
    assert adapter and all("lora_" in name for name in adapter)
    lora_b = [t for name, t in adapter.items() if "lora_B" in name]
    assert any(t.abs().sum() > 0 for t in lora_b), "lora_B starts at zero and must have moved"
    base = load_file(tiny_model / "model.safetensors")
    assert not set(adapter) & set(base)  # base weights are never written back


def test_an_existing_run_is_never_overwritten_without_overwrite(cli, tiny_model, tmp_path):
    assert cli(*smoke_args(tiny_model, tmp_path, "--set", "training.max_steps=1")).code == 0
    result = cli(*smoke_args(tiny_model, tmp_path))
    assert result.code == 2 and "already exists" in result.err and "--resume" in result.err
    assert cli(*smoke_args(tiny_model, tmp_path, "--set", "training.max_steps=1",
                           "--overwrite")).code == 0  # fmt: skip


def test_sigint_saves_a_checkpoint_and_resume_continues_like_an_uninterrupted_run(
    cli, tiny_model, tmp_path, write, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    write("interrupt.py", INTERRUPT)
    args = smoke_args(tiny_model, tmp_path, "--set", "training.save_steps=100")
    with_interrupt = [*args, "--set", "rewards=[xml_count, soft_format, strict_format, "
                      "integer_answer, correctness, length_penalty, "
                      "{name: interrupt.py:interrupt_in_step_2, weight: 0}]"]  # fmt: skip
    stopped = cli(*with_interrupt, "--set", "output.run_name=stopped")
    assert stopped.code == 130, stopped.err
    run = tmp_path / "outputs" / "stopped"
    assert "Resume with: grpo train" in stopped.err and "--resume" in stopped.err
    assert (run / "checkpoints" / "checkpoint-2").is_dir()
    assert not (run / "adapter").exists()
    assert [r["step"] for r in metrics(run)] == [1, 2]

    resumed = cli("train", str(run / "config.yaml"), "--resume")
    assert resumed.code == 0, resumed.err
    assert [r["step"] for r in metrics(run)] == [1, 2, 3, 4]
    assert (run / "adapter" / "adapter_model.safetensors").is_file()

    straight = cli(*with_interrupt, "--set", "output.run_name=straight")
    # the same run without stopping: interrupt.py only fires once per process
    assert straight.code == 0, straight.err
    a, b = metrics(run), metrics(tmp_path / "outputs" / "straight")
    assert [r["learning_rate"] for r in a] == pytest.approx([r["learning_rate"] for r in b])
    state = json.loads((run / "checkpoints/checkpoint-4/trainer_state.json").read_text())
    assert state["global_step"] == 4


def test_resume_without_a_checkpoint_is_refused(cli, tiny_model, tmp_path):
    result = cli(*smoke_args(tiny_model, tmp_path, "--resume"))
    assert result.code == 2 and "does not exist" in result.err


def test_dry_run_renders_a_prompt_and_checks_the_rewards_without_loading_weights(
    cli, tiny_model, tmp_path
):
    result = cli(*smoke_args(tiny_model, tmp_path, "--dry-run"))
    assert result.code == 0, result.err
    assert "<|im_start|>system" in result.out and "<|im_start|>assistant" in result.out
    assert "tokens (max_prompt_length 256)" in result.out
    assert "correctness" in result.out and "2.0" in result.out
    assert "no weights were loaded" in result.out
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("model.quantization=4bit", "4bit weights need a CUDA GPU"),
        ("model.fast_inference=true", "fast_inference is Unsloth's colocated vLLM"),
        ("model.dtype=bf16", "bf16 needs a CUDA GPU"),
        ("training.optim=adamw_8bit", "adamw_8bit needs bitsandbytes and a CUDA GPU"),
        ("training.trl={scale_reward: batch}", "Did you mean 'scale_rewards'?"),
    ],
)
def test_settings_this_machine_cannot_run_are_refused_before_loading(
    cli, tiny_model, tmp_path, override, needle
):
    result = cli(*smoke_args(tiny_model, tmp_path, "--set", override))
    assert result.code == 2 and needle in result.err, result.err
    assert f"--set {override}" in result.err and "Traceback" not in result.err  # where it was set
    assert not (tmp_path / "outputs").exists()


def test_the_seed_recipe_on_a_cpu_machine_says_what_to_change(cli, tmp_path):
    result = cli("train", str(CONFIGS / "qwen3b_gsm8k.yaml"), "--set", f"output.dir={tmp_path}")
    assert result.code == 2
    assert (
        "configs/qwen3b_gsm8k.yaml:8: model.quantization: 4bit weights need a CUDA GPU"
        in result.err
    )
    assert "model.fast_inference" in result.err and "training.optim" in result.err


def test_the_unsloth_backend_trains_through_its_cpu_fallback(tiny_model, tmp_path):
    """Unsloth patches trl and transformers process-wide, so it runs in a process of its own."""
    import subprocess
    import sys

    from tests.optional import require

    require("unsloth", "the unsloth backend (scripts/test.sh installs it with --no-deps)")
    grpo = Path(sys.executable).with_name("grpo")
    args = [str(grpo), *smoke_args(tiny_model, tmp_path, "--set", "model.backend=unsloth")]
    result = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "backend: unsloth (model.backend is unsloth)" in result.stderr
    assert "Unsloth should be imported before" not in result.stdout + result.stderr
    run = tmp_path / "outputs" / "smoke-cpu"
    assert json.loads((run / "env.json").read_text())["backend"] == "unsloth"
    assert [r["step"] for r in metrics(run)] == [1, 2, 3, 4]
    assert (run / "adapter" / "adapter_model.safetensors").is_file()


def test_tensorboard_logs_go_into_the_run_directory(cli, tiny_model, tmp_path):
    from tests.optional import require

    require("tensorboard", "logging.report_to: tensorboard (pip install -e '.[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    args = smoke_args(tiny_model, tmp_path, "--set", "logging.report_to=tensorboard")
    assert cli(*args, "--set", "training.max_steps=2").code == 0
    events = list((tmp_path / "outputs/smoke-cpu/tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    scalars = EventAccumulator(str(events[0])).Reload().Tags()["scalars"]
    assert {"train/reward", "train/loss", "train/accuracy"} <= set(scalars)


def test_no_token_reaches_the_run_directory(cli, tiny_model, tmp_path, monkeypatch):
    token = "hf_" + "Zq8" * 12
    monkeypatch.setenv("HF_TOKEN", token)
    monkeypatch.setenv("WANDB_API_KEY", token)
    assert cli(*smoke_args(tiny_model, tmp_path, "--set", "training.max_steps=1")).code == 0
    run = tmp_path / "outputs" / "smoke-cpu"
    for path in run.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path
