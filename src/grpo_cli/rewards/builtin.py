"""The built-in rewards: the seed GSM8K recipe's five, `think_format`, `length_penalty` and
`arithmetic`.

They keep the seed notebook's values (correctness 2.0, integer 0.5, formats 0.5, 0.125 per tag)
but fix what made it mis-grade: answers are compared as numbers through `grpo_cli.answers`, so
`$18`, `18.00` and `1,080` are right, and the format patterns span several lines (the seed's
patterns lacked re.DOTALL, so multi-line reasoning never matched).
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections import Counter
from fractions import Fraction
from functools import lru_cache
from typing import Any

from grpo_cli.answers import extract_flexible, gold_answer, read_number, tagged
from grpo_cli.rewards.registry import reward

# The seed recipe's reward set, in its order; `grpo score` uses it when no config is given.
DEFAULT_REWARDS = ("xml_count", "soft_format", "strict_format", "integer_answer", "correctness")


def completion_problem(completion: Any) -> str | None:
    """What keeps `completion` from being a completion, or None: a completion is text, or chat
    messages ({role, content}) whose content is text, null, or a list of {"type": "text", "text":
    ...} parts."""
    if isinstance(completion, str):
        return None
    if not isinstance(completion, list):
        return f"completion must be text or a list of chat messages, found {_kind(completion)}"
    for index, message in enumerate(completion):
        if not isinstance(message, dict) or "content" not in message:
            return (
                f"completion[{index}] must be a chat message {{role, content}}, found "
                f"{_kind(message)}"
            )
        content = message["content"]
        if content is None or isinstance(content, str):
            continue
        if not isinstance(content, list):
            return f"completion[{index}].content must be text, found {_kind(content)}"
        for part_index, part in enumerate(content):
            if not (isinstance(part, dict) and isinstance(part.get("text", ""), str)):
                return (
                    f"completion[{index}].content[{part_index}] must be a text part "
                    f'{{"type": "text", "text": "..."}}, found {_kind(part)}'
                )
    return None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, dict):
        return "an object"
    return "a list" if isinstance(value, list) else type(value).__name__


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or the assistant messages of a chat completion
    (`completion_problem` says whether a completion from a file is one)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    parts = []
    for message in completion:
        if message.get("role", "assistant") != "assistant":
            continue
        content = message.get("content") or ""
        if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        parts.append(content)
    return "".join(parts)


@lru_cache(maxsize=16384)
def strict_value(text: str, answer_tag: str = "answer") -> Fraction | None:
    """The number in the answer tag; cached because several rewards ask for the same one."""
    return read_number(tagged(text, answer_tag))


@lru_cache(maxsize=16384)
def gold_value(gold: str) -> Fraction | None:
    """A gold answer (`"...#### 1,080"` or `"1080"`) as a number."""
    return read_number(gold_answer(gold))


def strictly_correct(text: str, gold: object, answer_tag: str = "answer") -> bool:
    """Whether the answer tag states the gold number (the `correct` of score and eval)."""
    got = strict_value(text, answer_tag)
    return got is not None and got == gold_value(str(gold))


@lru_cache(maxsize=64)
def format_patterns(reasoning_tag: str | None, answer_tag: str) -> tuple[re.Pattern[str], ...]:
    """(strict, soft) patterns of the prompt format; strict wants each tag on its own line."""
    a = re.escape(answer_tag)
    answer_block = rf"<{a}>\n.+?\n</{a}>"
    if reasoning_tag is None:  # a custom prompt: only the answer block is prescribed
        return (
            re.compile(rf".*\n{answer_block}\s*\Z|{answer_block}\s*\Z", re.S),
            re.compile(rf".*<{a}>.+?</{a}>", re.S),
        )
    r = re.escape(reasoning_tag)
    return (
        re.compile(rf"<{r}>\n.+?\n</{r}>\n{answer_block}\s*\Z", re.S),
        re.compile(rf"\s*<{r}>.+?</{r}>\s*<{a}>.+?</{a}>", re.S),
    )


def follows_format(
    text: str, reasoning_tag: str | None = "reasoning", answer_tag: str = "answer"
) -> bool:
    """Whether a completion has the prompt's layout (reasoning block, then the answer block)."""
    return format_patterns(reasoning_tag, answer_tag)[1].match(text) is not None


@reward("correctness")
def correctness(
    completions: list[Any],
    answer: list[str],
    *,
    value: float = 2.0,
    flexible: bool = False,
    answer_tag: str = "answer",
    **kwargs: Any,
) -> list[float]:
    """2.0 when the answer tag states the gold number, compared by value ($18 = 18.00 = 18).

    `flexible: true` also accepts an answer found outside the tag (\\boxed{}, "the answer is").
    """
    out = []
    for completion, gold in zip(completions, answer, strict=True):
        text = completion_text(completion)
        if flexible:
            found = extract_flexible(text, answer_tag)
            right = found is not None and read_number(found) == gold_value(str(gold))
        else:
            right = strictly_correct(text, gold, answer_tag)
        out.append(value if right else 0.0)
    return out


@reward("integer_answer")
def integer_answer(
    completions: list[Any], *, value: float = 0.5, answer_tag: str = "answer", **kwargs: Any
) -> list[float]:
    """0.5 when the answer tag holds one whole number (GSM8K answers are integers)."""
    out = []
    for completion in completions:
        got = strict_value(completion_text(completion), answer_tag)
        out.append(value if got is not None and got.denominator == 1 else 0.0)
    return out


@reward("strict_format")
def strict_format(
    completions: list[Any],
    *,
    value: float = 0.5,
    reasoning_tag: str | None = "reasoning",
    answer_tag: str = "answer",
    **kwargs: Any,
) -> list[float]:
    """0.5 for the exact layout: each tag on its own line, nothing after the answer block."""
    pattern = format_patterns(reasoning_tag, answer_tag)[0]
    return [value if pattern.match(completion_text(c)) else 0.0 for c in completions]


@reward("soft_format")
def soft_format(
    completions: list[Any],
    *,
    value: float = 0.5,
    reasoning_tag: str | None = "reasoning",
    answer_tag: str = "answer",
    **kwargs: Any,
) -> list[float]:
    """0.5 when the reasoning block comes first, then the answer block (any spacing)."""
    pattern = format_patterns(reasoning_tag, answer_tag)[1]
    return [value if pattern.match(completion_text(c)) else 0.0 for c in completions]


@reward("xml_count")
def xml_count(
    completions: list[Any],
    *,
    per_tag: float = 0.125,
    trailing_penalty: float = 0.001,
    reasoning_tag: str | None = "reasoning",
    answer_tag: str = "answer",
    **kwargs: Any,
) -> list[float]:
    """0.125 per tag written once on its own line, minus 0.001 per character after </answer>.

    The trailing-text penalty never exceeds the credit the tags can earn.
    """
    tags = [f"<{answer_tag}>", f"</{answer_tag}>"]
    if reasoning_tag is not None:
        tags = [f"<{reasoning_tag}>", f"</{reasoning_tag}>", *tags]
    close = f"</{answer_tag}>"
    cap = per_tag * len(tags)
    out = []
    for completion in completions:
        text = completion_text(completion)
        score = 0.0
        for tag in tags:
            if text.count(tag) == 1:
                at = text.index(tag)
                before_ok = at == 0 or text[at - 1] == "\n"
                end = at + len(tag)
                after_ok = tag == close or end == len(text) or text[end] == "\n"
                if before_ok and after_ok:
                    score += per_tag
        if close in text:
            trailing = len(text.rsplit(close, 1)[1].strip())
            score -= min(trailing * trailing_penalty, cap)
        out.append(score)
    return out


@reward("think_format")
def think_format(
    completions: list[Any],
    *,
    value: float = 0.5,
    think_tag: str = "think",
    answer_tag: str = "answer",
    **kwargs: Any,
) -> list[float]:
    """0.5 for <think>...</think> then <answer>...</answer> and nothing else."""
    t, a = re.escape(think_tag), re.escape(answer_tag)
    pattern = re.compile(rf"\s*<{t}>.+?</{t}>\s*<{a}>.+?</{a}>\s*\Z", re.S)
    return [value if pattern.match(completion_text(c)) else 0.0 for c in completions]


@reward("length_penalty")
def length_penalty(
    completions: list[Any],
    completion_ids: list[list[int]] | None = None,
    *,
    max_completion_length: int = 512,
    buffer: float = 0.2,
    penalty: float = 1.0,
    **kwargs: Any,
) -> list[float]:
    """Overlong penalty (DAPO): 0 until the last 20% of max_completion_length, then down to -1.0.

    `buffer` is that share, `penalty` the value at the limit; a completion cut off at the limit
    gets the full penalty.
    Lengths are tokens when the trainer passes completion_ids; `grpo score`, which has no
    tokenizer, estimates them as characters / 4.
    """
    if not 0 < buffer <= 1:
        raise ValueError(f"buffer must be a share between 0 and 1, found {buffer}")
    window = max(1.0, buffer * max_completion_length)
    start = max_completion_length - window
    out = []
    for i, completion in enumerate(completions):
        if completion_ids is not None:
            length = len(completion_ids[i])
        else:
            length = math.ceil(len(completion_text(completion)) / 4)
        if length <= start:
            out.append(0.0)
        else:
            out.append(-penalty * min(1.0, (length - start) / window))
    return out


# `12 + 30 = 42`, `3 * $4 * 2 = $24`, `(1,200 - 200) / 4 = 250`: a written calculation is the
# run of numbers, operators and brackets just before an `=` and the number after it. GSM8K's
# solutions and the synthetic ones write their steps this way.
_RESULT = re.compile(r"=\s*(-?\$?\d[\d,]*(?:\.\d+)?)")
_EXPRESSION_CHARS = frozenset("0123456789.,$ +-*/()\u00d7\u00f7")
_TOKEN = re.compile(r"\d[\d,]*(?:\.\d+)?|[-+*/()\u00d7\u00f7]")
_NUMBER_TOKEN = re.compile(r"\d[\d,]*(?:\.\d+)?")
# Bounds that keep a completion's cost near its size whatever it holds: the first 64
# calculations among the first 256 `=`, each at most 160 characters long (a worked step is a
# few dozen).
MAX_CALCULATIONS, MAX_CALCULATION_CHARS = 64, 160
_OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


def calculations(text: str) -> list[tuple[list[Fraction], Fraction | None, Fraction]]:
    """(the numbers used, the expression's value, the result written after `=`) for each
    calculation in TEXT; the value is None when it cannot be worked out (a division by zero)."""
    found: list[tuple[list[Fraction], Fraction | None, Fraction]] = []
    for seen, match in enumerate(_RESULT.finditer(text)):
        if len(found) == MAX_CALCULATIONS or seen == 4 * MAX_CALCULATIONS:
            break
        at = match.start()
        begin, stop = at, max(0, at - MAX_CALCULATION_CHARS)
        while begin > stop and text[begin - 1] in _EXPRESSION_CHARS and text[begin - 1] != "\n":
            begin -= 1
        result = read_number(match.group(1))
        tokens = _TOKEN.findall(text[begin:at])
        if not any(t in "+-*/\u00d7\u00f7" for t in tokens):  # `x = 5`, `1 = 1`: nothing to parse
            continue
        # The scan also takes in what precedes the calculation (`Step 1. 4 + 5`, `8. 8 - 2`):
        # the calculation is the longest run of tokens before the `=` that is an expression.
        for start in range(len(tokens)):
            tree = _expression(tokens[start:])
            if tree is not None:
                break
        else:
            continue
        # A lone number (`x = 5`) is not a calculation.
        if result is None or not isinstance(tree, ast.BinOp):
            continue
        operands = [read_number(t.replace(",", "")) for t in tokens[start:] if t[0].isdigit()]
        found.append(([n for n in operands if n is not None], _value(tree), result))
    return found


_PARTS = (ast.USub, ast.UAdd, ast.Name, ast.Constant, ast.Load, *_OPERATORS)


def _expression(tokens: list[str]) -> ast.expr | None:
    """TOKENS parsed as arithmetic by Python's parser (never evaluated as code): numbers, + - * /
    and brackets only; None for anything else."""
    source = "".join(
        f"F({t.replace(',', '')!r})" if t[0].isdigit() else {"\u00d7": "*", "\u00f7": "/"}.get(t, t)
        for t in tokens
    )
    try:
        tree = ast.parse(source, mode="eval").body
    except (SyntaxError, ValueError, RecursionError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if not (
                isinstance(node.func, ast.Name)
                and len(node.args) == 1
                and isinstance(node.args[0], ast.Constant)
                and not node.keywords
            ):
                return None
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _OPERATORS:
                return None
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.USub, ast.UAdd)):
                return None
        elif not isinstance(node, _PARTS):
            return None
    return tree


def _value(node: ast.expr) -> Fraction | None:
    """The exact value of an expression `_expression` accepted; None on a division by zero."""
    try:
        return _exact(node)
    except (ZeroDivisionError, RecursionError):
        return None


def _exact(node: ast.expr) -> Fraction:
    if isinstance(node, ast.Call):
        return Fraction(str(node.args[0].value))  # type: ignore[attr-defined]
    if isinstance(node, ast.BinOp):
        return Fraction(_OPERATORS[type(node.op)](_exact(node.left), _exact(node.right)))
    assert isinstance(node, ast.UnaryOp)
    value = _exact(node.operand)
    return -value if isinstance(node.op, ast.USub) else value


@reward("arithmetic")
def arithmetic(
    completions: list[Any],
    prompts: list[Any] | None = None,
    *,
    value: float = 1.0,
    grounded: bool = True,
    answer_tag: str = "answer",
    **kwargs: Any,
) -> list[float]:
    """Up to 1.0 for worked steps that add up: the share of checks that hold. Each written
    calculation (`12 + 30 = 42`) is a check, passed when it is right and, with `grounded`, when
    every number it uses is in the question or is an earlier step's result; the answer tag
    stating the last (grounded) step's result is one more check, and with `grounded` so is
    using every number the question gives (a solution that stops half way is not paid in full;
    an unused number of the question, a distractor, costs a right solution that one check). 0
    when no calculation is written.

    Denser than `correctness`: one right step of two is told apart from none, and a right
    answer the steps do not reach (a lucky guess) is not paid in full. Without `grounded`, a
    policy learns to write `1 + 1 = 2` whatever the question; turn it off only for solutions
    that bring numbers of their own (60 minutes an hour). Use it beside `correctness`.
    """
    out = []
    questions = prompts if prompts is not None else [None] * len(completions)
    for completion, prompt in zip(completions, questions, strict=True):
        text = completion_text(completion)
        found = calculations(text)
        if not found:
            out.append(0.0)
            continue
        given = _given(question_text(prompt)) if grounded and prompt is not None else None
        known = set(given) if given is not None else None
        checks, uses_known = [], True
        results: Counter[Fraction] = Counter()  # earlier steps' results not used yet
        for operands, worked, written in found:
            uses_known = known is None or all(n in known for n in operands)
            checks.append(uses_known and worked == written)
            if known is not None and uses_known:  # a slip carries on; made-up numbers do not
                for n in operands:  # an earlier result first: `5 + 3 = 8, 8 + 1` uses no given 8
                    if results[n] > 0:
                        results[n] -= 1
                    else:
                        given[n] -= 1  # type: ignore[index]
                known.add(written)
                results[written] += 1
        # An answer that repeats a step made up out of nothing is no check passed either.
        checks.append(uses_known and strict_value(text, answer_tag) == found[-1][2])
        if given is not None:
            # Every number the question gives is used: without this check, one right step of
            # two and its result as the answer are paid in full, and a policy learned to stop
            # after the first step of every problem whose second step it sometimes got wrong.
            checks.append(all(count <= 0 for count in given.values()))
        out.append(value * sum(checks) / len(checks))
    return out


def question_text(prompt: Any) -> str:
    """The question a prompt asks: its last user turn, or the prompt itself when it is text."""
    if isinstance(prompt, str):
        return prompt
    turns = [m for m in prompt or [] if isinstance(m, dict) and m.get("role") == "user"]
    return (
        completion_text([{"role": "assistant", "content": turns[-1]["content"]}]) if turns else ""
    )


def _given(text: str) -> Counter[Fraction]:
    """The numbers TEXT gives, each as often as it is given (`2 bags of 2`: 2 twice)."""
    numbers = (read_number(t) for t in _NUMBER_TOKEN.findall(text))
    return Counter(n for n in numbers if n is not None)
