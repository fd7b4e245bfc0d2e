"""Several processes, decided without starting any: where this process stands, the batch
geometry over N, the refusals said before launching, the launch command, the shipped accelerate
configs, quantized weights on each process's own GPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from grpo_cli import distributed
from grpo_cli.config import load_config
from grpo_cli.distributed import Launch, Processes, current, launch_command, launch_problems
from grpo_cli.errors import GrpoError
from grpo_cli.hardware import Hardware, preflight

from .conftest import CONFIGS, config_problems, smoke_args

ACCELERATE = {"ACCELERATE_MIXED_PRECISION": "no", "ACCELERATE_DYNAMO_BACKEND": "NO"}
TORCHRUN = {"TORCHELASTIC_RUN_ID": "none"}
SHIPPED = sorted((CONFIGS / "accelerate").glob("*.yaml"))


@pytest.fixture
def two_processes(monkeypatch):
    """This process as rank 0 of 2, as `accelerate launch --num_processes 2` starts it."""
    for key, value in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", **ACCELERATE}.items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, Processes(1, 0, 0, "none", "none")),
        (
            {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", **TORCHRUN},
            Processes(4, 3, 1, "torchrun", "ddp"),
        ),
        (
            {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", **ACCELERATE},
            Processes(2, 1, 1, "accelerate", "ddp"),
        ),
        (
            {"WORLD_SIZE": "8", **ACCELERATE, "ACCELERATE_USE_DEEPSPEED": "true"}
            | {"ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"},
            Processes(8, 0, 0, "accelerate", "zero3"),
        ),
        (
            {"WORLD_SIZE": "2", **ACCELERATE, "ACCELERATE_USE_FSDP": "true"},
            Processes(2, 0, 0, "accelerate", "fsdp"),
        ),
    ],
)
def test_where_this_process_stands(env, expected):
    assert current(env) == expected
    assert current(env).is_main == (expected.rank == 0)


def test_the_step_counts_over_every_process(two_processes, shipped_models):
    from grpo_cli.training.trl_args import grpo_config_kwargs

    cfg = load_config(CONFIGS / "smoke_cpu.yaml").config  # 2 prompts x 4 = 8 completions
    kwargs = grpo_config_kwargs(cfg, "out", "fp32", "cpu", [1.0] * len(cfg.rewards))
    assert kwargs["per_device_train_batch_size"] == 4  # 8 completions over 2 processes
    assert kwargs["generation_batch_size"] == 8  # TRL's is global (trl/trainer/grpo_config.py)
    # every LoRA weight takes part in the forward pass: DDP need not search for unused ones
    assert kwargs["ddp_find_unused_parameters"] is False


def test_a_step_that_does_not_split_over_the_processes_is_refused_with_the_nearest_settings(
    two_processes, shipped_models
):
    problems = config_problems(
        CONFIGS / "smoke_cpu.yaml",
        ["training.prompts_per_step=3", "training.num_generations=3"],
    )
    [problem] = problems
    assert problem.key == "training.gradient_accumulation_steps"
    assert "x 2 processes" in problem.message
    assert "prompts_per_step: 2 (or 4)" in problem.message


def test_processes_refuses_before_launching(cli, tiny_model, tmp_path, monkeypatch):
    def launched(command, folder):
        raise AssertionError("launched")

    monkeypatch.setattr(distributed, "run_launcher", launched)
    args = smoke_args(tiny_model, tmp_path, "--processes", "2")
    split = cli(
        *args, "--set", "training.prompts_per_step=3", "--set", "training.num_generations=3"
    )
    assert split.code == 2
    assert "9 completions per step do not split" in split.err and "prompts_per_step: 2" in split.err
    unsloth = cli(*args, "--set", "model.backend=unsloth")
    assert unsloth.code == 2 and "use backend: trl" in unsloth.err
    sharded = cli(*args, "--distributed", "fsdp")  # this machine has no GPU
    assert sharded.code == 2 and "on CPU use --distributed ddp" in sharded.err
    machines = cli(*args, "--machines", "2")
    assert machines.code == 2 and "--main-process-ip" in machines.err
    (tmp_path / "outputs" / "smoke-cpu").mkdir(parents=True)
    (tmp_path / "outputs" / "smoke-cpu" / "metrics.jsonl").write_text('{"step": 1}\n')
    trained = cli(*args)
    assert trained.code == 2 and "already exists" in trained.err


def test_a_dry_run_refuses_what_the_processes_would(cli, tiny_model, tmp_path, monkeypatch):
    def launched(command, folder):
        raise AssertionError("launched")

    monkeypatch.setattr(distributed, "run_launcher", launched)
    args = smoke_args(tiny_model, tmp_path, "--processes", "2", "--dry-run")
    split = cli(
        *args, "--set", "training.prompts_per_step=3", "--set", "training.num_generations=3"
    )
    assert split.code == 2 and "9 completions per step do not split" in split.err
    unsloth = cli(*args, "--set", "model.backend=unsloth")
    assert unsloth.code == 2 and "use backend: trl" in unsloth.err
    # the same step on one process is fine: the refusal is the processes'
    one = smoke_args(tiny_model, tmp_path, "--dry-run")
    assert (
        cli(
            *one, "--set", "training.prompts_per_step=3", "--set", "training.num_generations=3"
        ).code
        == 0
    )


def test_a_launched_process_is_not_launched_again(cli, tiny_model, tmp_path, two_processes):
    result = cli(*smoke_args(tiny_model, tmp_path, "--processes", "2"))
    assert result.code == 2 and "drop --processes" in result.err


def test_the_launch_command_is_accelerates_own():
    launch = Launch(8, "zero3", machines=2, machine_rank=1, main_process_ip="10.0.0.1")
    command = launch_command(launch, ["train", "c.yaml", "--resume"], Path("/scratch/launch"))
    assert command[1:3] == ["-m", "accelerate.commands.launch"]
    flags = dict(zip(command[3:15:2], command[4:15:2], strict=True))
    assert flags == {
        "--config_file": str(CONFIGS / "accelerate" / "zero3.yaml"),
        "--num_processes": "8",  # over all machines, as accelerate counts them
        "--num_machines": "2",
        "--machine_rank": "1",
        "--main_process_ip": "10.0.0.1",
        "--log_dir": str(Path("/scratch/launch/logs")),  # the launch's folder, not torch's
    }
    assert command[-5:] == ["-m", "grpo_cli", "train", "c.yaml", "--resume"]


def test_launch_flags_that_cannot_work_are_refused():
    assert launch_problems(Launch(4, "ddp", machines=2, main_process_ip="h")) == []
    keys = [k for k, _ in launch_problems(Launch(3, "mpi", machines=2, machine_rank=2))]
    assert keys == ["--distributed", "--processes", "--machine-rank", "--main-process-ip"]


def test_unsloth_trains_on_one_process(two_processes, shipped_models):
    gpu = Hardware("cuda", "NVIDIA L4", 22.0, (8, 9), 2, bf16=True)
    has = {"unsloth": True, "wandb_login": False}
    auto = load_config(CONFIGS / "smoke_cpu.yaml").config
    checked = preflight(auto, gpu, has)
    assert checked.backend == "trl" and "not 2" in checked.backend_reason
    unsloth = auto.model_copy(
        update={"model": auto.model.model_copy(update={"backend": "unsloth"})}
    )
    [(key, message)] = preflight(unsloth, gpu, has).problems
    assert key == "model.backend" and "use backend: trl" in message


def test_quantized_weights_go_to_this_processs_gpu(monkeypatch, shipped_models):
    from grpo_cli.training import models

    monkeypatch.setenv("LOCAL_RANK", "1")
    asked = {}

    def load(load_weights, name, **kwargs):
        asked.update(load_weights.keywords)
        raise GrpoError("stopped before loading", None)

    monkeypatch.setattr(models, "cache_first", load)
    cfg = load_config(CONFIGS / "smoke_cpu.yaml", ["model.quantization=4bit"]).config
    with pytest.raises(GrpoError, match="stopped before loading"):
        models.load_trl_model(cfg, "bf16")
    assert asked["device_map"] == {"": 1}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_accelerate_configs_load_with_accelerate(path: Path):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    config = load_config_from_file(str(path))
    expected = {
        "ddp.yaml": (DistributedType.MULTI_GPU, None),
        "zero2.yaml": (DistributedType.DEEPSPEED, 2),
        "zero3.yaml": (DistributedType.DEEPSPEED, 3),
        "fsdp2.yaml": (DistributedType.FSDP, None),
    }[path.name]
    stage = (config.deepspeed_config or {}).get("zero_stage")
    assert (config.distributed_type, stage) == expected
    # grpo's precision decides; accelerate's would turn autocast on behind it
    assert config.mixed_precision == "no"
    assert (
        distributed.accelerate_config(
            {"ddp.yaml": "ddp", "zero2.yaml": "zero2", "zero3.yaml": "zero3"}.get(path.name, "fsdp")
        )
        == path
    )


def test_one_process_decides_alone():
    assert distributed.decided_by_main(lambda: 7) == 7
    assert distributed.any_process(True) is True and distributed.any_process(False) is False


CONFIG_ERROR = "Error: model.name: no such folder\nHint: check the path"
OOM = "Error: CUDA out of memory on GPU 1\nHint: lower prompts_per_step"


@pytest.mark.parametrize(
    ("exits", "expected"),
    [
        # every process met the same refusal: the main one said it, nothing more to say
        ({0: (2, CONFIG_ERROR), 1: (2, CONFIG_ERROR)}, (2, None)),
        ({0: (0, ""), 1: (0, "")}, (0, None)),
        # Ctrl-C: every process stopped
        ({0: (130, "Stopped"), 1: (130, "")}, (130, None)),
        # process 1 failed alone; the launcher stopped the main one, or its next collective
        # lost the connection (an unexpected error, exit 1)
        ({0: (130, "Stopped by SIGTERM"), 1: (2, OOM)}, (2, OOM)),
        ({0: (1, ""), 1: (2, OOM)}, (2, OOM)),
        # process 1 crashed (an unexpected error it printed itself): its code, not a Ctrl-C's
        ({0: (130, "Stopped by SIGTERM"), 1: (1, "")}, (1, "its error is above")),
        # both crashed: each printed its own error
        ({0: (1, ""), 1: (1, "")}, (1, None)),
        # the main process failed on its own: its code, it said why
        ({0: (2, CONFIG_ERROR), 1: (130, "")}, (2, None)),
        ({0: (2, CONFIG_ERROR), 1: (2, OOM)}, (2, None)),
        # another machine's processes, without the main one
        ({2: (130, ""), 3: (2, OOM)}, (2, OOM)),
        ({2: (2, ""), 3: (2, "")}, (2, "process 2")),
        ({2: (130, ""), 3: (130, "")}, (130, None)),
        # no process recorded its end (killed): the launcher's own code
        ({}, (1, None)),
    ],
)
def test_the_failure_of_one_process_is_the_runs_exit_and_said_once(exits, expected):
    code, message = distributed.ending(exits, launcher_code=1)
    assert code == expected[0]
    if expected[1] is None:
        assert message is None
    else:
        assert expected[1] in message and "process" in message.splitlines()[0]


def test_a_stop_the_user_asked_for_is_130_whatever_a_process_met_on_its_way_out():
    exits = {0: (130, "Stopped by SIGINT"), 1: (1, "")}  # 1 lost its connection while stopping
    assert distributed.ending(exits, launcher_code=1, signalled=True) == (130, None)


def test_debug_reaches_the_launched_processes_and_no_later_command(
    cli, tiny_model, tmp_path, monkeypatch
):
    monkeypatch.delenv("GRPO_DEBUG", raising=False)
    commands: list[list[str]] = []
    monkeypatch.setattr(
        distributed, "run_launcher", lambda command, folder: commands.append(command) or 0
    )
    args = smoke_args(tiny_model, tmp_path, "--processes", "2")
    assert cli(*args, "--debug").code == 0
    assert cli(*args).code == 0
    with_debug, without = commands
    assert "--debug" in with_debug[with_debug.index("grpo_cli") :]
    assert "--debug" not in without
