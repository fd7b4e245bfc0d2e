"""`grpo train` end to end on the tiny model on CPU: the run directory, the adapter, resume after
an interruption, --dry-run, and the refusals that come before any weights are loaded."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grpo_cli.files import umask_mode

from ..conftest import CONFIGS, REPO, smoke_args

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


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def no_weights(monkeypatch):
    """Fail the test if the model's weights are loaded."""

    def load(*args, **kwargs):
        pytest.fail("the model was loaded before a check the user could fail")

    monkeypatch.setattr("grpo_cli.training.models.load_trl_model", load)
    monkeypatch.setattr("grpo_cli.training.models.load_unsloth_model", load)


def test_smoke_run_writes_the_whole_run_directory(cli, tiny_model, tmp_path):
    result = cli(*smoke_args(tiny_model, tmp_path))
    assert result.code == 0, result.err
    run = tmp_path / "outputs" / "smoke-cpu"
    for name in (
        "config.yaml",
        "env.json",
        "data.json",
        "heldout.json",
        "metrics.jsonl",
        "completions.jsonl",
        "checkpoints/checkpoint-4",
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
        "adapter/tokenizer.json",
    ):
        assert (run / name).exists(), name
    start, *rows = metrics(run)
    # step 0: the held-out accuracy of the model training starts from, and nothing else
    assert start["step"] == 0 and "eval/strict_accuracy" in start and "loss" not in start
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for key in (
        "loss",
        "reward",
        "rewards/correctness/mean",
        "rewards/correctness/std",
        "completions/mean_length",
        "completions/clipped_ratio",
        "learning_rate",
        "step_time",
        "accuracy",
    ):
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
    for name in ("config.yaml", "env.json", "data.json", "heldout.json"):
        assert stat.S_IMODE((run / name).stat().st_mode) == umask_mode(), name
    assert not (run / "run.lock").exists()  # handed back when the run ends


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
    assert (
        cli(*smoke_args(tiny_model, tmp_path, "--set", "training.max_steps=1", "--overwrite")).code
        == 0
    )


def test_sigint_saves_a_checkpoint_and_resume_continues_like_an_uninterrupted_run(
    cli, tiny_model, tmp_path, write, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    write("interrupt.py", INTERRUPT)
    args = smoke_args(tiny_model, tmp_path, "--set", "training.save_steps=100")
    with_interrupt = [
        *args,
        "--set",
        "rewards=[xml_count, soft_format, strict_format, "
        "integer_answer, correctness, length_penalty, "
        "{name: interrupt.py:interrupt_in_step_2, weight: 0}]",
    ]
    stopped = cli(*with_interrupt, "--set", "output.run_name=stopped")
    assert stopped.code == 130, stopped.err
    run = tmp_path / "outputs" / "stopped"
    assert "Resume with: grpo train" in stopped.err and "--resume" in stopped.err
    assert (run / "checkpoints" / "checkpoint-2").is_dir()
    assert not (run / "adapter").exists()
    assert [r["step"] for r in metrics(run)] == [0, 1, 2]
    # the pictures of the steps done so far are drawn on the way out
    assert (run / "report" / "reward.png").is_file() and "report.html" in stopped.err

    resumed = cli("train", str(run / "config.yaml"), "--resume")
    assert resumed.code == 0, resumed.err
    assert "resuming from checkpoint-2 (step 2 of 4)" in resumed.err
    assert [r["step"] for r in metrics(run)] == [0, 1, 2, 3, 4]  # step 0 evaluated once
    assert (run / "adapter" / "adapter_model.safetensors").is_file()

    straight = cli(*with_interrupt, "--set", "output.run_name=straight")
    # the same run without stopping: interrupt.py only fires once per process
    assert straight.code == 0, straight.err
    a, b = metrics(run)[1:], metrics(tmp_path / "outputs" / "straight")[1:]  # past step 0
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
    assert [r["step"] for r in metrics(run)] == [0, 1, 2, 3, 4]
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


# --- one owner, re-startable failures, checks before weights, stops that say what they kept ----


@pytest.mark.parametrize("flag", [None, "--overwrite", "--resume"])
def test_a_run_still_training_is_never_touched(cli, tiny_model, tmp_path, run_in_use, flag):
    run, proc = run_in_use
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    args = smoke_args(tiny_model, tmp_path, "--set", "output.run_name=busy")
    result = cli(*args, *([flag] if flag else []))
    assert result.code == 2, result.err
    assert f"is in use by pid {proc.pid} on host" in result.err and "Hint:" in result.err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    assert proc.poll() is None  # the owner goes on


@pytest.mark.parametrize("in_use", [False, True])
def test_a_refused_run_is_refused_before_any_ml_library_is_imported(
    tiny_model, tmp_path, run_in_use, in_use
):
    run, _ = run_in_use
    if not in_use:
        run_in_use[1].kill()
        run_in_use[1].wait()
    args = smoke_args(tiny_model, tmp_path, "--set", "output.run_name=busy")
    code = (
        "import sys, time\nfrom grpo_cli.cli import main\nstarted = time.perf_counter()\n"
        f"rc = main({args!r})\n"
        "heavy = [m for m in ('torch', 'trl', 'transformers', 'datasets') if m in sys.modules]\n"
        "print('HEAVY', heavy, rc, file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert "HEAVY [] 2" in result.stderr, result.stderr
    assert ("in use by pid" if in_use else "already exists") in result.stderr


def test_a_failed_start_is_started_again_by_the_same_command(cli, tiny_model, tmp_path, write):
    bad = write("bad.jsonl", '{"question": "What is 2 + 2?", "answer": "#### 4"}\n{oops\n')
    args = smoke_args(tiny_model, tmp_path, "--set", "training.max_steps=1")
    failed = cli(*args, "--set", f"data.source={bad}")
    assert failed.code == 2 and f"{bad}:2: not a JSON object" in failed.err, failed.err
    run = tmp_path / "outputs" / "smoke-cpu"
    assert (run / "config.yaml").is_file() and not (run / "run.lock").exists()
    again = cli(*args)
    assert again.code == 0, again.err
    assert f"replacing {run}: an earlier start stopped before its first step" in again.err
    assert [r["step"] for r in metrics(run)] == [0, 1]


@pytest.mark.usefixtures("no_weights")
def test_a_broken_data_file_is_refused_before_the_model_loads(cli, tiny_model, tmp_path, write):
    bad = write("bad.jsonl", "{not json\n")
    result = cli(*smoke_args(tiny_model, tmp_path, "--set", f"data.source={bad}"))
    assert result.code == 2 and f"{bad}:1: not a JSON object" in result.err, result.err


@pytest.mark.usefixtures("no_weights")
def test_a_tokenizer_without_chat_template_is_refused_before_the_model_loads(
    cli, tiny_model, tmp_path
):
    plain = tmp_path / "plain-model"
    plain.mkdir()
    for item in tiny_model.iterdir():
        if item.name != "chat_template.jinja":
            (plain / item.name).symlink_to(item)
    config = json.loads((tiny_model / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").unlink()
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    result = cli(*smoke_args(plain, tmp_path))
    assert result.code == 2 and "has no chat template" in result.err, result.err


def test_ctrl_c_while_the_model_loads_says_how_to_go_on(cli, tiny_model, tmp_path, monkeypatch):
    def interrupted_load(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
        pytest.fail("the Ctrl-C did not stop the loading")

    monkeypatch.setattr("grpo_cli.training.models.load_trl_model", interrupted_load)
    result = cli(*smoke_args(tiny_model, tmp_path))
    run = tmp_path / "outputs" / "smoke-cpu"
    assert result.code == 130
    assert "Stopped by Ctrl-C while loading the model; no checkpoint was saved yet" in result.err
    assert f"grpo train {run / 'config.yaml'} --resume" in result.err
    assert not (run / "run.lock").exists()

    monkeypatch.undo()
    resumed = cli("train", run / "config.yaml", "--resume", "--set", "training.max_steps=1")
    assert resumed.code == 0, resumed.err
    assert "has no checkpoint yet; starting from step 0" in resumed.err
    assert [r["step"] for r in metrics(run)] == [0, 1]


@pytest.mark.usefixtures("no_weights")
def test_a_ctrl_c_a_library_swallows_while_reading_data_still_stops(
    cli, tiny_model, tmp_path, monkeypatch
):
    from grpo_cli.data import loading

    real = loading.format_split

    def swallowing(*args, **kwargs):
        try:  # what datasets' fingerprinting does around dill
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except:  # noqa: E722
            pass
        return real(*args, **kwargs)

    monkeypatch.setattr(loading, "format_split", swallowing)
    result = cli(*smoke_args(tiny_model, tmp_path))
    assert result.code == 130, result.err
    assert "Stopped by Ctrl-C while reading the data" in result.err


def test_an_output_folder_the_user_cannot_write_is_a_user_error(
    cli, tiny_model, tmp_path, monkeypatch
):
    target = tmp_path / "outputs" / "smoke-cpu"
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self == target:  # as root, chmod would not stop the write
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    result = cli(*smoke_args(tiny_model, tmp_path))
    assert result.code == 2, result.err
    assert f"Error: cannot create the run directory {target}" in result.err
    assert "Permission denied" in result.err and "output.dir" in result.err
    assert "Traceback" not in result.err and "unexpected" not in result.err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_a_user_error(cli, tiny_model, tmp_path):
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs").chmod(0o555)
    try:
        result = cli(*smoke_args(tiny_model, tmp_path))
    finally:
        (tmp_path / "outputs").chmod(0o755)
    assert result.code == 2 and "cannot create the run directory" in result.err, result.err


def steps(path: Path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def fail_saving(monkeypatch, name: str, step: int, error: BaseException) -> None:
    """torch.save writes half of FILE in checkpoint-STEP, then raises ERROR, as a hard stop or a
    full disk does partway through a save."""
    import torch

    real = torch.save

    def save(obj, f, *args, **kwargs):
        if str(f).endswith(f"checkpoint-{step}/{name}"):
            real(obj, f, *args, **kwargs)
            data = Path(f).read_bytes()
            Path(f).write_bytes(data[: len(data) // 2])
            raise error
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


def test_a_hard_stop_while_saving_leaves_each_step_once_after_resume(
    cli, tiny_model, tmp_path, monkeypatch
):
    """A second Ctrl-C while checkpoint-4 is written: steps 3 and 4 are logged past the last
    complete checkpoint, and the kill cut a line short; resume replays them exactly once."""
    fail_saving(monkeypatch, "optimizer.pt", 4, KeyboardInterrupt())
    stopped = cli(*smoke_args(tiny_model, tmp_path))
    assert stopped.code == 130, stopped.err
    monkeypatch.undo()
    run = tmp_path / "outputs" / "smoke-cpu"
    assert steps(run / "metrics.jsonl") == [0, 1, 2, 3, 4]
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 5, "loss": 0.1')  # what kill -9 leaves mid-write

    resumed = cli("train", str(run / "config.yaml"), "--resume")
    assert resumed.code == 0, resumed.err
    assert "removed checkpoint-4: half-written" in resumed.err
    # where it resumes comes first, then what was cleaned up to resume there
    assert resumed.err.index("resuming from checkpoint-2") < resumed.err.index("removed")
    assert "dropped 2 records of metrics.jsonl past checkpoint-2" in resumed.err
    assert "dropped 4 records of completions.jsonl past checkpoint-2" in resumed.err
    assert "dropped 1 cut-short line of metrics.jsonl" in resumed.err
    assert steps(run / "metrics.jsonl") == [0, 1, 2, 3, 4]
    assert steps(run / "completions.jsonl") == [1, 1, 2, 2, 3, 3, 4, 4]
    assert (run / "checkpoints/checkpoint-4/checkpoint_complete.json").is_file()


def test_a_full_disk_while_saving_is_a_user_error_and_resume_recovers(
    cli, tiny_model, tmp_path, monkeypatch
):
    from safetensors.torch import load_file

    from grpo_cli.training import checkpoints

    # torch's C++ writer reports a full disk without the OS error; the free space tells
    torch_error = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576")
    fail_saving(monkeypatch, "optimizer.pt", 4, torch_error)
    monkeypatch.setattr(checkpoints, "free_space", lambda folder: 500)
    full = cli(*smoke_args(tiny_model, tmp_path))
    run = tmp_path / "outputs" / "smoke-cpu"
    assert full.code == 2, full.err
    assert f"Error: the disk is full: writing {run / 'checkpoints/checkpoint-4'} failed" in full.err
    assert "500 bytes free there" in full.err
    assert re.search(r"about [\d.]+ [KM]B needed", full.err) and "Traceback" not in full.err
    assert f"resume from checkpoint-2: grpo train {run / 'config.yaml'} --resume" in full.err
    assert not (run / "checkpoints/checkpoint-4").exists()  # the half-written one is gone
    monkeypatch.undo()

    # the disk fills again as the adapter is written; safetensors wraps the OS error
    import errno

    import peft.peft_model

    real = peft.peft_model.safe_save_file

    def save_file(tensors, filename, *args, **kwargs):
        if Path(filename).parent.name != "adapter":
            return real(tensors, filename, *args, **kwargs)
        raise RuntimeError("Error while serializing") from OSError(errno.ENOSPC, "No space")

    monkeypatch.setattr(peft.peft_model, "safe_save_file", save_file)
    full = cli("train", str(run / "config.yaml"), "--resume")
    assert full.code == 2, full.err
    assert f"writing {run / 'adapter'} failed" in full.err
    assert "resume from checkpoint-4" in full.err
    assert not (run / "adapter").exists()
    monkeypatch.undo()

    resumed = cli("train", str(run / "config.yaml"), "--resume")
    assert resumed.code == 0, resumed.err
    # checkpoint-4 is the last step: its weights become the adapter, with no step past max_steps
    assert steps(run / "metrics.jsonl") == [0, 1, 2, 3, 4]
    adapter = load_file(run / "adapter/adapter_model.safetensors")
    last = load_file(run / "checkpoints/checkpoint-4/adapter_model.safetensors")
    assert adapter.keys() == last.keys() and all(adapter[k].equal(last[k]) for k in adapter)


def test_a_damaged_checkpoint_names_its_file_and_the_one_to_resume_from(
    cli, tiny_model, tmp_path, monkeypatch
):
    import shlex
    import shutil

    from grpo_cli.training import checkpoints

    assert cli(*smoke_args(tiny_model, tmp_path)).code == 0
    run = tmp_path / "outputs" / "smoke-cpu"
    weights = run / "checkpoints/checkpoint-4/adapter_model.safetensors"
    whole = weights.read_bytes()
    weights.write_bytes(whole[:-100])

    # a load failing inside the trainer says the same when the cheap check lets a file through
    monkeypatch.setattr(checkpoints, "checkpoint_damage", lambda path: None)
    result = cli("train", str(run / "config.yaml"), "--resume")
    assert result.code == 2 and "unexpected" not in result.err, result.err
    assert "checkpoint-4 is damaged: it does not load" in result.err
    monkeypatch.undo()

    weights.write_bytes(whole)
    optimizer = run / "checkpoints/checkpoint-4/optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:-100])
    result = cli("train", str(run / "config.yaml"), "--resume")
    assert result.code == 2, result.err
    assert "checkpoint-4 is damaged: optimizer.pt is cut short" in result.err
    hint = result.err.split("Hint: ")[1]
    assert "resume from checkpoint-2" in hint
    move, resume = hint.split(": ", 1)[1].strip().split(" && ")
    shutil.move(*shlex.split(move)[1:])  # the hint's own commands
    resumed = cli(*shlex.split(resume)[1:])
    assert resumed.code == 0, resumed.err
    assert steps(run / "metrics.jsonl") == [0, 1, 2, 3, 4]


# --- what the trainer really runs: vLLM's memory share, settings a backend rewrites ----------


class FakeFastLanguageModel:
    """unsloth.FastLanguageModel recording what grpo asks of it, and the environment then."""

    calls: list[tuple[dict, str | None]] = []

    @classmethod
    def from_pretrained(cls, **kwargs):
        from types import SimpleNamespace

        cls.calls.append((kwargs, os.environ.get("UNSLOTH_VLLM_STANDBY_UTIL_OVERRIDE")))
        return object(), SimpleNamespace(pad_token="<pad>")

    @classmethod
    def get_peft_model(cls, model, **kwargs):
        return model


def unsloth_load(monkeypatch, gpu_gib, *overrides):
    """`load_model` of the seed recipe on a faked GPU of GPU_GIB with a fake Unsloth: the
    line it prints, the kwargs from_pretrained got and the override variable at that moment."""
    from types import ModuleType

    from rich.console import Console

    from grpo_cli.commands.train import Plan, load_model
    from grpo_cli.config import load_config
    from grpo_cli.hardware import Hardware

    fake = ModuleType("unsloth")
    fake.FastLanguageModel = FakeFastLanguageModel  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "unsloth", fake)
    FakeFastLanguageModel.calls = []
    loaded = load_config(CONFIGS / "qwen3b_gsm8k.yaml", list(overrides))
    hw = Hardware(device="cuda", gpu_name="Tesla T4", gpu_memory_gib=gpu_gib, capability=(7, 5))
    console = Console(record=True, width=200)
    load_model(Plan(loaded, hw, "unsloth", "test", "fp16", "test", "none"), None, console)
    ((kwargs, override),) = FakeFastLanguageModel.calls
    return console.export_text().strip(), kwargs, override


def test_a_gpu_memory_share_the_user_sets_is_the_share_vllm_gets(monkeypatch):
    monkeypatch.setenv("UNSLOTH_VLLM_STANDBY", "1")
    monkeypatch.setenv("UNSLOTH_VLLM_STANDBY_UTIL_OVERRIDE", "0")
    line, kwargs, override = unsloth_load(monkeypatch, 14.7)  # the recipe says 0.7
    assert line == "vLLM gpu_memory_utilization: 0.7 (model.gpu_memory_utilization)"
    assert kwargs["gpu_memory_utilization"] == 0.7 and kwargs["fast_inference"] is True
    # unsloth_zoo/vllm_utils.py (load_vllm) keeps the value only with this set at load time
    assert override == "1"


@pytest.mark.parametrize(
    ("gib", "share"), [(14.7, 0.76), (21.5, 0.784), (39.4, 0.855), (79.2, 0.879)]
)
def test_left_unset_the_share_is_unsloths_standby_tier_and_the_run_says_which(
    monkeypatch, gib, share
):
    """T4, L4, A100 40 GB, H100 80 GB as torch reports their memory."""
    monkeypatch.setenv("UNSLOTH_VLLM_STANDBY", "1")
    monkeypatch.setenv("UNSLOTH_VLLM_STANDBY_UTIL_OVERRIDE", "1")  # left by an earlier load
    line, kwargs, override = unsloth_load(monkeypatch, gib, "model.gpu_memory_utilization=null")
    assert line == (
        f"vLLM gpu_memory_utilization: {share:g} (Unsloth's standby share for a {gib:.0f} GiB "
        "GPU; model.gpu_memory_utilization sets it)"
    )
    assert "gpu_memory_utilization" not in kwargs and override == "0"


def test_without_standby_unsloth_takes_its_own_default_share(monkeypatch):
    monkeypatch.setenv("UNSLOTH_VLLM_STANDBY", "0")
    line, _, _ = unsloth_load(monkeypatch, 14.7, "model.gpu_memory_utilization=null")
    assert line.startswith("vLLM gpu_memory_utilization: 0.5 (Unsloth's default")


def test_without_fast_inference_nothing_is_said_of_vllm(monkeypatch):
    line, kwargs, _ = unsloth_load(monkeypatch, 14.7, "model.fast_inference=false")
    assert line == "" and "gpu_memory_utilization" not in kwargs


@pytest.mark.usefixtures("no_weights")
def test_a_trainer_config_that_rewrites_a_setting_is_refused_before_the_model_loads(
    cli, tiny_model, tmp_path, monkeypatch
):
    """As Unsloth's UnslothGRPOConfig does for loss_type dapo when epsilon_high is unset."""
    import dataclasses

    import trl

    @dataclasses.dataclass
    class Rewriting(trl.GRPOConfig):
        def __post_init__(self):
            super().__post_init__()
            self.epsilon_high = 0.28

    monkeypatch.setattr(trl, "GRPOConfig", Rewriting)
    result = cli(*smoke_args(tiny_model, tmp_path))
    assert result.code == 2 and "Traceback" not in result.err, result.err
    assert (
        "smoke_cpu.yaml:32: training.epsilon_high: trl would train with epsilon_high 0.28, not "
        "the 0.2 set here" in result.err
    )
    assert "Hint: if trl's value is what you want, set it in the config" in result.err
    assert not (tmp_path / "outputs").exists()


@pytest.mark.usefixtures("no_weights")
def test_settings_trl_refuses_are_refused_before_the_model_loads(cli, tiny_model, tmp_path):
    bounds = "{vllm_importance_sampling_clip_min: 5.0, vllm_importance_sampling_clip_max: 2.0}"
    result = cli(*smoke_args(tiny_model, tmp_path, "--set", f"training.trl={bounds}"))
    assert result.code == 2 and "TRL refused the training settings" in result.err, result.err
    assert "must be less than" in result.err and not (tmp_path / "outputs").exists()


@pytest.mark.usefixtures("no_weights")
def test_a_training_trl_key_grpoconfig_lacks_is_refused_as_doctor_lists_it(
    cli, tiny_model, tmp_path
):
    result = cli(*smoke_args(tiny_model, tmp_path, "--set", "training.trl={top_kk: 5}"))
    assert result.code == 2 and "Traceback" not in result.err, result.err
    assert "training.trl.top_kk: trl.GRPOConfig has no field 'top_kk'. Did you mean" in result.err
    assert "Hint: keys under training.trl are trl.GRPOConfig's field names" in result.err
    assert not (tmp_path / "outputs").exists()


def test_a_setting_the_trainer_rewrites_after_the_model_loads_is_refused(
    cli, tiny_model, tmp_path, monkeypatch
):
    import trl

    class Rewriting(trl.GRPOTrainer):
        def __init__(self, *args, **kwargs):
            kwargs["args"].temperature = 0.7  # as a patched trainer might, in its constructor
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(trl, "GRPOTrainer", Rewriting)
    result = cli(*smoke_args(tiny_model, tmp_path))
    assert result.code == 2 and "Traceback" not in result.err, result.err
    assert "training.temperature: trl would train with temperature 0.7, not the 1.0" in result.err
    assert not (tmp_path / "outputs/smoke-cpu/metrics.jsonl").exists()
