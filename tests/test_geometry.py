"""Batch geometry: prompts x generations per step mapped to TRL's fields, and the suggested fixes
for an invalid geometry are themselves valid."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grpo_cli.geometry import batch_geometry, divisors_near, geometry_problems, nearest_multiples


@dataclass(frozen=True)
class Settings:
    prompts_per_step: int = 1
    num_generations: int = 8
    gradient_accumulation_steps: int = 1
    generation_batch_size: int | None = None


def test_seed_recipe_geometry():
    geometry = batch_geometry(Settings())
    assert geometry.trl_args() == {
        "per_device_train_batch_size": 8,
        "gradient_accumulation_steps": 1,
        "num_generations": 8,
        "generation_batch_size": 8,
    }
    assert geometry.steps_per_generation == 1


def test_accumulation_and_processes_divide_the_step():
    geometry = batch_geometry(Settings(prompts_per_step=4, gradient_accumulation_steps=4), 2)
    assert geometry.completions_per_step == 32
    assert geometry.per_device_train_batch_size == 4  # 32 completions / (4 micro-steps x 2 GPUs)
    assert geometry.generation_batch_size == 32
    assert geometry.steps_per_generation == 4


def test_larger_generation_round_spans_several_steps():
    geometry = batch_geometry(Settings(prompts_per_step=1, generation_batch_size=32))
    assert geometry.per_device_train_batch_size == 8
    assert geometry.steps_per_generation == 4


def test_world_size_is_part_of_the_check():
    settings = Settings(prompts_per_step=1, num_generations=6)
    assert geometry_problems(settings, world_size=1) == []
    ((key, message),) = geometry_problems(settings, world_size=4)
    assert key == "training.gradient_accumulation_steps"
    assert "x 4 processes" in message
    with pytest.raises(ValueError, match="do not split"):
        batch_geometry(settings, world_size=4)


@pytest.mark.parametrize(
    ("n", "k", "expected"), [(6, 8, [8]), (10, 4, [8, 12]), (14, 4, [12, 16]), (9, 3, [9, 12])]
)
def test_nearest_multiples(n, k, expected):
    assert nearest_multiples(n, k) == expected


def test_divisors_near():
    assert divisors_near(6, 8) == [6, 3, 2]
    assert divisors_near(12, 5) == [6, 4, 3]  # ties go to the larger group


settings_strategy = st.builds(
    Settings,
    prompts_per_step=st.integers(1, 16),
    num_generations=st.integers(2, 16),
    gradient_accumulation_steps=st.integers(1, 16),
    generation_batch_size=st.none() | st.integers(1, 256),
)


@given(settings_strategy, st.integers(1, 8))
def test_valid_geometry_satisfies_trl_invariants(settings, world):
    if geometry_problems(settings, world):
        return
    g = batch_geometry(settings, world)
    per_step = g.per_device_train_batch_size * world * g.gradient_accumulation_steps
    assert per_step == settings.prompts_per_step * settings.num_generations
    assert g.generation_batch_size % g.num_generations == 0
    assert g.generation_batch_size % (g.per_device_train_batch_size * world) == 0
    assert g.steps_per_generation * g.per_device_train_batch_size * world == g.generation_batch_size


def _suggestions(message: str, key: str) -> list[int]:
    match = re.search(rf"{key}: (\d+)(?: \(or ([\d, ]+)\))?", message)
    if not match:
        return []
    rest = [int(v) for v in match.group(2).split(",")] if match.group(2) else []
    return [int(match.group(1)), *rest]


def _whole_groups(s: Settings) -> bool:
    return s.generation_batch_size is None or s.generation_batch_size % s.num_generations == 0


def _splits(s: Settings) -> bool:
    return (s.prompts_per_step * s.num_generations) % s.gradient_accumulation_steps == 0


def _whole_micro_batches(s: Settings) -> bool:
    micro = s.prompts_per_step * s.num_generations // s.gradient_accumulation_steps
    return s.generation_batch_size is None or s.generation_batch_size % micro == 0


@given(settings_strategy)
def test_every_suggested_fix_repairs_what_was_wrong(settings):
    problems = geometry_problems(settings)
    if not problems:
        return
    _, message = problems[0]
    if "is not a multiple of num_generations" in message:
        invariant, keys = _whole_groups, ("generation_batch_size", "num_generations")
    elif "do not split" in message:
        invariant, keys = _splits, ("gradient_accumulation_steps", "prompts_per_step")
    else:
        invariant, keys = _whole_micro_batches, ("generation_batch_size",)
    assert not invariant(settings)
    offered = 0
    for key in keys:
        for value in _suggestions(message.split("Nearest valid settings")[1], key):
            offered += 1
            fixed = replace(settings, **{key: value})
            assert invariant(fixed) and _whole_groups(fixed), (settings, key, value, message)
    assert offered, message


def test_trl_accepts_the_mapped_arguments():
    # The real check: TRL's own GRPOConfig validation agrees with ours.
    from trl import GRPOConfig

    for settings in (
        Settings(),
        Settings(prompts_per_step=2, num_generations=4, gradient_accumulation_steps=2),
        Settings(prompts_per_step=1, num_generations=4, generation_batch_size=16),
    ):
        args = batch_geometry(settings).trl_args()
        config = GRPOConfig(output_dir="unused", use_cpu=True, bf16=False, report_to="none", **args)
        assert config.generation_batch_size == args["generation_batch_size"]
    with pytest.raises(ValueError, match="divisible by num_generations"):
        GRPOConfig(
            output_dir="unused",
            use_cpu=True,
            bf16=False,
            report_to="none",
            per_device_train_batch_size=6,
            num_generations=8,
        )
    assert geometry_problems(Settings(num_generations=8, generation_batch_size=6))
