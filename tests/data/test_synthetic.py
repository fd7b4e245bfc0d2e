"""Synthetic word problems: reproducible, varied, and every worked step checks out."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import subprocess
import sys
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grpo_cli.answers import gold_answer
from grpo_cli.data import synthetic
from grpo_cli.data.synthetic import synthetic_rows

ANNOTATION = re.compile(r"<<([^=<>]+)=([^<>]+)>>(\d+)")
_OPS = {
    ast.Add: Fraction.__add__,
    ast.Sub: Fraction.__sub__,
    ast.Mult: Fraction.__mul__,
    ast.Div: Fraction.__truediv__,
}


def calculate(expr: str) -> Fraction:
    """The exact value of an annotation made only of whole numbers and + - * /."""

    def value(node: ast.expr) -> Fraction:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](value(node.left), value(node.right))
        raise ValueError(f"not plain arithmetic: {ast.dump(node)}")

    return value(ast.parse(expr, mode="eval").body)


def check_worked_solution(row: dict[str, str]) -> None:
    """Each step line is GSM8K-style and exact; `#### N` is the last step's result."""
    assert set(row) == {"question", "answer"}
    assert row["question"].endswith("?")
    *steps, final = row["answer"].split("\n")
    assert 2 <= len(steps) <= 4
    assert final.startswith("#### ")
    results = []
    for line in steps:
        (expr, stated, shown), *others = ANNOTATION.findall(line)
        assert not others, line
        value = calculate(expr)
        assert value == Fraction(stated) == int(shown), line
        assert value.denominator == 1 and value > 0, line
        # The written step before the annotation is the same sum, just with spaces.
        written = line[: line.index("<<")].rstrip("$")
        assert written.endswith(re.sub(r"([-+*/])", r" \1 ", expr) + " = "), line
        results.append(value)
    gold = gold_answer(row["answer"])
    assert gold == str(results[-1])
    assert 0 < int(gold) < 1_000_000


def digest(rows: list[dict[str, str]]) -> str:
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def test_same_arguments_give_the_same_rows():
    assert synthetic_rows(200, seed=3) == synthetic_rows(200, seed=3)
    assert synthetic_rows(50, seed=3, split="test") == synthetic_rows(50, seed=3, split="test")


def test_another_process_makes_the_same_rows():
    code = (
        "import hashlib, json; from grpo_cli.data.synthetic import synthetic_rows; "
        "print(hashlib.sha256(json.dumps(synthetic_rows(300, 7, 'test')).encode()).hexdigest())"
    )
    # A different hash seed would change the rows if they depended on str hashing.
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == digest(synthetic_rows(300, 7, "test"))


def test_a_different_seed_gives_different_questions():
    one = {row["question"] for row in synthetic_rows(100, seed=0)}
    other = {row["question"] for row in synthetic_rows(100, seed=1)}
    assert len(one & other) <= 2


def test_the_test_split_is_not_the_train_split():
    train = {row["question"] for row in synthetic_rows(500, seed=0, split="train")}
    test = {row["question"] for row in synthetic_rows(500, seed=0, split="test")}
    assert len(train & test) <= 5


@pytest.mark.parametrize("n", [0, 1, 10, 99])
def test_fewer_rows_are_a_prefix_of_more_rows(n):
    assert synthetic_rows(n, seed=5) == synthetic_rows(100, seed=5)[:n]


def test_no_rows_and_a_negative_count():
    assert synthetic_rows(0) == []
    with pytest.raises(ValueError, match="n must be"):
        synthetic_rows(-1)


def test_every_step_of_a_thousand_rows_checks_out():
    for row in synthetic_rows(1000, seed=11):
        check_worked_solution(row)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(), split=st.sampled_from(["train", "test", "validation", "x"]))
def test_every_seed_and_split_gives_valid_rows(seed, split):
    for row in synthetic_rows(40, seed=seed, split=split):
        check_worked_solution(row)


def test_a_thousand_rows_use_every_template(monkeypatch):
    assert len(synthetic.TEMPLATES) >= 8
    made_by: dict[str, str] = {}

    def recording(template):
        def make(rng):
            question, steps, answer = template(rng)
            made_by[question] = template.__name__
            return question, steps, answer

        return make

    names = {template.__name__ for template in synthetic.TEMPLATES}
    monkeypatch.setattr(synthetic, "TEMPLATES", tuple(map(recording, synthetic.TEMPLATES)))
    used = {made_by[row["question"]] for row in synthetic_rows(1000, seed=2)}
    assert used == names


def test_a_thousand_rows_have_few_repeated_questions():
    questions = [row["question"] for row in synthetic_rows(1000, seed=4)]
    assert len(set(questions)) >= 995
