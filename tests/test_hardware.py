"""Backend and precision choices, and the refusals that come before any download."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from grpo_cli.config import GrpoConfig, load_config
from grpo_cli.config.checks import cross_field_problems
from grpo_cli.hardware import (
    BF16_NEEDS,
    Hardware,
    choose_backend,
    choose_precision,
    choose_tracker,
    hardware_problems,
    installed_packages,
    native_bf16,
    preflight,
)

from .conftest import CONFIGS, smoke_args
from .optional import require

CPU = Hardware(device="cpu")
T4 = Hardware("cuda", "Tesla T4", 15.0, (7, 5), 1, bf16=False)
L4 = Hardware("cuda", "NVIDIA L4", 22.0, (8, 9), 1, bf16=True)
H100 = Hardware("cuda", "NVIDIA H100 80GB HBM3", 79.0, (9, 0), 1, bf16=True)
ALL = {
    "unsloth": True,
    "vllm": True,
    "vllm_4bit": True,
    "bitsandbytes": True,
    "wandb": True,
    "wandb_login": True,
}


@pytest.mark.parametrize(
    ("requested", "hw", "unsloth", "expected"),
    [
        ("auto", L4, True, "unsloth"),
        ("auto", L4, False, "trl"),
        ("auto", CPU, True, "trl"),
        ("trl", L4, True, "trl"),
        ("unsloth", CPU, True, "unsloth"),
    ],
)
def test_backend_choice_and_its_reason(requested, hw, unsloth, expected):
    backend, reason = choose_backend(requested, hw, unsloth)
    assert backend == expected
    # Printed as `backend: trl (reason)`: one phrase that names the setting, nothing nested.
    assert reason.startswith(f"model.backend is {requested}")
    assert "(" not in reason and ")" not in reason, reason


@pytest.mark.parametrize(
    ("dtype", "hw", "expected"),
    [("auto", L4, "bf16"), ("auto", T4, "fp16"), ("auto", CPU, "fp32"), ("fp16", L4, "fp16")],
)
def test_precision_follows_the_hardware_unless_set(dtype, hw, expected):
    precision, reason = choose_precision(dtype, hw)
    assert precision == expected
    assert reason.startswith(f"model.dtype is {dtype}")
    assert "(" not in reason and ")" not in reason, reason


def problems_for(config: str, hw: Hardware, has=ALL, overrides=()):
    cfg = load_config(CONFIGS / config, list(overrides)).config
    backend, _ = choose_backend(cfg.model.backend, hw, has.get("unsloth", False))
    precision, _ = choose_precision(cfg.model.dtype, hw)
    return dict(hardware_problems(cfg, hw, backend, precision, has))


def test_the_seed_recipe_runs_on_a_t4_with_the_gpu_extras():
    assert problems_for("qwen3b_gsm8k.yaml", T4) == {}


def test_the_seed_recipe_starts_on_a_fresh_colab_logging_to_tensorboard():
    # Colab ships tensorboard, not wandb; the gpu extra adds unsloth, vllm, its bitsandbytes
    # plugin and bitsandbytes.
    colab = {
        "unsloth": True,
        "vllm": True,
        "vllm_4bit": True,
        "bitsandbytes": True,
        "tensorboard": True,
    }
    cfg = load_config(CONFIGS / "qwen3b_gsm8k.yaml").config
    checked = preflight(cfg, T4, {**colab, "wandb_login": False})
    assert checked.problems == []
    assert checked.tracker == "tensorboard"
    assert "logging: tensorboard (report_to is auto: wandb is not installed)" in checked.notes


@pytest.mark.parametrize(
    ("has", "tracker", "why"),
    [
        ({"wandb": True, "wandb_login": True, "tensorboard": True}, "wandb", "wandb can log"),
        ({"wandb": True, "tensorboard": True}, "tensorboard", "wandb has no API key"),
        ({"trackio": True}, "trackio", "tensorboard is not installed"),
        ({}, "none", "trackio is not installed"),
    ],
)
def test_report_to_auto_takes_the_first_tracker_that_can_log(has, tracker, why):
    chosen, note = choose_tracker("auto", has)
    assert chosen == tracker
    assert note is not None and note.startswith(f"logging: {tracker} (report_to is auto")
    assert why in note


def test_an_explicit_tracker_that_cannot_log_is_still_refused():
    cfg = load_config(CONFIGS / "qwen3b_gsm8k.yaml", ["logging.report_to=wandb"]).config
    no_wandb = preflight(cfg, T4, {**ALL, "wandb": False})
    assert "pip install -e '.[wandb]'" in dict(no_wandb.problems)["logging.report_to"]
    no_key = preflight(cfg, T4, {**ALL, "wandb_login": False})
    assert "wandb login" in dict(no_key.problems)["logging.report_to"]
    assert (no_key.tracker, no_key.notes) == ("wandb", [])


def test_the_tracker_in_force_is_the_one_trl_reports_to():
    from grpo_cli.training.trl_args import grpo_config_kwargs

    cfg = load_config(CONFIGS / "qwen3b_gsm8k.yaml").config
    assert cfg.logging.report_to == "auto"
    tracker = preflight(cfg, T4, {**ALL, "wandb": False, "tensorboard": True}).tracker
    kwargs = grpo_config_kwargs(cfg, "out", "fp16", "cuda", [1.0], tracker=tracker)
    assert kwargs["report_to"] == ["tensorboard"]
    nothing = preflight(cfg, T4, {**ALL, "wandb": False}).tracker
    assert grpo_config_kwargs(cfg, "out", "fp16", "cuda", [1.0], tracker=nothing)["report_to"] == []


def test_installed_packages_asks_wandb_only_when_the_config_may_use_it(monkeypatch):
    import grpo_cli.hardware as hardware

    monkeypatch.setattr(hardware, "wandb_can_log", lambda: False)
    seed = load_config(CONFIGS / "qwen3b_gsm8k.yaml").config
    assert installed_packages(seed)["wandb_login"] is False  # auto may take wandb
    plain = load_config(CONFIGS / "qwen3b_gsm8k.yaml", ["logging.report_to=none"]).config
    assert installed_packages(plain)["wandb_login"] is True
    assert {"unsloth", "vllm", "bitsandbytes", "torchao", "tensorboard"} <= set(
        installed_packages(plain)
    )


def test_a_t4_that_can_emulate_bfloat16_is_not_given_it(monkeypatch):
    """torch's default is_bf16_supported() says yes on a T4 because a bf16 tensor can be made
    there (torch/cuda/__init__.py); probe() must say no, as Unsloth does, or auto precision
    picks bf16 and Unsloth's trainer refuses it after the downloads."""
    import torch

    from grpo_cli.hardware import probe

    def fake_gpu(name: str, capability: tuple[int, int]) -> None:
        props = SimpleNamespace(
            name=name, total_memory=15 * 2**30, major=capability[0], minor=capability[1]
        )
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: props)
        monkeypatch.setattr(torch.cuda, "_check_bf16_tensor_supported", lambda device: True)
        monkeypatch.setattr(torch.version, "hip", None)

    fake_gpu("Tesla T4", (7, 5))
    assert torch.cuda.is_bf16_supported()  # the emulation answer the old probe took
    t4 = probe()
    assert (t4.capability, t4.bf16) == ((7, 5), False)
    assert choose_precision("auto", t4)[0] == "fp16"
    fake_gpu("NVIDIA L4", (8, 9))
    assert probe().bf16 is True


def test_bf16_asked_for_on_a_t4_is_a_config_error_before_any_download(
    cli, tiny_model, tmp_path, monkeypatch
):
    import grpo_cli.hardware as hardware

    monkeypatch.setattr(hardware, "probe", lambda: T4)
    args = smoke_args(tiny_model, tmp_path, "--set", "model.dtype=bf16")
    result = cli(*args)
    assert result.code == 2
    assert "model.dtype" in result.err and "compute capability 7.5" in result.err
    assert "Traceback" not in result.err
    assert not (tmp_path / "outputs" / "smoke-cpu" / "env.json").exists()


def test_fp8_is_refused_on_a_t4_and_accepted_on_an_l4():
    assert "Ada or Hopper" in problems_for("llama1b_fp8_gsm8k.yaml", T4)["model.quantization"]
    assert problems_for("llama1b_fp8_gsm8k.yaml", L4) == {}


@pytest.mark.parametrize(
    ("name", "hw", "has", "expected"),
    [
        # Unsloth's mapper has a pre-quantized FP8 repo for these: an Ada GPU runs it
        ("meta-llama/Llama-3.2-1B-Instruct", L4, ALL, None),
        ("unsloth/Llama-3.2-1B-Instruct", L4, ALL, None),
        ("Qwen/Qwen3-4B", L4, ALL, None),
        ("unsloth/Llama-3.2-1B-Instruct-FP8-Block", L4, ALL, None),
        # No FP8 copy: Unsloth quantizes on the fly, which needs 9.0 and torchao 0.15+
        ("Qwen/Qwen2.5-3B-Instruct", L4, {**ALL, "torchao": True}, "compute capability 9.0"),
        ("Qwen/Qwen2.5-3B-Instruct", H100, ALL, "torchao 0.15+"),
        ("Qwen/Qwen2.5-3B-Instruct", H100, {**ALL, "torchao": True}, None),
    ],
)
def test_fp8_on_a_model_unsloth_has_no_fp8_copy_of_needs_a_hopper_and_torchao(
    name, hw, has, expected
):
    require("unsloth", "its mapper says which models have an FP8 copy")
    problems = problems_for("llama1b_fp8_gsm8k.yaml", hw, has, [f"model.name={name}"])
    if expected is None:
        assert problems == {}
    else:
        assert expected in problems["model.quantization"]


def test_fast_inference_without_vllm_and_4bit_without_bitsandbytes_are_refused():
    problems = problems_for("qwen3b_gsm8k.yaml", L4, {"unsloth": True})
    assert "vLLM, which is not installed" in problems["model.fast_inference"]
    assert "need bitsandbytes" in problems["model.quantization"]


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["model.backend=trl", "model.fast_inference=false", "vllm.use=true"],
    ],
)
def test_4bit_through_vllm_without_the_bnb_plugin_is_refused_before_any_download(overrides):
    # The seed recipe (unsloth fast_inference) and TRL's colocated vLLM both hand 4-bit weights
    # to vLLM, which since 0.28 needs vllm-bnb-plugin for them.
    has = {**ALL, "vllm_4bit": False}
    problems = problems_for("qwen3b_gsm8k.yaml", T4, has, overrides)
    assert "vllm-bnb-plugin" in problems["model.quantization"]
    assert "pip install -e '.[gpu]'" in problems["model.quantization"]
    assert problems_for("qwen3b_gsm8k.yaml", T4, {**ALL, "vllm_4bit": True}, overrides) == {}


@pytest.mark.parametrize(
    ("versions", "can"),
    [
        ({"vllm": "0.31.0"}, False),
        ({"vllm": "0.31.0", "vllm-bnb-plugin": "0.0.3"}, True),
        ({"vllm": "0.28.0rc1"}, False),  # a release candidate already moved bitsandbytes out
        ({"vllm": "0.27.1"}, True),  # bitsandbytes still in tree
        ({}, True),  # no vLLM: nothing to refuse here (fast_inference is refused for itself)
    ],
)
def test_installed_packages_needs_the_plugin_only_from_vllm_0_28(monkeypatch, versions, can):
    """Installed versions are read by stack.installed_version, the reader `grpo doctor`'s
    stack table uses, so the two cannot disagree on what is installed."""
    import grpo_cli.hardware as hardware

    cfg = load_config(CONFIGS / "qwen3b_gsm8k.yaml").config
    monkeypatch.setattr(hardware, "installed_version", versions.get)
    assert installed_packages(cfg)["vllm_4bit"] is can


@pytest.mark.parametrize(
    ("version", "can"),
    [("0.15.0", True), ("0.15.0+cu126", True), ("0.16.1.dev20261101", True), ("0.14.1", False)],
)
def test_torchao_counts_from_0_15_local_builds_included(monkeypatch, version, can):
    import grpo_cli.hardware as hardware

    monkeypatch.setattr(hardware, "installed_version", {"torchao": version}.get)
    assert installed_packages()["torchao"] is can


def test_bf16_on_a_t4_is_refused():
    problems = problems_for("qwen3b_gsm8k.yaml", T4, overrides=["model.dtype=bf16"])
    assert "has no native bfloat16, which needs compute capability 8.0" in problems["model.dtype"]


@pytest.mark.parametrize(
    ("capability", "native"),
    [
        ((7, 0), False),
        ((7, 5), False),
        ((8, 0), True),
        ((8, 6), True),
        ((9, 0), True),
        ((12, 0), True),
    ],
)
def test_native_bf16_is_unsloths_rule_and_the_reasons_name_it(capability, native):
    """unsloth/models/_utils.py, SUPPORTS_BFLOAT16: capability major >= 8. The precision
    choice and the dtype refusal say the figure of the same rule."""
    assert native_bf16(capability) is native is (capability[0] >= 8)
    gpu = Hardware("cuda", "GPU", 16.0, capability, 1, bf16=native_bf16(capability))
    precision, reason = choose_precision("auto", gpu)
    assert precision == ("bf16" if native else "fp16")
    problems = dict(
        hardware_problems(
            load_config(CONFIGS / "qwen3b_gsm8k.yaml", ["model.dtype=bf16"]).config,
            gpu,
            "unsloth",
            "bf16",
            ALL,
        )
    )
    assert (BF16_NEEDS in reason) is (not native)
    assert ("model.dtype" in problems) is (not native)
    assert native or BF16_NEEDS in problems["model.dtype"]


def test_both_refusals_of_a_dropped_revision_give_one_fix():
    """Unsloth drops a revision for fast_inference (a config check) and when it swaps in its
    own copy (a check of this machine's install): the fix reads the same in both."""
    require("unsloth", "its mapper says which names it replaces")
    overrides = ["model.revision=v1", "model.backend=unsloth", "model.fast_inference=false"]
    machine = problems_for("qwen3b_gsm8k.yaml", L4, overrides=overrides)["model.revision"]
    model = {"name": "Qwen/Qwen2.5-3B-Instruct", "revision": "v1", "fast_inference": True}
    cfg = GrpoConfig.model_validate({"model": model, "rewards": ["correctness"]})
    config = dict(cross_field_problems(cfg))["model.revision"]
    fix = (
        " and ignores the revision: download it (`hf download Qwen/Qwen2.5-3B-Instruct "
        "--revision v1 --local-dir DIR`) and set model.name: DIR with no revision, or set "
    )
    assert fix in machine and fix in config
    assert machine.endswith("model.backend: trl") and config.endswith("fast_inference: false")


def test_a_tracker_that_is_not_installed_is_refused_with_its_extra():
    problems = problems_for("qwen3b_gsm8k.yaml", T4, overrides=["logging.report_to=trackio"])
    assert "pip install -e '.[trackio]'" in problems["logging.report_to"]
    assert (
        problems_for(
            "qwen3b_gsm8k.yaml", T4, {**ALL, "tensorboard": True}, ["logging.report_to=tensorboard"]
        )
        == {}
    )


def test_wandb_without_a_key_is_refused_unless_offline(monkeypatch, tmp_path):
    from grpo_cli.hardware import wandb_can_log

    problem = problems_for(
        "qwen3b_gsm8k.yaml", T4, {**ALL, "wandb_login": False}, ["logging.report_to=wandb"]
    )
    assert "wandb login" in problem["logging.report_to"]
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert not wandb_can_log()
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_can_log()
    monkeypatch.delenv("WANDB_MODE")
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    (tmp_path / ".netrc").chmod(0o600)
    assert wandb_can_log()


def test_report_to_auto_logs_where_the_run_says_it_does(cli, tiny_model, tmp_path, monkeypatch):
    """From preflight to TRL's report_to: the tracker auto chose is the one that writes."""
    from tests.optional import require

    require("tensorboard", "report_to auto falling back to tensorboard")
    import grpo_cli.hardware as hardware

    real = hardware.installed
    monkeypatch.setattr(hardware, "installed", lambda name: name != "wandb" and real(name))
    args = smoke_args(tiny_model, tmp_path, "--set", "logging.report_to=auto")
    result = cli(*args, "--set", "training.max_steps=1")
    assert result.code == 0, result.err
    assert "logging: tensorboard (report_to is auto: wandb is not installed)" in result.err
    assert list((tmp_path / "outputs/smoke-cpu/tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        # Unsloth maps the name to its own copy (4-bit, or 16-bit) and drops the revision
        (["model.fast_inference=false"], True),
        (["model.fast_inference=false", "model.quantization=none"], True),
        # Nothing remapped, or no Unsloth: the revision is loaded
        (["model.fast_inference=false", "model.name=someone/own-model"], False),
        (["model.fast_inference=false", "model.backend=trl"], False),
    ],
)
def test_a_revision_unsloth_would_drop_for_its_own_copy_is_refused(overrides, refused):
    require("unsloth", "its mapper says which names it replaces")
    settings = ["model.revision=v1", "model.backend=unsloth", *overrides]
    problems = problems_for("qwen3b_gsm8k.yaml", L4, overrides=settings)
    if refused:
        message = problems["model.revision"]
        assert "Unsloth loads its own copy unsloth/Qwen2.5-3B-Instruct" in message
        assert "--revision v1 --local-dir DIR" in message
    else:
        assert "model.revision" not in problems


def test_unsloth_repo_follows_unsloths_mapper_both_ways():
    require("unsloth", "the mapper is read from the installed unsloth")
    from grpo_cli.unsloth_names import unsloth_repo

    four = "unsloth/Qwen2.5-3B-Instruct-unsloth-bnb-4bit"
    assert unsloth_repo("Qwen/Qwen2.5-3B-Instruct", "4bit") == four
    assert unsloth_repo(four, "none") == "unsloth/Qwen2.5-3B-Instruct"  # back to 16-bit
    assert unsloth_repo(four, "4bit") is None  # an explicit -bnb-4bit name is kept
    assert unsloth_repo("someone/own-model", "4bit") is None
