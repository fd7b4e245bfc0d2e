"""Reading final answers: right answers written oddly are right, wrong or ambiguous ones are not."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grpo_cli.answers import (
    extract_flexible,
    extract_strict,
    format_number,
    gold_answer,
    normalize,
    read_number,
    same_number,
    tagged,
)

RIGHT_WRITINGS_OF_18 = [
    "18", " 18 ", "18.", "18.0", "18.00", "+18", "$18", "$ 18", "$18.00", "\\$18", "18 dollars",
    "18 dollars.", "$18 per day", "**18**", "*18*", "__18__", "`18`", "\\boxed{18}",
    "$\\boxed{18}$", "\\(18\\)", "\\[18\\]", "$18$", "\\text{18}", "18 \\text{ dollars}",
    "x = 18", "9 * 2 = 18", "9 * 2 = $18", "The answer is 18.", "The answer is: 18",
    "Total: 18", "The total is $18.", "She makes 18 dollars", "18 eggs", "18%", "18 USD",
    "USD 18", "£18", "€18", "18\n", "36/2", "\\frac{36}{2}", "18 and 18",
]  # fmt: skip


@pytest.mark.parametrize("text", RIGHT_WRITINGS_OF_18)
def test_right_answer_written_oddly_reads_18(text):
    assert normalize(text) == "18"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,080", "1080"),
        ("1,234,567", "1234567"),
        ("$1,080.", "1080"),
        ("-5", "-5"),
        ("\u22125", "-5"),
        ("x = -5", "-5"),
        (".5", "0.5"),
        ("0.50", "0.5"),
        ("3/4", "0.75"),
        ("\\frac{3}{4}", "0.75"),
        ("\\dfrac{1}{3}", "1/3"),
        ("-2/8", "-0.25"),
        ("2.5 million", "2500000"),
        ("3 thousand", "3000"),
        ("12.125", "12.125"),
        ("5 + 3 = 8 apples", "8"),
        ("He pays 3 * 4 = 12 dollars in total", "12"),
        ("The answer is 7, since 3 + 4 = 7", "7"),
    ],
)
def test_normalization(text, expected):
    assert normalize(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        None, "", "   ", "no number here", "18 or 19", "18 apples at $2 each",
        "2 hours 30 minutes", "1,23", "between 5 and 10", "€18,50",
    ],
)  # fmt: skip
def test_no_single_answer(text):
    assert normalize(text) is None


@pytest.mark.parametrize(
    ("answer", "gold", "right"),
    [
        ("18.0", "18", True),
        ("$18", "18", True),
        ("0.75", "3/4", True),
        ("1,080", "1080", True),
        ("18", "19", False),
        ("-18", "18", False),
        ("18.5", "18", False),
        ("1080", "108", False),
        (None, "18", False),
        ("18", None, False),
        ("", "", False),
    ],
)
def test_same_number(answer, gold, right):
    assert same_number(answer, gold) is right


def test_strict_takes_the_last_complete_answer_tag():
    text = "<reasoning>2 + 2</reasoning>\n<answer>3</answer> wait <answer>\n4\n</answer>"
    assert extract_strict(text) == "4"
    assert extract_strict("<reasoning>..</reasoning><answer>4") is None  # cut off: no close tag
    assert extract_strict("The answer is 4") is None
    assert extract_strict("<answer>4 or 5</answer>") is None
    assert extract_strict("<final>4</final>", tag="final") == "4"
    assert tagged("<answer> x </answer>") == "x"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<answer>$1,080</answer> and then 5", "1080"),
        ("so \\boxed{12} (not 13)", "12"),
        ("\\boxed{\\frac{1}{2}} and 7", "0.5"),
        ("steps...\n#### 1,080\n", "1080"),
        ("So the final answer is 7 apples. Then 9 more", "7"),
        ("The answer is: $42.", "42"),
        ("I think 5 and then 6", "6"),
        ("nothing", None),
        ("<answer>many</answer> but 3", "3"),
    ],
)
def test_flexible_extraction_order(text, expected):
    assert extract_flexible(text) == expected


def test_every_gsm8k_gold_answer_parses_to_an_integer(gsm8k_dir):
    for name in ("train.jsonl", "test.jsonl"):
        with open(gsm8k_dir / name, encoding="utf-8") as rows:
            golds = [gold_answer(json.loads(line)["answer"]) for line in rows]
        assert None not in golds
        assert all(Fraction(g).denominator == 1 for g in golds)
    assert gold_answer("He has 1,000 + 80 = <<1000+80=1080>>1,080 left.\n#### 1,080") == "1080"


numbers = st.fractions(max_denominator=64).filter(lambda f: abs(f) < 10**9) | st.integers(
    -(10**9), 10**9
).map(Fraction)


def _writings(value: Fraction) -> list[str]:
    canonical = format_number(value)
    out = [canonical, f"{canonical}.", f"**{canonical}**", f"\\boxed{{{canonical}}}",
           f"x = {canonical}", f"The answer is {canonical}.", f"{canonical} dollars"]  # fmt: skip
    if value.denominator == 1:
        n = value.numerator
        out += [f"{n:,}", f"{n}.00", f"${n:,}" if n >= 0 else f"-${-n:,}"]
    else:
        out.append(f"{value.numerator}/{value.denominator}")
        out.append(f"\\frac{{{value.numerator}}}{{{value.denominator}}}")
    return out


@given(numbers)
def test_any_supported_writing_round_trips(value):
    for text in _writings(value):
        assert read_number(text) == value, text
        assert normalize(normalize(text)) == normalize(text)
