"""`grpo doctor [CONFIG] [--check]`: the machine, the stack and the Hub before any download; with a
config, what stops `grpo train` here and the memory estimate; exit codes 0, 1 and 2."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grpo_cli import unsloth_names
from grpo_cli.commands.doctor import machine_findings
from grpo_cli.errors import GrpoError
from grpo_cli.stack import StackRow
from tests.conftest import CONFIGS, MINIMAL, REPO
from tests.optional import require
from tests.test_cli import HEAVY

T4 = "Tesla T4, 15360, 7.5, 535.104.05"
L4 = "NVIDIA L4, 23034, 8.9, 550.54.15"
SMI_TABLE = "| NVIDIA-SMI 535.104.05   Driver Version: 535.104.05   CUDA Version: {cuda}     |"


@pytest.fixture(autouse=True)
def _offline_and_wide(monkeypatch):
    """No test waits on the network; 80 columns, as a new user's terminal. huggingface_hub
    reads HF_HUB_OFFLINE once, at its import, so its constant is set too."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    # Importing unsloth patches transformers and trl for the rest of the process (and sets
    # offline variables): in-process reports stop short of it; one test runs it for real, in
    # a process of its own.
    monkeypatch.setattr("grpo_cli.training.models.import_unsloth_first", lambda: None)


@pytest.fixture
def no_gpu(tmp_path, monkeypatch):
    """A PATH without nvidia-smi."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def fake_nvidia_smi(folder: Path, monkeypatch, query_row: str, cuda: str = "12.2") -> None:
    """An nvidia-smi on PATH that answers the query `grpo doctor` asks, and the plain table."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        'case "$1" in --query-gpu=*) '
        f"echo '{query_row}';; *) echo '{SMI_TABLE.format(cuda=cuda)}';; esac\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


def stack_ok() -> list[StackRow]:
    return [StackRow("torch", "2.13.0", "<2.15,>=2.4", True, None, True)]


def test_without_config_imports_no_ml_library():
    """The no-config report is read without torch: it answers at once."""
    code = (
        "import sys\n"
        "from grpo_cli.cli import main\n"
        "rc = main(['doctor'])\n"
        f"loaded = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print('HEAVY', loaded, rc, file=sys.stderr)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=60
    )
    assert "HEAVY []" in result.stderr, result.stderr
    for section in ("machine", "stack", "Hugging Face Hub"):
        assert f"\n{section} " in f"\n{result.stdout}", result.stdout


def test_the_unsloth_recipe_is_checked_with_unsloth_imported_as_train_does():
    """doctor CONFIG builds Unsloth's own GRPOConfig (it rewrites settings), so it imports
    unsloth first, as grpo train does, and says what it found, never a traceback."""
    require("unsloth", "doctor imports it for an unsloth-backend config")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "80"}
    config = str(CONFIGS / "llama1b_fp8_gsm8k.yaml")
    result = subprocess.run(
        [sys.executable, "-m", "grpo_cli", "doctor", config],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr  # this CPU machine cannot run fp8
    assert "Traceback" not in result.stderr, result.stderr
    assert "model.quantization" in result.stdout and "would stop here" in result.stdout


def test_no_gpu_is_said_and_is_not_a_problem(cli, no_gpu, monkeypatch):
    monkeypatch.setattr("grpo_cli.commands.doctor.stack_report", stack_ok)
    result = cli("doctor")
    assert result.code == 0, result.out
    assert "no NVIDIA GPU (nvidia-smi not found)" in result.out
    assert "No problems found with this machine and its libraries." in result.out


def test_a_t4_is_described_without_native_bf16_or_fp8(cli, tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path / "bin", monkeypatch, T4)
    monkeypatch.setattr("grpo_cli.commands.doctor.torch_cuda_build", lambda: "12.8")
    monkeypatch.setattr("grpo_cli.commands.doctor.stack_report", stack_ok)
    result = cli("doctor")
    assert result.code == 0, result.out
    rows = {cells[0]: cells[1] for cells in table_rows(result.out) if len(cells) == 2}
    assert rows["GPU"] == "Tesla T4"
    assert rows["memory"] == "15.0 GiB"
    assert rows["compute capability"] == "7.5"
    assert rows["native bf16"].startswith("no")  # torch would say yes: emulation (defect 1)
    assert rows["fp8"].startswith("no")
    assert rows["NVIDIA driver"] == "535.104.05 (runs CUDA up to 12.2)"
    assert rows["CUDA runtime (torch)"] == "12.8"  # a 12.x runtime runs on a 12.x driver


def test_an_l4_has_bf16_and_fp8(cli, tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path / "bin", monkeypatch, L4)
    monkeypatch.setattr("grpo_cli.commands.doctor.torch_cuda_build", lambda: "12.8")
    rows = {c[0]: c[1] for c in table_rows(cli("doctor").out) if len(c) == 2}
    assert rows["GPU"] == "NVIDIA L4"
    assert rows["native bf16"] == "yes" and rows["fp8"] == "yes"


def test_a_failing_nvidia_smi_is_a_driver_problem(cli, tmp_path, monkeypatch):
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the "
        "NVIDIA driver.'\nexit 9\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(folder))
    monkeypatch.setattr("grpo_cli.commands.doctor.stack_report", stack_ok)
    result = cli("doctor")
    assert result.code == 1
    text = flat(result.out)
    assert "GPU nvidia-smi failed: NVIDIA-SMI has failed because it could not communicate" in text
    assert "driver nvidia-smi failed" in text and "update it" in text


def slow_nvidia_smi(folder: Path, monkeypatch, seconds: float) -> Path:
    """An nvidia-smi that logs when each call starts and ends, answering after SECONDS."""
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "calls.log"
    script = folder / "nvidia-smi"
    script.write_text(
        f"#!/bin/sh\necho start >> {log}\nsleep {seconds}\necho end >> {log}\n"
        'case "$1" in --query-gpu=*) '
        f"echo '{T4}';; *) echo '{SMI_TABLE.format(cuda='12.2')}';; esac\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return log


def test_nvidia_smi_is_asked_both_questions_at_once(tmp_path, monkeypatch):
    from grpo_cli.hardware import probe_nvidia_smi

    log = slow_nvidia_smi(tmp_path / "bin", monkeypatch, seconds=0.3)
    smi = probe_nvidia_smi(timeout=30)
    assert smi.hardware.gpu_name == "Tesla T4" and smi.driver_cuda == "12.2"
    # one after the other would read start, end, start, end
    assert log.read_text().split() == ["start", "start", "end", "end"]


def test_an_nvidia_smi_that_does_not_answer_is_said_and_not_waited_for(tmp_path, monkeypatch):
    import time

    from grpo_cli.hardware import probe_nvidia_smi

    slow_nvidia_smi(tmp_path / "bin", monkeypatch, seconds=30)
    started = time.monotonic()
    smi = probe_nvidia_smi(timeout=0.2)
    assert time.monotonic() - started < 30 / 2  # returned at its timeout, not nvidia-smi's pace
    assert smi.error == "nvidia-smi did not answer in 0.2 s"
    assert smi.hardware.device == "cpu"
    # a driver that is slow to wake is not said to be broken
    assert not machine_findings(smi, "12.8", stack_ok())


def test_a_cpu_build_of_torch_on_a_gpu_machine_is_a_problem(cli, tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path / "bin", monkeypatch, T4)
    monkeypatch.setattr("grpo_cli.commands.doctor.torch_cuda_build", lambda: None)
    monkeypatch.setattr(
        "grpo_cli.commands.doctor.stack_report",
        lambda: [StackRow("torch", "2.13.0+cpu", "<2.15,>=2.4", True, None, True)],
    )
    result = cli("doctor")
    assert result.code == 1
    text = flat(result.out)
    assert "torch 2.13.0+cpu is a CPU build and cannot use the Tesla T4" in text
    assert "CUDA 12.2 or older" in text


def test_a_torch_for_a_newer_cuda_than_the_driver_is_a_problem(cli, tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path / "bin", monkeypatch, T4, cuda="12.2")
    monkeypatch.setattr("grpo_cli.commands.doctor.torch_cuda_build", lambda: "13.0")
    monkeypatch.setattr("grpo_cli.commands.doctor.stack_report", stack_ok)
    result = cli("doctor")
    assert result.code == 1
    assert "built for CUDA 13.0, the NVIDIA driver 535.104.05 runs CUDA up to 12.2" in flat(
        result.out
    )


def test_a_gpu_torch_cannot_use_is_a_problem_with_a_config(cli, write, tmp_path, monkeypatch):
    from grpo_cli.hardware import Hardware

    fake_nvidia_smi(tmp_path / "bin", monkeypatch, L4)
    monkeypatch.setattr("grpo_cli.commands.doctor.torch_cuda_build", lambda: "12.8")
    monkeypatch.setattr("grpo_cli.commands.doctor.stack_report", stack_ok)
    monkeypatch.setattr("grpo_cli.hardware.probe", lambda: Hardware(device="cpu"))
    config = write("c.yaml", MINIMAL + "data: {source: synthetic}\nlogging: {report_to: none}\n")
    monkeypatch.setattr("grpo_cli.hub_access.model_in_cache", lambda name, revision=None: True)
    result = cli("doctor", config)
    assert result.code == 1
    text = flat(result.out)
    assert "nvidia-smi sees the NVIDIA L4 but torch cannot use it" in text
    assert "CUDA_VISIBLE_DEVICES" in text


def test_a_library_outside_the_tested_range_is_a_problem_with_its_fix(cli, no_gpu, monkeypatch):
    rows = [
        StackRow("torch", "2.13.0", "<2.15,>=2.4", True, None, True),
        StackRow(
            "transformers",
            "5.18.0",
            "<=5.17.0,>=5.16.1",
            False,
            "pip install 'transformers<=5.17.0,>=5.16.1'",
            True,
        ),
        StackRow("vllm", None, "==0.31.0", True, None, False),
    ]
    monkeypatch.setattr("grpo_cli.commands.doctor.stack_report", lambda: rows)
    result = cli("doctor")
    assert result.code == 1
    stack = {c[0]: c for c in table_rows(result.out) if len(c) == 4}
    assert stack["transformers"][3] == "mismatch"
    assert stack["vllm"][1:] == ["-", "==0.31.0", "optional"]  # absent, not a problem
    text = flat(result.out)
    assert "transformers 5.18.0 is installed, grpo-cli is tested with <=5.17.0,>=5.16.1" in text
    assert "pip install 'transformers<=5.17.0,>=5.16.1'" in text
    assert "vllm not installed" not in text


def test_the_token_is_said_present_and_never_printed(cli, no_gpu, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_doNotPrintThisToken123")
    out = cli("doctor").out
    assert "hf_doNotPrintThisToken123" not in out
    assert {"token": "present"}.items() <= {c[0]: c[1] for c in table_rows(out)}.items()


def test_an_unreachable_hub_is_said_with_what_to_do(cli, no_gpu):
    out = flat(cli("doctor").out)  # HF_HUB_OFFLINE=1 (the autouse fixture)
    assert "Hub unreachable: HF_HUB_OFFLINE=1" in out
    assert "local folders, or cached ones with HF_HUB_OFFLINE=1" in out


def test_the_hub_gets_less_time_when_the_report_must_be_quick(cli, write, no_gpu, monkeypatch):
    """Without a config the report answers in under 2 s, so the Hub gets 1.5 s of it; with one,
    torch's import takes longer than the Hub's 3 s anyway."""
    asked = []

    def hub_reachable(timeout):
        asked.append(timeout)
        return False, f"no answer within {timeout:g} s"

    monkeypatch.setattr("grpo_cli.hub_access.hub_reachable", hub_reachable)
    assert "unreachable: no answer within 1.5 s" in flat(cli("doctor").out)
    config = write("c.yaml", MINIMAL + "data: {source: synthetic}\n")
    cli("doctor", config)
    assert asked == [1.5, 3.0]


# --- with a config ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_gets_the_whole_report_at_80_columns(path, cli, request, no_gpu):
    # the learning demo's configs name its model and its warm-up run
    folder = request.getfixturevalue(
        "demo_folder" if path.name.startswith("learn") else "shipped_models"
    )
    shutil.copytree(CONFIGS, folder / "configs")
    result = cli("doctor", f"configs/{path.name}")
    assert result.code in (0, 1), result.err
    for line in result.out.splitlines():
        assert len(line) <= 80, line
    titles = [line.strip() for line in result.out.splitlines() if line[:1].isalpha()]
    for title in (
        "machine",
        "stack",
        "Hugging Face Hub",
        f"grpo train configs/{path.name} on this machine",
        "peak GPU memory, an estimate",
        "on the common GPUs (estimate)",
    ):
        assert title in titles, titles
    after = result.out.split("on the common GPUs (estimate)", 1)[1]
    fit_table = after[: after.index("└")]
    gpus = [c[0] for c in table_rows(fit_table) if c[0]]
    assert gpus == ["T4", "L4", "A10G", "A100 40GB", "A100 80GB", "H100"]
    # one size per GPU: the memory column's, which the verdict repeats
    sizes = [c[1] for c in table_rows(fit_table) if c[0]]
    assert sizes == ["14.7 GiB", "22.2 GiB", "22.5 GiB", "39.6 GiB", "79.2 GiB", "79.6 GiB"]
    # each thing said once: the tracker with its reason, the offline fix under problems only
    assert "note logging:" not in flat(result.out)
    assert flat(result.out).count("connect this machine to the network") <= 1
    if "\nproblems (" in result.out:  # one problem per key: the first fix train would ask for
        problems = result.out.split("\nproblems (", 1)[1]
        keys = [line.split("│")[1].strip() for line in problems.splitlines() if "│" in line]
        keys = [k for k in keys if k and "." in k and ":" not in k and "/" not in k]
        assert len(keys) == len(set(keys)), keys


def test_the_smoke_config_can_start_on_cpu(cli, shipped_models, no_gpu, monkeypatch):
    monkeypatch.setattr("grpo_cli.commands.doctor.stack_report", stack_ok)
    shutil.copytree(CONFIGS, shipped_models / "configs")
    result = cli("doctor", "configs/smoke_cpu.yaml")
    assert result.code == 0, result.out
    rows = {c[0]: c[1] for c in table_rows(result.out) if len(c) == 2}
    assert rows["model.name"] == "./models/tiny-qwen2: a local folder"
    assert rows["data.source"] == "synthetic: generated here, no download"
    assert rows["backend"].startswith("trl (")
    assert "No problems found: grpo train configs/smoke_cpu.yaml can start here." in result.out


def test_settings_trl_refuses_are_listed_as_train_would_refuse_them(
    cli, shipped_models, no_gpu, monkeypatch
):
    monkeypatch.setattr("grpo_cli.commands.doctor.stack_report", stack_ok)
    shutil.copytree(CONFIGS, shipped_models / "configs")
    # trl/trainer/grpo_config.py, __post_init__: the clip bounds must be ordered
    bounds = "{vllm_importance_sampling_clip_min: 5.0, vllm_importance_sampling_clip_max: 2.0}"
    result = cli("doctor", "configs/smoke_cpu.yaml", "--set", f"training.trl={bounds}")
    assert result.code == 1, result.out
    text = flat(result.out)
    assert "TRL refused the training settings" in text and "must be less than" in text
    assert "training.trl" in problem_keys(result.out)
    assert "can start here" not in text


def test_a_training_trl_key_grpoconfig_lacks_is_listed_with_a_did_you_mean(
    cli, shipped_models, no_gpu, monkeypatch
):
    monkeypatch.setattr("grpo_cli.commands.doctor.stack_report", stack_ok)
    shutil.copytree(CONFIGS, shipped_models / "configs")
    result = cli("doctor", "configs/smoke_cpu.yaml", "--set", "training.trl={top_kk: 5}")
    assert result.code == 1, result.out
    problems = problem_text(result.out)
    assert "trl.GRPOConfig has no field 'top_kk'. Did you mean 'top_k'? Keys under" in problems
    assert "training.trl.top_kk" in problem_keys(result.out)


def test_a_setting_the_backend_config_rewrites_is_listed_with_the_fix(
    cli, shipped_models, no_gpu, monkeypatch
):
    import trl

    class Rewriting(trl.GRPOConfig):  # as Unsloth's config does for loss_type dapo
        def __post_init__(self):
            super().__post_init__()
            self.epsilon_high = 0.28

    monkeypatch.setattr(trl, "GRPOConfig", Rewriting)
    monkeypatch.setattr("grpo_cli.commands.doctor.stack_report", stack_ok)
    shutil.copytree(CONFIGS, shipped_models / "configs")
    result = cli("doctor", "configs/smoke_cpu.yaml")
    assert result.code == 1, result.out
    text = problem_text(result.out)
    assert "trl would train with epsilon_high 0.28, not the 0.2 set here" in text
    assert "if trl's value is what you want, set it in the config" in text


def test_unsloth_is_imported_before_its_config_is_checked_and_its_failure_is_a_problem(
    cli, shipped_models, no_gpu, monkeypatch
):
    from grpo_cli.errors import GrpoError

    def broken():
        raise GrpoError("model.backend unsloth: importing unsloth failed: RuntimeError: no", "fix")

    from grpo_cli import hardware

    installed = hardware.installed_packages
    monkeypatch.setattr(
        hardware, "installed_packages", lambda cfg=None: {**installed(cfg), "unsloth": True}
    )
    monkeypatch.setattr("grpo_cli.training.models.import_unsloth_first", broken)
    monkeypatch.setattr("grpo_cli.commands.doctor.stack_report", stack_ok)
    shutil.copytree(CONFIGS, shipped_models / "configs")
    result = cli("doctor", "configs/smoke_cpu.yaml", "--set", "model.backend=unsloth")
    assert result.code == 1 and "Traceback" not in result.out + result.err, result.out
    assert "importing unsloth failed: RuntimeError: no: fix" in problem_text(result.out)
    assert "model.backend" in problem_keys(result.out)


def test_the_gpu_recipe_on_cpu_lists_every_setting_with_its_file_and_line(cli, no_gpu, monkeypatch):
    monkeypatch.setattr("grpo_cli.commands.doctor.stack_report", stack_ok)
    result = cli("doctor", CONFIGS / "qwen3b_gsm8k.yaml")
    assert result.code == 1
    where = problem_keys(result.out)
    for key in ("model.quantization", "model.fast_inference", "training.optim"):
        assert where.get(key) == located("qwen3b_gsm8k.yaml", key), where
    assert "would stop here" in result.out


def test_problems_of_an_extended_config_point_at_the_file_that_set_them(cli, no_gpu, monkeypatch):
    monkeypatch.setattr("grpo_cli.commands.doctor.stack_report", stack_ok)
    result = cli("doctor", CONFIGS / "llama1b_fp8_gsm8k.yaml")
    assert result.code == 1
    where = problem_keys(result.out)
    assert where["model.quantization"] == located("llama1b_fp8_gsm8k.yaml", "model.quantization")
    assert where["training.optim"] == located("qwen3b_gsm8k.yaml", "training.optim")


def test_a_model_the_hub_cannot_send_is_a_problem_only_when_it_is_not_cached(
    cli, write, no_gpu, monkeypatch, tmp_path
):
    monkeypatch.setattr("grpo_cli.commands.doctor.stack_report", stack_ok)
    monkeypatch.chdir(tmp_path)
    config = write("hub.yaml", MINIMAL + "logging: {report_to: none}\ndata: {source: synthetic}\n")
    monkeypatch.setattr("grpo_cli.hub_access.model_in_cache", lambda name, revision=None: False)
    offline = cli("doctor", config)
    assert offline.code == 1
    assert problem_keys(offline.out) == {"model.name": "hub.yaml:2"}
    assert "hf download Qwen/Qwen2.5-0.5B-Instruct" in flat(offline.out)

    monkeypatch.setattr("grpo_cli.hub_access.model_in_cache", lambda name, revision=None: True)
    cached = cli("doctor", config)
    assert cached.code == 0, cached.out
    rows = {c[0]: c[1] for c in table_rows(cached.out) if len(c) == 2}
    assert rows["model.name"] == "Qwen/Qwen2.5-0.5B-Instruct: in the local cache"

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("grpo_cli.hub_access.hub_reachable", lambda timeout: (True, "answered"))
    monkeypatch.setattr("grpo_cli.hub_access.model_in_cache", lambda name, revision=None: False)
    online = cli("doctor", config)
    assert online.code == 0, online.out
    assert "not cached yet: downloaded on first use" in flat(online.out)


@pytest.mark.parametrize(
    ("backend", "in_cache", "said"),
    [
        ("auto", "unsloth/Qwen2.5-0.5B-Instruct-unsloth-bnb-4bit", "in the local cache"),
        ("trl", "unsloth/Qwen2.5-0.5B-Instruct-unsloth-bnb-4bit", None),  # trl loads the name
        ("auto", "Qwen/Qwen2.5-0.5B-Instruct-AWQ", None),  # another repo, not a copy
    ],
)
def test_doctor_says_cached_exactly_when_train_would_not_refuse(
    cli, write, no_gpu, monkeypatch, tmp_path, backend, in_cache, said
):
    from grpo_cli.config import load_config
    from grpo_cli.hub_access import config_items, refuse_unreachable

    if not unsloth_names.tables() and in_cache.startswith("unsloth/"):
        pytest.skip("unsloth is not installed: its mapper names the copies")
    monkeypatch.setattr("grpo_cli.commands.doctor.stack_report", stack_ok)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        "grpo_cli.hub_access.model_in_cache", lambda name, revision=None: name == in_cache
    )
    body = MINIMAL + "data: {source: synthetic}\nlogging: {report_to: none}\n"
    model = f"model:\n  backend: {backend}\n  quantization: 4bit\n"
    config = write("hub.yaml", body.replace("model:\n", model, 1))
    result = cli("doctor", config)
    rows: dict[str, str] = {}
    for cells in table_rows(result.out):  # the Hub table's row, not the problems table's
        if len(cells) == 2:
            rows.setdefault(cells[0], cells[1])
    items = config_items(load_config(config).config)
    if said is None:
        assert "not in the local cache" in rows["model.name"]
        assert "model.name" in problem_keys(result.out)
        with pytest.raises(GrpoError):
            refuse_unreachable(items, lambda: (False, "offline"))
    else:
        assert rows["model.name"].startswith(f"Qwen/Qwen2.5-0.5B-Instruct: {said}"), rows
        assert in_cache in rows["model.name"]
        assert "model.name" not in problem_keys(result.out)  # (4-bit on this CPU is one)
        refuse_unreachable(items, lambda: (False, "offline"))


def test_a_config_that_does_not_load_exits_2_before_any_report(cli, write):
    bad = write("bad.yaml", MINIMAL + "trainig: {}\n")
    result = cli("doctor", bad)
    assert result.code == 2
    assert result.out == ""
    assert result.err.startswith("Error: ") and "Did you mean 'training'?" in result.err


def test_overrides_apply_to_the_config_checked(cli, shipped_models, no_gpu, monkeypatch):
    monkeypatch.setattr("grpo_cli.commands.doctor.stack_report", stack_ok)
    result = cli("doctor", CONFIGS / "smoke_cpu.yaml", "--set", "model.quantization=4bit")
    assert result.code == 1
    assert problem_keys(result.out) == {"model.quantization": "--set model.quantization=4bit"}


def test_the_memory_estimate_shows_its_parts_and_what_would_fit(cli, write, no_gpu, monkeypatch):
    from grpo_cli import memory

    estimate = memory.MemoryEstimate(
        [
            ("base weights (4bit)", 2.0),
            ("vLLM (gpu_memory_utilization 0.7)", 11.2),
            ("LoRA gradients (fp32)", 0.02),
            ("reference model", 0.0),
        ],
        13.2,
        ["calibrated on Unsloth's figures"],
    )
    fits = [
        memory.GpuFit("T4", 14.7, False, "too small", ["set model.max_seq_length: 512"]),
        memory.GpuFit("L4", 22.2, True, "fits", []),
    ]
    monkeypatch.setattr(memory, "estimate", lambda cfg, precision, backend: estimate)
    monkeypatch.setattr(memory, "fit_table", lambda est: fits if est is estimate else [])
    config = write("m.yaml", MINIMAL + "data: {source: synthetic}\nlogging: {report_to: none}\n")
    rows = table_rows(cli("doctor", config).out)
    assert ["vLLM (gpu_memory_utilization 0.7)", "11.2"] in rows
    assert ["LoRA gradients (fp32)", "<0.1"] in rows and ["reference model", "0.0"] in rows
    assert ["total (estimate)", "13.2"] in rows
    assert ["T4", "14.7 GiB", "too small", "set model.max_seq_length: 512"] in rows
    assert ["L4", "22.2 GiB", "fits", ""] in rows
    monkeypatch.setattr(memory, "fit_table", lambda est, cfg=None: fits[1:])
    out = cli("doctor", config).out
    assert ["L4", "22.2 GiB", "fits"] in table_rows(out) and "to make it fit" not in out


# --- --check ------------------------------------------------------------------------------------


def test_check_prints_one_table_and_exits_1_when_a_path_failed(cli, no_gpu, monkeypatch):
    from grpo_cli import selfcheck
    from grpo_cli.hardware import Hardware

    seen = {}

    def run_checks(console, workdir, hw):
        seen["workdir"], seen["hw"] = workdir, hw
        assert workdir.is_dir()
        return [
            selfcheck.CheckRow("trl backend, fp32", "passed", "", 6.25),
            selfcheck.CheckRow("trl backend, 4-bit", "failed", "CUDA error: out of memory", 3.0),
            selfcheck.CheckRow("unsloth fast_inference", "skipped", "vllm is not installed", None),
        ]

    monkeypatch.setattr("grpo_cli.hardware.probe", lambda: Hardware(device="cpu"))
    monkeypatch.setattr(selfcheck, "run_checks", run_checks)
    monkeypatch.setattr("grpo_cli.commands.doctor.stack_report", stack_ok)
    result = cli("doctor", "--check")
    assert result.code == 1
    rows = table_rows(result.out)
    assert ["trl backend, fp32", "passed", "6.2"] in rows
    assert ["trl backend, 4-bit", "failed: CUDA error: out of memory", "3.0"] in rows
    assert ["unsloth fast_inference", "skipped: vllm is not installed", "-"] in rows
    assert "--check: 1 passed, 1 failed, 1 skipped" in result.out
    assert seen["hw"] == Hardware(device="cpu")
    # a failed path keeps every step's log, and says where
    failed_in = seen["workdir"]
    assert failed_in.is_dir() and str(failed_in / "logs") in result.out.replace("\n", "")
    shutil.rmtree(failed_in)

    def passing(console, workdir, hw):
        return run_checks(console, workdir, hw)[::2]

    monkeypatch.setattr(selfcheck, "run_checks", passing)
    assert cli("doctor", "--check").code == 0
    assert not seen["workdir"].exists()  # the tiny model and its runs are cleaned up


# --- reading the tables back --------------------------------------------------------------------


def table_rows(out: str) -> list[list[str]]:
    """Each row of every table, the lines of its wrapped cells joined."""
    rows: list[list[str]] = []
    in_row = False
    for line in out.splitlines():
        if not line.startswith("│"):
            in_row = False
            continue
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if in_row and not cells[0]:
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
        else:
            rows.append(cells)
            in_row = True
    return rows


def problem_keys(out: str) -> dict[str, str]:
    """{where: file:line} of the problems table, whose rows are ruled apart: the key, and the
    location below it."""
    where: dict[str, str] = {}
    cells: list[str] = []
    for line in out.split("\nproblems (", 1)[1].splitlines():
        if line.startswith("│"):
            cells.append(line.split("│")[1].strip())
        elif cells:
            key, *location = [c for c in cells if c]
            where[key] = " ".join(location)
            cells = []
    return where


def problem_text(out: str) -> str:
    """The problems table's second column, its wrapped lines joined."""
    return " ".join(c[1] for c in table_rows(out.split("\nproblems (", 1)[1]) if len(c) == 2)


def located(config: str, key: str) -> str:
    """configs/CONFIG:LINE where the shipped config writes KEY (a section, then its key)."""
    section, name = key.split(".")
    lines = (CONFIGS / config).read_text().splitlines()
    start = lines.index(f"{section}:")
    line = next(i for i in range(start, len(lines)) if lines[i].startswith(f"  {name}:"))
    return f"configs/{config}:{line + 1}"


def flat(out: str) -> str:
    """The output's words, table borders and wrapping removed."""
    return " ".join(out.replace("│", " ").replace("┃", " ").split())
