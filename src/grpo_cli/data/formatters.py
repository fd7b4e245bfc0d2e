"""Dataset formatters: one function per dataset turns a raw row into a chat prompt and a gold
number. `@formatter("name", columns=(...))` registers one; `data.formatter` in a config names it.

A formatter returns `{"prompt": messages, "answer": gold}` for a row, or None when the row's gold
answer cannot be read (the row is dropped and counted). The row's other columns are kept. It may
add `"reasoning"`: the row's worked solution, without its final answer, which `grpo sft` trains
on (written in the config's prompt style); `grpo train` never passes it to the rewards.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from grpo_cli.answers import gold_answer, last_boxed, normalize
from grpo_cli.data.prompts import PromptFormat
from grpo_cli.errors import GrpoError

# A boxed answer that is a number and nothing else: digits, sign, decimal point, thousands commas,
# \frac{a}{b}, and decoration (\$, \%, \!, spaces). `\frac{\pi}{2}` or `x^2` is not a number.
_NUMERIC_LATEX = re.compile(
    r"\s*(?:\\\$|\$)?\s*-?\s*(?:\\[dt]?frac\{\s*-?[\d.,]+\s*\}\{\s*[\d.,]+\s*\}|[\d.,]+(?:\s*/\s*[\d.,]+)?)"
    r"\s*(?:\\%|%|\\!)?\s*"
)

_CALCULATOR = re.compile(r"<<[^>]*>>")  # GSM8K's calculator annotations: 16-3-4=<<16-3-4=9>>9

FormatFn = Callable[[dict[str, Any], PromptFormat], dict[str, Any] | None]


@dataclass(frozen=True)
class Formatter:
    name: str
    fn: FormatFn
    columns: tuple[str, ...]  # the columns a dataset must have
    description: str


_FORMATTERS: dict[str, Formatter] = {}


def formatter(name: str, columns: tuple[str, ...]) -> Callable[[FormatFn], FormatFn]:
    """Register a dataset formatter that reads `columns` from each row."""

    def register(fn: FormatFn) -> FormatFn:
        doc = (fn.__doc__ or "").strip()
        _FORMATTERS[name] = Formatter(
            name, fn, tuple(columns), " ".join(doc.split("\n\n")[0].split())
        )
        return fn

    return register


def registered() -> dict[str, Formatter]:
    return dict(sorted(_FORMATTERS.items()))


def get_formatter(name: str) -> Formatter:
    if name in _FORMATTERS:
        return _FORMATTERS[name]
    close = difflib.get_close_matches(name, _FORMATTERS, n=1, cutoff=0.6)
    suggestion = f"did you mean {close[0]!r}? " if close else ""
    raise GrpoError(
        f"unknown data formatter {name!r}: {suggestion}registered formatters are "
        f"{', '.join(sorted(_FORMATTERS))}",
        'a plugin in rewards/ can register one with @formatter("name", columns=(...))',
    )


def snapshot() -> dict[str, Formatter]:
    return dict(_FORMATTERS)


def restore(saved: dict[str, Formatter]) -> None:
    _FORMATTERS.clear()
    _FORMATTERS.update(saved)


@formatter("gsm8k", columns=("question", "answer"))
def gsm8k(row: dict[str, Any], prompt: PromptFormat) -> dict[str, Any] | None:
    """GSM8K rows {question, answer: "...#### N"}: the question as the user turn, N as gold."""
    gold = gold_answer(row["answer"])
    if gold is None:
        return None
    reasoning = split_gsm8k_solution(str(row["answer"]))[0]
    return {
        "prompt": prompt.messages(str(row["question"]).strip()),
        "answer": gold,
        "reasoning": reasoning,
    }


def split_gsm8k_solution(text: str) -> tuple[str, str]:
    """A GSM8K solution as (reasoning without calculator marks, final answer as written)."""
    reasoning, _, final = text.rpartition("####")
    return _CALCULATOR.sub("", reasoning).strip(), final.strip()


@formatter("math_boxed", columns=("problem", "solution"))
def math_boxed(row: dict[str, Any], prompt: PromptFormat) -> dict[str, Any] | None:
    """MATH-style rows {problem, solution with \\boxed{...}}: rows whose boxed answer is a number
    (integers, decimals, fractions) are kept, the others dropped."""
    solution = row["solution"]
    # the whole solution, its \boxed{} included: the answer tag repeats the number after it
    reasoning = solution.strip() if isinstance(solution, str) else None
    if isinstance(solution, str):
        boxed = last_boxed(solution)
        if boxed is None or not _NUMERIC_LATEX.fullmatch(boxed):
            return None
        solution = boxed
    gold = normalize(solution)  # also a JSON number: `"solution": 42`
    if gold is None:
        return None
    return {
        "prompt": prompt.messages(str(row["problem"]).strip()),
        "answer": gold,
        "reasoning": reasoning,
    }
