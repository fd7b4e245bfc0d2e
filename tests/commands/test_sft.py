"""`grpo sft` end to end on the tiny model on CPU: the run directory and what it saves (an
adapter, or the whole model), the loss going down, Ctrl-C and --resume, and the refusals."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from grpo_cli.data.loading import heldout_ids

from ..conftest import CONFIGS, REPO

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def sft_args(tiny_model: Path, tmp_path: Path, *extra: str) -> list[str]:
    """`grpo sft` of configs/smoke_cpu.yaml on the tiny model: 4 steps of 4 rows."""
    return [
        "sft",
        str(CONFIGS / "smoke_cpu.yaml"),
        "--set",
        f"model.name={tiny_model}",
        "--set",
        f"output.dir={tmp_path / 'outputs'}",
        "--set",
        "sft={max_steps: 4, batch_size: 4, save_steps: 2, learning_rate: 1.0e-3}",
        *extra,
    ]


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_full_fine_tuning_writes_the_run_directory_and_a_model_that_loads(
    cli, tiny_model, tmp_path
):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = cli(*sft_args(tiny_model, tmp_path, "--set", "sft.method=full"))
    assert result.code == 0, result.err
    run = tmp_path / "outputs" / "smoke-cpu-sft"  # beside grpo train's smoke-cpu, not in it
    for name in ("config.yaml", "env.json", "data.json", "metrics.jsonl", "model"):
        assert (run / name).exists(), name
    assert not (run / "adapter").exists() and not (run / "run.lock").exists()
    env = json.loads((run / "env.json").read_text())
    assert env["stage"] == "sft" and env["sft_method"] == "full"
    records = metrics(run)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert {"loss", "learning_rate", "mean_token_accuracy", "grad_norm", "epoch"} <= set(records[0])
    assert (run / "checkpoints" / "checkpoint-4" / "checkpoint_complete.json").is_file()
    data = json.loads((run / "data.json").read_text())
    assert data["split"] == "sft" and data["trained_on"] == 64  # data.limit of the smoke config

    trained = AutoModelForCausalLM.from_pretrained(run / "model")
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    changed = [
        name
        for (name, a), (_, b) in zip(
            trained.named_parameters(), base.named_parameters(), strict=True
        )
        if not torch.equal(a, b)
    ]
    assert len(changed) > len(list(base.parameters())) // 2  # every weight trains, not an adapter
    assert AutoTokenizer.from_pretrained(run / "model").chat_template
    assert "grpo sft: done" in result.err and "loss (first -> last" in result.err
    assert re.search(
        r"next: grpo train \S*smoke_cpu.yaml --set model.name=\S*smoke-cpu-sft\n", result.err
    )
    # the saved config resumes this run, not one named after output.run_name
    saved = (run / "config.yaml").read_text()
    assert "run_name: smoke-cpu-sft" in saved and "grpo sft" in saved.splitlines()[0]


def test_lora_writes_an_adapter_on_the_configs_model(cli, tiny_model, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result = cli(*sft_args(tiny_model, tmp_path, "--set", "sft.max_steps=2"))
    assert result.code == 0, result.err
    run = tmp_path / "outputs" / "smoke-cpu-sft"
    adapter = run / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file() and not (run / "model").exists()
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_model) and config["r"] == 8
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), adapter)
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # trained: B starts at zero
    assert json.loads((run / "env.json").read_text())["sft_method"] == "lora"


def test_the_loss_goes_down_as_it_trains(cli, tiny_model, tmp_path):
    """A user's first check that the warm-up works: the loss of the same rows falls."""
    result = cli(
        *sft_args(tiny_model, tmp_path),
        "--set",
        "sft={method: full, max_steps: 30, batch_size: 8, learning_rate: 3.0e-3, "
        "lr_scheduler_type: constant, warmup_ratio: 0.0, save_steps: 100}",
        "--set",
        "sft.limit=16",
    )
    assert result.code == 0, result.err
    losses = [r["loss"] for r in metrics(tmp_path / "outputs" / "smoke-cpu-sft")]
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.7 * first, losses


INTERRUPT_AT_STEP_2 = """
import os, signal, sys
from grpo_cli.cli import main
from grpo_cli.training.callbacks import GracefulStop

step_end = GracefulStop.on_step_end

def on_step_end(self, args, state, control, **kwargs):
    if state.global_step == 2:
        os.kill(os.getpid(), signal.SIGINT)  # as a Ctrl-C in the terminal would
    return step_end(self, args, state, control, **kwargs)

GracefulStop.on_step_end = on_step_end
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_keeps_a_checkpoint_and_resume_continues_like_an_uninterrupted_run(
    cli, tiny_model, tmp_path
):
    args = sft_args(tiny_model, tmp_path, "--set", "sft.save_steps=100")
    stopped = subprocess.run(
        [sys.executable, "-c", INTERRUPT_AT_STEP_2, *args, "--set", "sft.run_name=stopped"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    run = tmp_path / "outputs" / "stopped"
    assert "Resume with: grpo sft" in stopped.stderr and "--resume" in stopped.stderr
    assert (run / "checkpoints" / "checkpoint-2" / "checkpoint_complete.json").is_file()
    assert not (run / "model").exists() and not (run / "adapter").exists()
    assert [r["step"] for r in metrics(run)] == [1, 2]

    resumed = cli("sft", str(run / "config.yaml"), "--resume")
    assert resumed.code == 0, resumed.err
    assert "resuming from checkpoint-2 (step 2 of 4)" in resumed.err
    assert [r["step"] for r in metrics(run)] == [1, 2, 3, 4]
    assert (run / "adapter" / "adapter_model.safetensors").is_file()

    straight = cli(*args, "--set", "sft.run_name=straight")
    assert straight.code == 0, straight.err
    a, b = metrics(run), metrics(tmp_path / "outputs" / "straight")
    assert [r["learning_rate"] for r in a] == pytest.approx([r["learning_rate"] for r in b])
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-4)


def test_an_existing_run_is_never_overwritten_without_overwrite(cli, tiny_model, tmp_path):
    assert cli(*sft_args(tiny_model, tmp_path, "--set", "sft.max_steps=1")).code == 0
    again = cli(*sft_args(tiny_model, tmp_path, "--set", "sft.max_steps=1"))
    assert again.code == 2 and "already exists" in again.err and "--resume" in again.err
    replaced = cli(*sft_args(tiny_model, tmp_path, "--set", "sft.max_steps=1", "--overwrite"))
    assert replaced.code == 0, replaced.err


def test_rows_without_a_worked_solution_are_refused_before_the_model_loads(
    cli, tiny_model, tmp_path, write, monkeypatch
):
    monkeypatch.setattr(
        "grpo_cli.training.models.load_trl_model",
        lambda *a, **k: pytest.fail("the model was loaded before the data was checked"),
    )
    bare = write(
        "bare.jsonl",
        '{"question": "What is 2 + 2?", "answer": "#### 4"}\n'
        '{"question": "What is 3 + 3?", "answer": "#### 6"}\n',
    )
    result = cli(*sft_args(tiny_model, tmp_path, "--set", f"data.source={bare}"))
    assert result.code == 2, result.err
    assert f"2 of the 2 rows of {bare} [train] have no worked solution" in result.err
    assert "gsm8k formatter" in result.err and "Hint:" in result.err
    assert "Traceback" not in result.err


def test_rows_without_a_worked_solution_are_dropped_with_a_warning(
    cli, tiny_model, tmp_path, write
):
    mixed = write(
        "mixed.jsonl",
        '{"question": "What is 2 + 2?", "answer": "#### 4"}\n'
        + "".join(
            json.dumps(
                {"question": f"What is {n} + 1?", "answer": f"{n} + 1 = {n + 1}\n#### {n + 1}"}
            )
            + "\n"
            for n in range(8)
        ),
    )
    args = sft_args(
        tiny_model, tmp_path, "--set", f"data.source={mixed}", "--set", "sft.max_steps=1"
    )
    result = cli(*args, "--set", "data.heldout_size=2")
    assert result.code == 0, result.err
    assert "dropped 1 of 9 rows" in result.err and "without a worked solution" in result.err
    data = json.loads((tmp_path / "outputs" / "smoke-cpu-sft" / "data.json").read_text())
    # grpo train holds 2 of the 9 rows out (seeded); SFT never trains on them either
    held = set(heldout_ids(list(range(9)), 2, seed=3407))
    assert data["trained_on"] == 8 - len(held - {0})  # row 0 has no worked solution


def test_a_formatter_that_yields_no_worked_solution_is_refused(cli, tiny_model, tmp_path, write):
    write(
        "rewards/plain.py",
        textwrap.dedent(
            """
            from grpo_cli.data.formatters import formatter

            @formatter("plain", columns=("q", "a"))
            def plain(row, prompt):
                return {"prompt": prompt.messages(row["q"]), "answer": str(row["a"])}
            """
        ),
    )
    rows = write("plain.jsonl", '{"q": "What is 2 + 2?", "a": 4}\n')
    result = cli(
        *sft_args(tiny_model, tmp_path),
        "--set",
        f"data.source={rows}",
        "--set",
        "data.formatter=plain",
        "--set",
        f"reward_plugins=[{tmp_path / 'rewards'}]",
    )
    assert result.code == 2, result.err
    assert "have no worked solution (the plain formatter returns none" in result.err


def test_full_fine_tuning_of_quantized_weights_is_refused_naming_the_key(cli, tiny_model, tmp_path):
    result = cli(
        *sft_args(tiny_model, tmp_path),
        "--set",
        "sft.method=full",
        "--set",
        "model.quantization=4bit",
    )
    assert result.code == 2
    assert "sft.method" in result.err and "model.quantization: none" in result.err
    assert not (tmp_path / "outputs").exists()


def test_dry_run_shows_the_masked_prompt_and_the_solution_without_loading_weights(
    cli, tiny_model, tmp_path, monkeypatch
):
    monkeypatch.setattr(
        "grpo_cli.training.models.load_trl_model",
        lambda *a, **k: pytest.fail("the dry run loaded the model"),
    )
    result = cli(*sft_args(tiny_model, tmp_path, "--dry-run"))
    assert result.code == 0, result.err
    prompt, _, rest = result.out.partition("trained on")
    assert "left out of the loss" in prompt and "<|im_start|>user" in prompt
    assert rest.lstrip("─ \n").startswith("<reasoning>\n") and "</answer>" in rest
    assert "correctness" in rest and "2.0" in rest
    assert "64 rows from synthetic [sft]" in rest and "no weights were loaded" in rest
    assert not (tmp_path / "outputs").exists()


def test_the_unsloth_backend_is_refused_with_the_setting_that_works(cli, tiny_model, tmp_path):
    result = cli(*sft_args(tiny_model, tmp_path, "--set", "model.backend=unsloth"))
    assert result.code == 2 and "model.backend" in result.err
    assert "--set model.backend=trl" in result.err and "Traceback" not in result.err
    assert not (tmp_path / "outputs").exists()


def test_rows_longer_than_max_length_are_dropped_and_none_left_is_refused(
    cli, tiny_model, tmp_path
):
    result = cli(*sft_args(tiny_model, tmp_path, "--set", "sft.max_length=20"))
    assert result.code == 2, result.err
    assert "every row's prompt and worked solution is longer than sft.max_length 20" in result.err
    assert "Hint: raise sft.max_length" in result.err


def test_packing_without_flash_attention_is_refused(cli, tiny_model, tmp_path):
    result = cli(*sft_args(tiny_model, tmp_path, "--set", "sft.packing=true"))
    assert result.code == 2 and "sft.packing" in result.err and "flash attention" in result.err
    assert not (tmp_path / "outputs").exists()


def test_resume_without_a_run_name_finds_the_newest_run_of_its_own_command(tmp_path, write):
    from grpo_cli.commands.train import find_run_dir
    from grpo_cli.config import load_config

    path = write(
        "demo.yaml", f"model: {{name: a/b}}\nrewards: [correctness]\noutput: {{dir: {tmp_path}}}\n"
    )
    for name in ("demo-20260101-000000", "demo-sft-20260102-000000", "demo-sft-20260103-000000"):
        (tmp_path / name / "checkpoints").mkdir(parents=True)
    cfg = load_config(path).config
    assert find_run_dir(cfg, path, resume=True).name == "demo-20260101-000000"
    assert find_run_dir(cfg, path, resume=True, stage="sft").name == "demo-sft-20260103-000000"
    assert find_run_dir(cfg, path, resume=False, stage="sft").name.startswith("demo-sft-2")


def test_a_setting_trl_refuses_leaves_the_old_run_before_overwrite_clears_it(
    cli, tiny_model, tmp_path, monkeypatch
):
    from grpo_cli.errors import GrpoError
    from grpo_cli.training import sft as sft_training

    run = tmp_path / "outputs" / "smoke-cpu-sft"
    assert cli(*sft_args(tiny_model, tmp_path)).code == 0
    before = sorted(p.relative_to(run) for p in run.rglob("*"))

    def refused(kwargs):
        raise GrpoError("sft: SFTConfig refused these settings (made up)", "check the sft section")

    monkeypatch.setattr(sft_training, "build_sft_config", refused)
    result = cli(*sft_args(tiny_model, tmp_path, "--overwrite"))
    assert result.code == 2 and "SFTConfig refused" in result.err
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    assert (run / "adapter" / "adapter_config.json").is_file()
