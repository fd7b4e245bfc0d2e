"""`grpo doctor --check`'s engine: which paths run on which machine and why the others are
skipped, the configs the GPU paths train with, the one-line reason a failed child gives, and the
whole check on this CPU machine, for real, with one path broken on purpose."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from grpo_cli import hardware, selfcheck
from grpo_cli.config import load_config
from grpo_cli.hardware import Hardware
from grpo_cli.selfcheck import CheckRow, failure_detail, planned_paths, run_checks

UNCHANGED_ADAPTER = selfcheck.unchanged_adapter  # fake_steps replaces it

CPU = Hardware(device="cpu")
T4 = Hardware("cuda", "Tesla T4", 15.0, (7, 5), 1, bf16=False)
H100 = Hardware("cuda", "NVIDIA H100 80GB HBM3", 79.2, (9, 0), 1, bf16=True)
EVERYTHING = {"unsloth": True, "vllm": True, "bitsandbytes": True, "vllm_4bit": True}
NOTHING = {"unsloth": False, "vllm": False, "bitsandbytes": False, "vllm_4bit": False}
INSTALL = "pip install -e '.[gpu]'"


def skips(hw: Hardware, has: dict[str, bool]) -> dict[str, str | None]:
    return dict(planned_paths(hw, has))


def test_cpu_runs_trl_in_fp32_and_the_peft_merge_and_says_why_not_the_rest():
    plan = skips(CPU, EVERYTHING)
    assert [path for path, why in plan.items() if why is None] == ["trl fp32", "merge (PEFT)"]
    for path, why in plan.items():
        if why is not None:
            assert why.startswith("needs a CUDA GPU"), (path, why)
    # unsloth/_cpu_init.py: installed, Unsloth imports on CPU, but as its fallback, not the
    # GPU path this check is for
    assert plan["unsloth 16-bit"] == "needs a CUDA GPU, not CPU"
    assert plan["merge (Unsloth)"] == plan["unsloth 16-bit"]
    assert plan["trl 4-bit (bitsandbytes)"] == "needs a CUDA GPU, not CPU"


def test_t4_without_vllm_runs_fp16_and_every_path_but_the_vllm_ones():
    plan = skips(T4, {**EVERYTHING, "vllm": False})
    # The seed recipe's paths first: a budget that runs out leaves out the fallbacks.
    assert list(plan) == [
        "unsloth 4-bit",
        "unsloth fast_inference (vLLM, 4-bit)",
        "unsloth 16-bit",
        "merge (Unsloth)",
        "trl fp16",  # a T4 has no native bfloat16
        "trl 4-bit (bitsandbytes)",
        "eval vLLM engine",
        "merge (PEFT)",
    ]
    skipped = {path: why for path, why in plan.items() if why is not None}
    assert skipped == {
        "unsloth fast_inference (vLLM, 4-bit)": f"vllm is not installed: {INSTALL}",
        "eval vLLM engine": f"vllm is not installed: {INSTALL}",
    }


def test_h100_with_the_gpu_extra_runs_every_path_in_bf16():
    plan = skips(H100, EVERYTHING)
    assert all(why is None for why in plan.values()), plan
    assert list(plan)[0] == "unsloth 4-bit"
    assert "trl bf16" in plan
    assert len(plan) == 8


def test_a_gpu_without_the_gpu_extra_names_each_missing_package_and_the_install():
    plan = skips(T4, NOTHING)
    assert plan["trl fp16"] is None and plan["merge (PEFT)"] is None
    assert plan["trl 4-bit (bitsandbytes)"] == f"bitsandbytes is not installed: {INSTALL}"
    assert plan["unsloth 4-bit"] == f"unsloth and bitsandbytes are not installed: {INSTALL}"
    # Without bitsandbytes, fast_inference is checked on 16-bit weights rather than not at all.
    assert plan["unsloth fast_inference (vLLM, 16-bit)"] == (
        f"unsloth and vllm are not installed: {INSTALL}"
    )


def test_fast_inference_is_checked_on_16bit_weights_without_the_vllm_bitsandbytes_plugin():
    # vLLM >= 0.28 loads 4-bit weights only with vllm-bnb-plugin (unsloth_zoo/vllm_utils.py):
    # bitsandbytes alone would fail the path for a package the user did not ask for.
    plan = skips(T4, {**EVERYTHING, "vllm_4bit": False})
    assert "unsloth fast_inference (vLLM, 16-bit)" in plan
    assert plan["unsloth fast_inference (vLLM, 16-bit)"] is None
    specs = {p.slug: p for p in selfcheck._paths(T4, {**EVERYTHING, "vllm_4bit": False})}
    assert specs["unsloth-fast-inference"].model["quantization"] == "none"
    assert specs["unsloth-4bit"].model["quantization"] == "4bit"  # no vLLM there: still 4-bit


@pytest.mark.parametrize("hw", [H100, T4], ids=["H100", "T4"])
def test_every_training_path_writes_a_config_the_schema_accepts(hw, tmp_path):
    """The GPU paths never run here; their configs are still checked here, so a GPU box does not
    discover a typo in them after ten minutes of installs."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")  # the schema checks a local model folder has one
    specs = [p for p in selfcheck._paths(hw, EVERYTHING) if p.action == "train"]
    assert len(specs) == 5
    for spec in specs:
        config = load_config(selfcheck.write_config(tmp_path, spec, model)).config
        assert config.training.max_steps == 2
        assert config.logging.report_to == "none"
        assert config.data.source == "synthetic"  # local rows: nothing to download
        assert config.output.run_name == spec.slug
    fast = load_config(tmp_path / "configs" / "unsloth-fast-inference.yaml").config
    assert fast.model.fast_inference and fast.model.quantization == "4bit"  # the seed recipe's
    assert fast.model.backend == "unsloth"
    assert load_config(tmp_path / "configs" / "trl-native.yaml").config.model.backend == "trl"


def test_the_check_model_has_heads_every_vllm_backend_on_a_t4_serves():
    sizes = selfcheck.CHECK_MODEL_SIZES
    # FlashInfer: 64, 128, 256, 512; Triton: 32 or more; FlashAttention needs capability 8.0.
    assert sizes["hidden_size"] // sizes["num_attention_heads"] == 64
    assert sizes["num_attention_heads"] > sizes["num_key_value_heads"]  # grouped-query, as Qwen


@pytest.fixture
def fake_steps(monkeypatch):
    """run_checks with every package installed and each step recorded instead of run:
    returns (steps as (log name, arguments), failures to give by log name)."""
    steps: list[tuple[str, list[str]]] = []
    failures: dict[str, str] = {}

    def run_cli(args, log, timeout=selfcheck.STEP_TIMEOUT_S, cwd=None):
        steps.append((log.stem, args))
        return failures.get(log.stem)

    monkeypatch.setattr(selfcheck, "run_cli", run_cli)
    monkeypatch.setattr(hardware, "installed_packages", lambda: EVERYTHING)
    monkeypatch.setattr(selfcheck, "write_tiny_model", lambda *a, **k: "built")
    monkeypatch.setattr(selfcheck, "unchanged_adapter", lambda adapter: None)  # none written
    return steps, failures


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_on_a_gpu_each_path_trains_then_evaluates_and_merges_start_from_the_4bit_runs(
    fake_steps, tmp_path
):
    steps, _ = fake_steps
    rows = run_checks(Console(stderr=True), tmp_path, H100)
    assert [(row.status, row.detail) for row in rows] == [("passed", "")] * 8
    by_log = dict(steps)
    for slug in ("trl-native", "trl-4bit", "unsloth-16bit", "unsloth-4bit"):
        assert by_log[f"{slug}-train"][:2] == ["train", str(tmp_path / "configs" / f"{slug}.yaml")]
        assert option(by_log[f"{slug}-eval"], "--engine") == "transformers"
        assert option(by_log[f"{slug}-eval"], "-m") == str(tmp_path / "runs" / slug)
    assert option(by_log["eval-vllm-eval"], "--engine") == "vllm"
    assert option(by_log["eval-vllm-eval"], "-m") == str(tmp_path / "runs" / "trl-native")
    # Train in 4-bit, merge into the 16-bit base: the step users take after the seed recipe.
    assert by_log["merge-peft-merge"][1] == str(tmp_path / "runs" / "trl-4bit")
    assert by_log["merge-unsloth-merge"][1] == str(tmp_path / "runs" / "unsloth-4bit")
    assert option(by_log["merge-peft-merge"], "--dtype") == "bf16"  # native on an H100
    assert option(by_log["merge-peft-eval"], "-m") == str(tmp_path / "merged" / "merge-peft")


class SlowSteps:
    """A clock and a run_cli on it: each step takes SECONDS of fake time, or the timeout it is
    given when that is shorter (as a step that is stopped does)."""

    def __init__(self, seconds: float):
        self.now, self.seconds = 0.0, seconds
        self.timeouts: list[tuple[str, float]] = []

    def clock(self) -> float:
        return self.now

    def run_cli(self, args, log, timeout=selfcheck.STEP_TIMEOUT_S, cwd=None):
        self.timeouts.append((log.stem, timeout))
        self.now += min(self.seconds, timeout)
        return None if self.seconds <= timeout else f"{args[0]} timed out after {timeout:.0f} s"


def test_the_whole_check_keeps_to_its_budget_and_skips_what_is_left_saying_why(
    fake_steps, tmp_path, monkeypatch
):
    slow = SlowSteps(seconds=80)  # slower than an H200 was: 8 paths would take 19 minutes
    monkeypatch.setattr(selfcheck, "run_cli", slow.run_cli)
    rows = run_checks(Console(stderr=True), tmp_path, H100, clock=slow.clock)
    assert slow.now <= selfcheck.CHECK_BUDGET_S <= 600
    statuses = [row.status for row in rows]
    # the seed recipe's paths were checked; what the budget left out are the fallbacks
    assert [row.path for row in rows[:2] if row.status == "passed"] == [
        "unsloth 4-bit",
        "unsloth fast_inference (vLLM, 4-bit)",
    ]
    assert "skipped" in statuses
    assert "failed" not in statuses  # the budget running out is no path's failure
    spent = [row for row in rows if row.status == "skipped"]
    assert all("budget" in row.detail and "is spent" in row.detail for row in spent), spent
    # the step still running when the budget ran out got only what was left of it
    assert slow.timeouts[-1][1] < selfcheck.STEP_TIMEOUT_S
    assert sum(min(80, t) for _, t in slow.timeouts) <= selfcheck.CHECK_BUDGET_S
    # a merge whose run the budget left out says so, not that the run failed
    assert rows_by_path(rows)["merge (PEFT)"].detail.startswith("the check's")


def test_a_step_that_hangs_gets_its_own_timeout_while_the_budget_lasts(
    fake_steps, tmp_path, monkeypatch
):
    slow = SlowSteps(seconds=10_000)
    monkeypatch.setattr(selfcheck, "run_cli", slow.run_cli)
    rows = run_checks(Console(stderr=True), tmp_path, H100, clock=slow.clock)
    assert rows[0].status == "failed"
    assert rows[0].detail == f"train timed out after {selfcheck.STEP_TIMEOUT_S} s"
    assert slow.timeouts[0][1] == selfcheck.STEP_TIMEOUT_S
    # each step that got its whole timeout hung on its own; the rest, the budget left out
    full = selfcheck.CHECK_BUDGET_S // selfcheck.STEP_TIMEOUT_S
    assert [row.status for row in rows[:full]] == ["failed"] * full
    assert rows[full].status == "skipped" and "budget" in rows[full].detail
    assert slow.now <= selfcheck.CHECK_BUDGET_S


def write_adapter(folder: Path, lora_b: float, dtype: str = "bfloat16") -> Path:
    """An adapter as PEFT saves one: lora_A random, lora_B filled with LORA_B."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    layer = "base_model.model.model.layers.0.self_attn.q_proj"
    save_file(
        {
            f"{layer}.lora_A.weight": torch.randn(8, 128).to(getattr(torch, dtype)),
            f"{layer}.lora_B.weight": torch.full((128, 8), lora_b).to(getattr(torch, dtype)),
        },
        str(folder / "adapter_model.safetensors"),
    )
    return folder


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_an_adapter_whose_lora_b_moved_is_trained_and_one_still_at_zero_is_not(dtype, tmp_path):
    assert selfcheck.unchanged_adapter(write_adapter(tmp_path / "moved", 1e-4, dtype)) is None
    detail = selfcheck.unchanged_adapter(write_adapter(tmp_path / "zero", 0.0, dtype))
    assert detail is not None and "all zero" in detail and "no gradient" in detail


def test_an_adapter_that_is_missing_or_holds_no_lora_b_is_reported(tmp_path):
    missing = selfcheck.unchanged_adapter(tmp_path / "nowhere")
    assert missing is not None and "no adapter" in missing
    import torch
    from safetensors.torch import save_file

    (tmp_path / "a").mkdir()
    save_file(
        {"x.lora_A.weight": torch.ones(2, 2)}, str(tmp_path / "a" / "adapter_model.safetensors")
    )
    assert "no lora_B" in (selfcheck.unchanged_adapter(tmp_path / "a") or "")
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "adapter_model.safetensors").write_bytes(b"\xff" * 12)
    cut = selfcheck.unchanged_adapter(tmp_path / "cut") or ""
    assert cut.startswith("adapter_model.safetensors is cut short"), cut


def test_a_path_whose_training_moved_no_lora_weight_fails_though_its_command_passed(
    fake_steps, tmp_path, monkeypatch
):
    """On an H200 every completion of the tiny model ran to the length limit, every reward was
    alike, and a path that never sent a gradient to its LoRA weights still passed."""
    steps, _ = fake_steps
    monkeypatch.setattr(selfcheck, "unchanged_adapter", UNCHANGED_ADAPTER)

    def run_cli(args, log, timeout=selfcheck.STEP_TIMEOUT_S, cwd=None):
        steps.append((log.stem, args))
        if log.stem.endswith("-train"):
            slug = log.stem.removesuffix("-train")
            write_adapter(tmp_path / "runs" / slug / "adapter", 0.0 if slug == "trl-4bit" else 0.01)
        return None

    monkeypatch.setattr(selfcheck, "run_cli", run_cli)
    by_path = rows_by_path(run_checks(Console(stderr=True), tmp_path, H100))
    assert by_path["trl 4-bit (bitsandbytes)"].status == "failed"
    assert "no gradient reached the LoRA weights" in by_path["trl 4-bit (bitsandbytes)"].detail
    assert "trl-4bit-eval" not in dict(steps)  # a run that did not train is not evaluated
    assert by_path["unsloth 4-bit"].status == "passed"
    merge = dict(steps)["merge-peft-merge"]
    assert merge[1] == str(tmp_path / "runs" / "trl-native")  # not the run that did not train


def test_the_check_reward_tells_apart_completions_a_random_model_writes_alike(tmp_path):
    reward = selfcheck.sampled_tokens
    # the same length, no tag, no answer: every built-in reward scored these alike
    ids = [[17, 300, 5, 5], [17, 300, 5, 6], [900, 2, 2, 2]]
    assert len(set(reward(["x"] * 3, completion_ids=ids))) == 3
    assert len(set(reward(["abcd", "abce"]))) == 2  # text alone, as eval passes it
    spec = selfcheck._paths(CPU, NOTHING)[4]
    config = selfcheck.check_config(spec, tmp_path / "model", tmp_path / "runs" / spec.slug)
    assert "grpo_cli.selfcheck:sampled_tokens" in config["rewards"]
    # the children resolve it as a config's reward, held to the contract every reward is
    from grpo_cli.rewards.registry import signature_problem
    from grpo_cli.rewards.runner import resolve

    assert resolve("grpo_cli.selfcheck:sampled_tokens").fn is reward
    assert signature_problem(reward) is None


def test_a_path_whose_source_runs_never_ran_names_them():
    assert selfcheck._no_source(("a", "b"), {"b"}) == "b did not train"
    assert selfcheck._no_source(("a", "b"), set()) == "a or b did not run"


def test_children_run_in_the_checks_folder_so_what_they_leave_goes_with_it(tmp_path, monkeypatch):
    """Unsloth compiles into ./unsloth_compiled_cache of whatever folder it runs in."""
    monkeypatch.setattr(
        selfcheck,
        "child_command",
        lambda args: [sys.executable, "-c", "import os; os.mkdir('unsloth_compiled_cache')"],
    )
    monkeypatch.chdir(tmp_path)
    workdir = tmp_path / "check"
    workdir.mkdir()
    assert selfcheck.run_cli(["train"], workdir / "logs" / "x.log", 30, workdir) is None
    assert (workdir / "unsloth_compiled_cache").is_dir()
    assert not (tmp_path / "unsloth_compiled_cache").exists()


def test_a_t4_merges_in_fp16_and_a_failed_4bit_run_leaves_the_merge_to_the_16bit_one(
    fake_steps, tmp_path
):
    steps, failures = fake_steps
    failures["trl-4bit-train"] = "CUDA error: no kernel image is available"
    by_path = rows_by_path(run_checks(Console(stderr=True), tmp_path, T4))
    assert by_path["trl 4-bit (bitsandbytes)"].status == "failed"
    assert by_path["trl 4-bit (bitsandbytes)"].detail == failures["trl-4bit-train"]
    assert by_path["merge (PEFT)"].status == "passed"
    merge = dict(steps)["merge-peft-merge"]
    assert merge[1] == str(tmp_path / "runs" / "trl-native")
    assert option(merge, "--dtype") == "fp16"
    assert "trl-4bit-eval" not in dict(steps)  # no eval of a run that did not train


def test_children_run_offline_with_this_grpo_cli():
    env = selfcheck.child_env()
    assert env["HF_HUB_OFFLINE"] == "1" and env["HF_DATASETS_OFFLINE"] == "1"
    assert env["WANDB_MODE"] == "disabled"
    package_root = Path(selfcheck.__file__).resolve().parents[1]
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(package_root)


@pytest.mark.parametrize(
    ("output", "code", "detail"),
    [
        (
            "loading...\nError: model.name: cannot load the model of x: OSError: boom\n"
            "Hint: check the folder\n",
            2,
            "model.name: cannot load the model of x: OSError: boom",
        ),
        (
            "Error: 2 problems in c.yaml:\n  c.yaml:3: model.quantization: not one of ...\n"
            "  c.yaml:9: training.max_steps: ...\nHint: `grpo config schema` ...\n",
            2,
            "2 problems in c.yaml: c.yaml:3: model.quantization: not one of ...",
        ),
        (
            'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n'
            "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n",
            1,
            "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
        ),
        ("step 1/2\n", -9, "killed by SIGKILL (out of memory?)"),
        ("Fatal Python error: Segmentation fault\n", -11, "killed by SIGSEGV"),
        ("half a line of output\n", 3, "exit code 3: half a line of output"),
        ("", 1, "exit code 1"),
    ],
    ids=["error-line", "several-problems", "traceback", "sigkill", "sigsegv", "other", "silent"],
)
def test_a_failed_child_is_reported_in_one_line(output, code, detail):
    assert failure_detail(output, code) == detail


HANG = (
    "import subprocess, sys, time\n"
    "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
    "open(sys.argv[1], 'w').write(str(p.pid))\n"
    "time.sleep(600)\n"
)


def running(pid: int) -> bool:
    """After SIGKILL a process is gone, or a zombie until init reaps it."""
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True)
    return state.stdout.strip() not in ("", "Z")


@pytest.fixture
def hanging_step(tmp_path, monkeypatch) -> Path:
    """Every step runs a child that starts a grandchild (as vLLM starts its engine core) and
    hangs; returns the file where the grandchild's pid appears."""
    pid_file = tmp_path / "grandchild.pid"
    monkeypatch.setattr(
        selfcheck, "child_command", lambda args: [sys.executable, "-c", HANG, str(pid_file)]
    )
    return pid_file


def test_a_step_that_hangs_is_stopped_with_everything_it_started(hanging_step, tmp_path):
    """A timeout must not leave vLLM's engine core holding the GPU."""
    # 5 s: time enough for the child to write the grandchild's pid, or there is nothing to check.
    detail = selfcheck.run_cli(["train"], tmp_path / "hang.log", timeout=5)
    assert detail == "train timed out after 5 s"
    assert not running(int(hanging_step.read_text()))


def test_ctrl_c_during_a_step_ends_the_step_and_what_it_started(
    hanging_step, tmp_path, monkeypatch
):
    """The child has a session of its own, so the terminal's Ctrl-C reaches only the check."""

    class InterruptedOnceStarted(subprocess.Popen):
        def wait(self, timeout=None):
            if timeout is not None:  # the check waiting for the step, not the cleanup
                while self.poll() is None and not (
                    hanging_step.is_file() and hanging_step.read_text()
                ):
                    time.sleep(0.05)
                raise KeyboardInterrupt
            return super().wait()

    monkeypatch.setattr(selfcheck.subprocess, "Popen", InterruptedOnceStarted)
    with pytest.raises(KeyboardInterrupt):
        selfcheck.run_cli(["train"], tmp_path / "hang.log")
    assert not running(int(hanging_step.read_text()))


def rows_by_path(rows: list[CheckRow]) -> dict[str, CheckRow]:
    return {row.path: row for row in rows}


@pytest.fixture(scope="module")
def cpu_check(tmp_path_factory) -> tuple[Path, list[CheckRow]]:
    """The whole check on this machine, once for the module."""
    workdir = tmp_path_factory.mktemp("selfcheck")
    return workdir, run_checks(Console(stderr=True), workdir, CPU)


@pytest.mark.slow
def test_the_check_trains_evaluates_and_merges_for_real_on_cpu(cpu_check):
    workdir, rows = cpu_check
    assert [row.path for row in rows] == [path for path, _ in planned_paths(CPU, NOTHING)]
    by_path = rows_by_path(rows)
    for path in ("trl fp32", "merge (PEFT)"):
        row = by_path[path]
        assert (row.status, row.detail) == ("passed", ""), row
        assert row.seconds is not None and row.seconds > 0
    for row in rows:
        if row.path not in ("trl fp32", "merge (PEFT)"):
            assert row.status == "skipped" and row.seconds is None
            assert row.detail.startswith("needs a CUDA GPU"), row
    model = json.loads((workdir / selfcheck.TINY_MODEL / "config.json").read_text())
    assert model["hidden_size"] == selfcheck.CHECK_MODEL_SIZES["hidden_size"]
    run = workdir / "runs" / "trl-native"
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 2
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    # every step had groups whose rewards differed, so the LoRA weights got gradients and moved
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    spreads = [row["frac_reward_zero_std"] for row in logged if "frac_reward_zero_std" in row]
    assert len(spreads) == 2 and max(spreads) < 1, spreads
    assert selfcheck.unchanged_adapter(run / "adapter") is None
    assert not list(workdir.parent.glob("unsloth_compiled_cache"))
    predictions = workdir / "eval" / "trl-native" / "trl-native" / "predictions.jsonl"
    assert len(predictions.read_text().splitlines()) == selfcheck.EVAL_ROWS
    merged = workdir / "merged" / "merge-peft"
    assert (merged / "model.safetensors").is_file()
    # The merged folder loads and generates, as a user's next command would.
    merged_predictions = workdir / "eval" / "merge-peft" / "merge-peft" / "predictions.jsonl"
    assert len(merged_predictions.read_text().splitlines()) == selfcheck.EVAL_ROWS


@pytest.mark.slow
def test_a_broken_step_fails_its_path_with_the_error_line_and_the_others_still_run(
    cpu_check, monkeypatch
):
    """Run again in the same folder (train --overwrite, merge --force) with the trl eval given a
    setting the schema refuses: that path fails with grpo's Error line, the merge still runs."""
    workdir, _ = cpu_check
    real_eval_args = selfcheck.eval_args

    def broken_for_trl(config: Path, model: Path, output: Path, engine: str) -> list[str]:
        args = real_eval_args(config, model, output, engine)
        if output.name == "trl-native":
            args += ["--set", "model.quantization=fp9"]
        return args

    monkeypatch.setattr(selfcheck, "eval_args", broken_for_trl)
    by_path = rows_by_path(run_checks(Console(stderr=True), workdir, CPU))
    trl = by_path["trl fp32"]
    assert trl.status == "failed"
    assert "model.quantization" in trl.detail and "fp9" in trl.detail
    assert not trl.detail.startswith("Error")  # the table says failed; the line is the reason
    assert trl.seconds is not None and trl.seconds > 0
    assert by_path["merge (PEFT)"].status == "passed", by_path["merge (PEFT)"]
    assert (workdir / "logs" / "trl-native-eval.log").read_text().count("Error:") == 1


def test_a_path_that_does_not_train_skips_the_merge_that_needs_its_run(tmp_path, monkeypatch):
    real_config = selfcheck.check_config

    def no_steps(spec, model, runs):
        config = real_config(spec, model, runs)
        config["training"]["max_steps"] = 0
        return config

    monkeypatch.setattr(selfcheck, "check_config", no_steps)
    by_path = rows_by_path(run_checks(Console(stderr=True), tmp_path, CPU))
    assert by_path["trl fp32"].status == "failed"
    assert "training.max_steps" in by_path["trl fp32"].detail
    assert by_path["merge (PEFT)"] == CheckRow(
        "merge (PEFT)", "skipped", "trl fp32 did not train", None
    )


@pytest.mark.parametrize(
    ("rows", "code_1", "said"),
    [
        # what this machine cannot run is no problem: the library table says why
        (
            [
                CheckRow("trl fp32", "passed", "", 1.0),
                CheckRow("unsloth 4-bit", "skipped", "needs a CUDA GPU, not CPU", None),
            ],
            False,
            "1 passed, 0 failed, 1 skipped",
        ),
        # a path the budget left out was never checked: a script must not read it as passed
        (
            [
                CheckRow("unsloth 4-bit", "passed", "", 1.0),
                CheckRow("merge (PEFT)", "skipped", selfcheck.BUDGET_SPENT, None),
                CheckRow(
                    "trl bf16",
                    "skipped",
                    f"stopped during its train: {selfcheck.BUDGET_SPENT}",
                    9.0,
                ),
            ],
            True,
            "1 passed, 0 failed, 2 skipped (2 of them for the budget: not checked, exit code 1)",
        ),
        ([CheckRow("trl fp32", "failed", "train: boom", 1.0)], True, "0 passed, 1 failed"),
    ],
)
def test_doctor_check_exits_1_when_a_path_failed_or_the_budget_left_one_out(
    rows, code_1, said, monkeypatch, capsys, tmp_path
):
    import tempfile

    from grpo_cli.commands import doctor

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # a failed check keeps its folder
    monkeypatch.setattr(selfcheck, "run_checks", lambda *a, **k: rows)
    assert doctor.run_self_check(Console(width=200)) is code_1
    out = capsys.readouterr().out
    assert "--check: " + said in out
    assert ("the logs of every step are in" in out) is (rows[0].status == "failed")
