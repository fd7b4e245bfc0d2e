"""Example reward plugin: every .py file in this folder is loaded by grpo, and `@reward` makes
the function available to configs by name (`rewards: [{name: reasoning_steps, weight: 0.5}]`).

The contract, checked when a config is validated:
- accept `completions` (strings, or chat messages: use `completion_text`) and `**kwargs`;
- return one float per completion (None: not applicable to that row);
- dataset columns arrive as keyword lists (`answer`, `question`), with the config's prompt format
  (`answer_tag`, `reasoning_tag`, `max_completion_length`);
- arguments with a default value are the parameters a config sets under `params:`; raise
  ValueError for a value you refuse, and `grpo config validate` reports it.
"""

from __future__ import annotations

from typing import Any

from grpo_cli.rewards import completion_text, reward


@reward("reasoning_steps", weight=0.0)  # default weight 0: logged, not trained on, until chosen
def reasoning_steps(
    completions: list[Any],
    *,
    per_step: float = 0.05,
    max_steps: int = 4,
    reasoning_tag: str | None = "reasoning",
    **kwargs: Any,
) -> list[float]:
    """0.05 per calculation line (one holding '=') in the reasoning, counting up to 4 lines."""
    if max_steps < 0:
        raise ValueError(f"max_steps must be 0 or more, found {max_steps}")
    scores = []
    for completion in completions:
        text = completion_text(completion)
        if reasoning_tag is not None:
            start, end = text.find(f"<{reasoning_tag}>"), text.find(f"</{reasoning_tag}>")
            text = text[start:end] if 0 <= start < end else ""
        steps = sum(1 for line in text.splitlines() if "=" in line)
        scores.append(per_step * min(steps, max_steps))
    return scores
