"""Whether a completion is correct: the one grading rule of `grpo eval`, `grpo score` and the
accuracy logged during training, so the three never disagree about the same completion.

Answers are compared as numbers (`$18`, `18.00` and `18` are equal) by `grpo_cli.answers`; the
strict rule reads the answer tag (what the correctness reward pays for), the flexible one accepts
an answer stated anywhere; `formatted` is the soft-format reward's layout test.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from grpo_cli.answers import extract_flexible, format_number, read_number
from grpo_cli.rewards.builtin import follows_format, gold_value, strict_value, strictly_correct


@dataclass(frozen=True)
class Grade:
    extracted: str | None  # the number in the answer tag, canonical ("1080"), or None
    extracted_flexible: str | None  # the final answer wherever it is stated, or None
    correct: bool  # strict: the answer tag states the gold number
    correct_flexible: bool
    formatted: bool  # reasoning block, then answer block
    gold_readable: bool  # a gold answer that is not a number makes every completion wrong


def grade(
    text: str, gold: object, answer_tag: str = "answer", reasoning_tag: str | None = "reasoning"
) -> Grade:
    """One completion's text against its gold answer (`"... #### 1,080"` or a number)."""
    target = gold_value(str(gold))
    strict = strict_value(text, answer_tag)
    flexible = extract_flexible(text, answer_tag)
    return Grade(
        extracted=_canonical(strict),
        extracted_flexible=flexible,
        correct=strictly_correct(text, gold, answer_tag),
        correct_flexible=target is not None
        and flexible is not None
        and read_number(flexible) == target,
        formatted=follows_format(text, reasoning_tag, answer_tag),
        gold_readable=target is not None,
    )


def _canonical(value: Fraction | None) -> str | None:
    return None if value is None else format_number(value)
