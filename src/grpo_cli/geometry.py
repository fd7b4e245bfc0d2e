"""Batch geometry: the one place where prompts x generations per step become TRL's batch fields.

Users think in prompts per optimizer step and completions per prompt. TRL 1.x thinks in
completions: `per_device_train_batch_size` counts completions per device per micro-step,
`gradient_accumulation_steps` micro-steps make one optimizer step, and one generation round
produces `generation_batch_size` completions (`num_generations` per prompt) that are consumed over
`steps_per_generation` micro-steps. So, over `world_size` processes:

    completions per step   = prompts_per_step x num_generations
    per_device_batch       = completions per step / (gradient_accumulation_steps x world_size)
    generation_batch_size  = prompts_per_step x num_generations unless set
    steps_per_generation   = generation_batch_size / (per_device_batch x world_size)

Every division must be exact, and a generation round must hold whole groups of num_generations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol


class BatchSettings(Protocol):
    prompts_per_step: int
    num_generations: int
    gradient_accumulation_steps: int
    generation_batch_size: int | None


@dataclass(frozen=True)
class BatchGeometry:
    prompts_per_step: int
    num_generations: int
    gradient_accumulation_steps: int
    world_size: int
    per_device_train_batch_size: int
    generation_batch_size: int
    steps_per_generation: int

    @property
    def completions_per_step(self) -> int:
        return self.prompts_per_step * self.num_generations

    def trl_args(self) -> dict[str, int]:
        """The GRPOConfig fields this geometry sets (TRL accepts generation_batch_size or
        steps_per_generation, not both)."""
        return {
            "per_device_train_batch_size": self.per_device_train_batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "num_generations": self.num_generations,
            "generation_batch_size": self.generation_batch_size,
        }


def geometry_problems(t: BatchSettings, world_size: int = 1) -> list[tuple[str, str]]:
    """What is wrong with a batch geometry, as (key, message) pairs naming the fix."""
    problems: list[tuple[str, str]] = []
    g = t.num_generations
    gbs = t.generation_batch_size
    if gbs is not None and gbs % g:
        problems.append(
            (
                "training.generation_batch_size",
                f"generation_batch_size {gbs} is not a multiple of num_generations {g}: each "
                f"prompt's {g} completions are generated in the same round. Nearest valid "
                f"settings: {_either('generation_batch_size', nearest_multiples(gbs, g))}, or "
                f"{_either('num_generations', divisors_near(gbs, g))}",
            )
        )
        return problems
    completions = t.prompts_per_step * g
    micro = t.gradient_accumulation_steps * world_size
    if completions % micro:
        devices = f" x {world_size} processes" if world_size > 1 else ""
        problems.append(
            (
                "training.gradient_accumulation_steps",
                f"prompts_per_step {t.prompts_per_step} x num_generations {g} = {completions} "
                f"completions per step do not split into gradient_accumulation_steps "
                f"{t.gradient_accumulation_steps}{devices} equal micro-batches. Nearest valid "
                f"settings: {_either('gradient_accumulation_steps', _accumulations(completions, world_size, t.gradient_accumulation_steps))}"  # noqa: E501
                f", or {_either('prompts_per_step', _prompt_counts(g, micro, t.prompts_per_step))}",
            )
        )
        return problems
    per_device = completions // micro
    if gbs is not None and gbs % (per_device * world_size):
        step = per_device * world_size
        problems.append(
            (
                "training.generation_batch_size",
                f"generation_batch_size {gbs} is not a whole number of micro-batches of "
                f"{step} completions (prompts_per_step x num_generations / "
                f"gradient_accumulation_steps). Nearest valid settings: "
                f"{_either('generation_batch_size', nearest_multiples(gbs, math.lcm(step, g)))}",
            )
        )
    return problems


def batch_geometry(t: BatchSettings, world_size: int = 1) -> BatchGeometry:
    """The TRL batch fields for a valid geometry; raises ValueError naming the fix otherwise."""
    problems = geometry_problems(t, world_size)
    if problems:
        raise ValueError("; ".join(message for _, message in problems))
    completions = t.prompts_per_step * t.num_generations
    per_device = completions // (t.gradient_accumulation_steps * world_size)
    gbs = t.generation_batch_size or completions
    return BatchGeometry(
        prompts_per_step=t.prompts_per_step,
        num_generations=t.num_generations,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        world_size=world_size,
        per_device_train_batch_size=per_device,
        generation_batch_size=gbs,
        steps_per_generation=gbs // (per_device * world_size),
    )


def nearest_multiples(n: int, k: int) -> list[int]:
    """The multiples of k just below and above n (positive only), nearest first."""
    below, above = (n // k) * k, (n // k + 1) * k
    return sorted((m for m in {below, above} if m > 0), key=lambda m: (abs(m - n), m))


def divisors_near(n: int, target: int, minimum: int = 2, count: int = 3) -> list[int]:
    """Divisors of n that are at least `minimum`, nearest to `target` first."""
    found = [d for d in range(minimum, n + 1) if n % d == 0]
    return sorted(found, key=lambda d: (abs(d - target), -d))[:count]


def _accumulations(completions: int, world_size: int, target: int) -> list[int]:
    found = [a for a in range(1, completions + 1) if completions % (a * world_size) == 0]
    return sorted(found, key=lambda a: (abs(a - target), a))[:3]


def _prompt_counts(g: int, micro: int, target: int) -> list[int]:
    step = micro // math.gcd(g, micro)
    return nearest_multiples(target, step) or [step]


def _either(key: str, values: list[int]) -> str:
    if not values:
        return f"another {key}"
    first, rest = values[0], values[1:]
    return f"{key}: {first}" + (f" (or {', '.join(map(str, rest))})" if rest else "")
