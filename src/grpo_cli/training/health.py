"""Training health: rules over the metrics a run logs that name, while it trains, the usual ways
a GRPO run learns nothing (no reward spread, rewards that never pay, truncation, blow-ups, a
learning rate that undoes what was learnt), each with its likely cause and the fix."""

from __future__ import annotations

import itertools
import math
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from grpo_cli.files import append_jsonl, read_jsonl

HEALTH_FILE = "health.jsonl"

# The metric names are TRL's (trl/trainer/grpo_trainer.py, 1.15: "frac_reward_zero_std",
# "completions/clipped_ratio", "kl" only when beta > 0, "rewards/<name>/mean") and the accuracy
# probe's ("accuracy", training/callbacks.py), as RunRecorder writes them into metrics.jsonl.

# Conditions are judged over this many consecutive logged steps: one step's figures come from a
# handful of groups (2-8 prompts), so a single bad step is noise; ten is still early enough in a
# run of a few hundred steps for the user to stop it and fix the cause.
WINDOW = 10
# TRL's frac_reward_zero_std: the share of groups whose rewards were all equal, which give no
# advantage and hence no gradient. Above this share most of every batch is wasted.
ZERO_SPREAD = 0.8
# completions/clipped_ratio: the share of completions cut at max_completion_length. A cut
# completion never writes its closing answer tag, so above half the format rewards starve.
TRUNCATED = 0.5
# A loss or KL this many times its median over the steps before is a blow-up, not noise...
EXPLODE_FACTOR = 10.0
# ...and at least this large: GRPO's loss averages advantages normalised to mean 0, so it stays
# small (|loss| <= 0.21 over 40 smoke steps, lr 1e-2 and 0.3 alike), and ten times a median of
# ~0 (beta 0, early steps) would flag every wiggle.
EXPLODE_FLOOR = 1.0
# Consecutive spiking logs that count as exploding; a non-finite value counts at once.
EXPLODE_WINDOW = 3
# Reward collapse: the window mean of the total reward rose clearly above the first window,
# then fell back, losing at least this share of the gain.
COLLAPSE_LOSS = 0.75
# "Clearly": the rise exceeds this many standard errors of a window mean, the step-to-step noise
# read from successive differences (which a slow trend barely moves). The best of many sliding
# windows is a maximum of noisy means: on 300 steps of pure noise 3 flagged 43% of runs, 4 12%,
# 5 1.3%, while 5 still caught 83% of rises of 1.5 noise SDs that fell back (simulated).
RISE_NOISE = 5.0
# ...and is at least this many reward units: a constant reward with one blip has ~0 noise.
MIN_RISE = 0.05


@dataclass(frozen=True)
class HealthWarning:
    code: str
    step: int
    message: str
    fix: str

    def line(self) -> str:
        return f"warning (step {self.step}): {self.message}; fix: {self.fix}"


def new_warnings(history: Sequence[dict[str, Any]], raised: set[str]) -> list[HealthWarning]:
    """The warnings whose condition holds at the end of HISTORY (metrics.jsonl records, oldest
    first) and whose code is not in RAISED yet: each condition is reported once per run."""
    found = []
    for code, rule in RULES.items():
        warning = None if code in raised else rule(history)
        if warning is not None:
            found.append(warning)
    return found


def _window(history: Sequence[dict[str, Any]], key: str, size: int = WINDOW) -> list[float] | None:
    """The last SIZE values of KEY, or None unless each of the last SIZE records has it."""
    if len(history) < size:
        return None
    values = [r.get(key) for r in history[-size:]]
    numbers = [float(v) for v in values if isinstance(v, (int, float))]
    return numbers if len(numbers) == size else None


def _span(history: Sequence[dict[str, Any]], size: int = WINDOW) -> str:
    return f"steps {history[-size]['step']}-{history[-1]['step']}"


def zero_spread(history: Sequence[dict[str, Any]]) -> HealthWarning | None:
    values = _window(history, "frac_reward_zero_std")
    # the mean, not every step: with 2-4 prompts a step's share jumps between 0, 1/2 and 1
    if values is None or statistics.fmean(values) <= ZERO_SPREAD:
        return None
    share = statistics.fmean(values)
    return HealthWarning(
        "zero_spread",
        history[-1]["step"],
        f"{share:.0%} of groups had all rewards equal over {_span(history)}, "
        "so they gave no learning signal",
        "raise training.prompts_per_step or training.num_generations, warm the model up with "
        "`grpo sft`, or use easier data",
    )


def no_correct_answer(history: Sequence[dict[str, Any]]) -> HealthWarning | None:
    # The accuracy probe logs `accuracy` when the first reward is wrapped; the correctness
    # reward's own mean stands in where it is not.
    for key in ("accuracy", "rewards/correctness/mean"):
        values = _window(history, key)
        if values is not None:
            break
    if values is None or max(values) > 0:
        return None
    return HealthWarning(
        "no_correct_answer",
        history[-1]["step"],
        f"no completion was graded correct over {_span(history)}",
        "the prompt template or data.answer_tag may not match what the correctness reward "
        "reads: check with `grpo train CONFIG --dry-run` and `grpo score`; a model this weak "
        "needs a warm-up with `grpo sft` or easier data",
    )


def no_format_reward(history: Sequence[dict[str, Any]]) -> HealthWarning | None:
    last = history[-1] if history else {}
    names = sorted(
        k.split("/")[1]
        for k in last
        if k.startswith("rewards/") and k.endswith("/mean") and "format" in k
    )
    starved = []
    for name in names:
        values = _window(history, f"rewards/{name}/mean")
        if values is not None and max(values) <= 0:
            starved.append(name)
    # A strict format reward stays at 0 long after a soft one pays, in a healthy run: only all
    # of them paying nothing says the template does not ask for the format.
    if not starved or len(starved) < len(names):
        return None
    return HealthWarning(
        "no_format_reward",
        history[-1]["step"],
        f"format reward {', '.join(starved)} paid nothing over {_span(history)}",
        "the prompt template may not ask for the format the reward checks (data.prompt_style, "
        "data.answer_tag): check with `grpo train CONFIG --dry-run` and `grpo score`; if it "
        "does, the model is too weak to follow it yet: warm it up with `grpo sft`",
    )


def truncated(history: Sequence[dict[str, Any]]) -> HealthWarning | None:
    values = _window(history, "completions/clipped_ratio")
    if values is None or statistics.fmean(values) <= TRUNCATED:
        return None
    return HealthWarning(
        "truncated",
        history[-1]["step"],
        f"{statistics.fmean(values):.0%} of completions were cut at "
        f"training.max_completion_length over {_span(history)}",
        "raise training.max_completion_length, or ask for a shorter format",
    )


def exploding(history: Sequence[dict[str, Any]]) -> HealthWarning | None:
    for key in ("kl", "loss"):
        # metrics.jsonl writes a non-finite value as null (RunRecorder's _plain)
        if history and key in history[-1]:
            value = history[-1][key]
            if value is None or isinstance(value, float) and not math.isfinite(value):
                return _exploded(history, key, "became non-finite")
        recent = _window(history, key, EXPLODE_WINDOW)
        before = [
            abs(float(r[key]))
            for r in history[:-EXPLODE_WINDOW]
            if isinstance(r.get(key), (int, float))
        ]
        if recent is None or len(before) < WINDOW:
            continue
        limit = max(EXPLODE_FACTOR * statistics.median(before), EXPLODE_FLOOR)
        if min(abs(v) for v in recent) > limit:
            return _exploded(history, key, f"stayed above {limit:.3g} for {_span(history, 3)}")
    return None


def _exploded(history: Sequence[dict[str, Any]], key: str, how: str) -> HealthWarning:
    return HealthWarning(
        "exploding",
        history[-1]["step"],
        f"{key} {how}",
        "lower training.learning_rate, or raise training.beta to hold the model near its start",
    )


def reward_collapse(history: Sequence[dict[str, Any]]) -> HealthWarning | None:
    # three windows at least: one to start from, one to rise to, one to fall to
    rewards = _window(history, "reward", len(history)) if len(history) >= 3 * WINDOW else None
    if rewards is None:
        return None
    sums = list(itertools.accumulate(rewards, initial=0.0))  # every window's mean in one pass
    means = [(sums[i + WINDOW] - sums[i]) / WINDOW for i in range(len(rewards) - WINDOW + 1)]
    first, best, now = means[0], max(means), means[-1]
    rise = best - first
    noise = statistics.stdev(b - a for a, b in itertools.pairwise(rewards)) / math.sqrt(2)
    clear = max(MIN_RISE, RISE_NOISE * noise / math.sqrt(WINDOW))
    if rise < clear or now > best - COLLAPSE_LOSS * rise:
        return None
    return HealthWarning(
        "reward_collapse",
        history[-1]["step"],
        f"the reward rose from {first:.3f} to {best:.3f}, then fell to {now:.3f} "
        f"(means over {WINDOW} steps)",
        "the learning rate is likely too high: lower training.learning_rate (a third of it is "
        "a good next try) and resume from a checkpoint before the fall",
    )


# each rule's warning carries its key as its code
RULES: dict[str, Callable[[Sequence[dict[str, Any]]], HealthWarning | None]] = {
    "zero_spread": zero_spread,
    "no_correct_answer": no_correct_answer,
    "no_format_reward": no_format_reward,
    "truncated": truncated,
    "exploding": exploding,
    "reward_collapse": reward_collapse,
}


def read(run_path: Path) -> list[HealthWarning]:
    """The warnings a run has raised so far, from its health.jsonl."""
    fields = HealthWarning.__dataclass_fields__
    return [
        HealthWarning(**{k: v for k, v in record.items() if k in fields})
        for record in read_jsonl(run_path / HEALTH_FILE)
        if set(fields) <= set(record)
    ]


class HealthWatch:
    """Checks the history after each log; a new warning goes to stderr and to health.jsonl.
    A resumed run remembers what it already said."""

    def __init__(self, run_path: Path):
        self.path = run_path / HEALTH_FILE
        self.raised = {w.code for w in read(run_path)}

    def observe(self, history: Sequence[dict[str, Any]]) -> list[HealthWarning]:
        warnings = new_warnings(history, self.raised)
        for warning in warnings:
            self.raised.add(warning.code)
            print(warning.line(), file=sys.stderr)
        if warnings:
            append_jsonl(self.path, [asdict(w) for w in warnings])
        return warnings
