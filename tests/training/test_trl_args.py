"""What grpo asks of TRL's GRPOConfig, and what it does when a backend's config or trainer quietly
changes it: the same config trains the same algorithm on the trl and the unsloth backend."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest

from grpo_cli.config import load_config
from grpo_cli.training.trl_args import (
    build_grpo_config,
    grpo_config_kwargs,
    rewrite_problems,
    rewritten_settings,
)
from tests.conftest import CONFIGS


def kwargs_for(*overrides: str) -> dict:
    cfg = load_config(
        CONFIGS / "smoke_cpu.yaml", ["model.name=Qwen/Qwen2.5-0.5B-Instruct", *overrides]
    ).config
    return grpo_config_kwargs(cfg, "out", "fp32", "cpu", [1.0] * len(cfg.rewards))


def unsloth_grpo_config(**kwargs):
    """What Unsloth's generated UnslothGRPOConfig.__init__ does to an explicit loss_type dapo
    before TRL sees the arguments (unsloth/models/rl.py, the `check_dr_grpo` block): it fills
    what was left unset with the DAPO paper's values."""
    from trl import GRPOConfig

    if kwargs.get("loss_type") == "dapo":
        if kwargs.get("mask_truncated_completions") is None:
            kwargs["mask_truncated_completions"] = True
        if kwargs.get("epsilon_high") is None:
            kwargs["epsilon_high"] = 0.28
    return GRPOConfig(**kwargs)


def test_dapo_sets_clipping_and_masking_explicitly_so_unsloth_cannot_fill_them_in():
    asked = kwargs_for("training.loss_type=dapo")
    assert (asked["epsilon"], asked["epsilon_high"]) == (0.2, 0.2)  # symmetric, as TRL does
    assert asked["mask_truncated_completions"] is False
    built = unsloth_grpo_config(**asked)
    assert (built.epsilon_high, built.mask_truncated_completions) == (0.2, False)
    assert rewritten_settings(asked, built) == {}


def test_the_dapo_paper_settings_are_two_keys_away_and_reach_trl():
    asked = kwargs_for(
        "training.loss_type=dapo",
        "training.epsilon_high=0.28",
        "training.mask_truncated_completions=true",
    )
    built = build_grpo_config(asked)
    assert (built.epsilon_high, built.mask_truncated_completions) == (0.28, True)


def test_the_installed_unsloth_still_fills_in_dapo_settings_left_unset():
    """Pins the library behaviour the fake above copies and the explicit keys defend against."""
    from tests.optional import require

    require("unsloth", "the unsloth backend (scripts/test.sh installs it with --no-deps)")
    spec = importlib.util.find_spec("unsloth")  # its source, without its import-time patches
    assert spec is not None and spec.origin is not None
    source = (Path(spec.origin).parent / "models" / "rl.py").read_text(encoding="utf-8")
    block = source[source.index("elif loss_type.lower() == 'dapo' and not") :][:600]
    assert "mask_truncated_completions = True" in block and "epsilon_high = 0.28" in block
    assert "if epsilon_high is None:" in block  # an explicit value is kept


def test_cispo_caps_the_importance_weight_at_5_unless_set():
    assert kwargs_for("training.loss_type=cispo")["epsilon_high"] == 5.0
    assert kwargs_for("training.loss_type=cispo", "training.epsilon_high=4")["epsilon_high"] == 4


def test_dr_grpo_does_not_scale_rewards_on_either_backend_unless_asked():
    assert kwargs_for("training.loss_type=dr_grpo")["scale_rewards"] == "none"
    assert "scale_rewards" not in kwargs_for("training.loss_type=grpo")  # TRL's group scaling
    asked = kwargs_for("training.loss_type=dr_grpo", "training.trl={scale_rewards: batch}")
    assert asked["scale_rewards"] == "batch"


@pytest.mark.parametrize("loss", ["grpo", "dapo", "dr_grpo", "cispo", "bnpo"])
def test_trl_keeps_every_setting_grpo_passes(loss):
    """No false alarm: TRL's own GRPOConfig changes none of them (it stores scale_rewards
    True as "group", which is the same setting)."""
    asked = kwargs_for(f"training.loss_type={loss}", "training.trl={scale_rewards: true}")
    assert rewritten_settings(asked, build_grpo_config(asked)) == {}


def test_a_config_class_that_changes_a_setting_in_its_construction_is_refused():
    from trl import GRPOConfig

    @dataclasses.dataclass
    class Rewriting(GRPOConfig):
        def __post_init__(self):
            super().__post_init__()
            self.epsilon_high = 0.28  # as a patched config might, whatever it was given

    asked = kwargs_for()
    changes = rewritten_settings(asked, Rewriting(**asked))
    assert changes == {"epsilon_high": (0.2, 0.28)}
    refusals, notes = rewrite_problems("unsloth", changes, set(asked))
    assert refusals == [
        (
            "training.epsilon_high",
            "unsloth would train with epsilon_high 0.28, not the 0.2 set here",
        )
    ]
    assert notes == []


def test_precision_and_generation_plumbing_rewrites_are_notes():
    changes = {
        "fp16": (True, False),  # a model Unsloth trains in float32
        "top_k": (0, -1),  # both mean no top-k
        "bf16_full_eval": (False, True),  # not a setting grpo passes
        "scale_rewards": ("group", "none"),
    }
    refusals, notes = rewrite_problems("unsloth", changes, {"fp16", "top_k", "scale_rewards"})
    assert refusals == [
        (
            "training.trl.scale_rewards",
            "unsloth would train with scale_rewards 'none', not the 'group' set here",
        )
    ]
    assert notes == [
        "note: unsloth changed fp16: True -> False",
        "note: unsloth changed top_k: 0 -> -1",
        "note: unsloth changed bf16_full_eval: False -> True",
    ]


def test_the_same_adamw_in_a_fused_kernel_is_the_same_setting():
    """Unsloth's CPU fallback swaps adamw_torch for adamw_torch_fused (unsloth_zoo/cpu/
    trainer.py); a swap to another optimizer is still refused."""
    from transformers.training_args import OptimizerNames

    asked = {"optim": "adamw_torch"}
    fused = type("Args", (), {"optim": OptimizerNames.ADAMW_TORCH_FUSED})()
    assert rewritten_settings(asked, fused) == {}
    sgd = type("Args", (), {"optim": OptimizerNames.SGD})()
    assert rewritten_settings(asked, sgd) == {"optim": ("adamw_torch", OptimizerNames.SGD)}
