"""Synthetic word problems: reproducible, varied, and every worked step checks out."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import random
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


# The simple levels: small problems, every one solvable from its question, and held-out problems
# that are never among the training ones.

SIMPLE_LEVELS = ("easy", "two_step", "simple")


def solve(question: str) -> int:
    """The answer worked out from the words of QUESTION alone, not from its worked solution:
    what is had or bought is added, what is given away taken off."""
    clause = re.compile(
        r"(?P<piles>(?:has|buys) (\d+) red \w+ and (\d+) blue \w+, with (\d+) \w+ in each)"
        r"|(?P<groups>(?:has|buys) (\d+) \w+ with (\d+) \w+ in each)"
        r"|(?P<more>(?:has|gets|buys) (\d+))"
        r"|(?P<less>gives (?:away )?(\d+))"
    )
    total = 0
    for match in clause.finditer(question):
        numbers = [int(n) for n in match.groups()[1:] if n is not None and n.isdigit()]
        if match["piles"]:
            total += (numbers[0] + numbers[1]) * numbers[2]
        elif match["groups"]:
            total += numbers[0] * numbers[1]
        elif match["more"]:
            total += numbers[0]
        else:
            total -= numbers[0]
    return total


def arithmetic(row: dict[str, str]) -> tuple[str, ...]:
    """A problem's sums, whatever the story around them: `('5+3', '8-2')`."""
    return tuple(expr for expr, _, _ in ANNOTATION.findall(row["answer"]))


@pytest.mark.parametrize("difficulty", SIMPLE_LEVELS)
def test_every_answer_of_a_simple_level_follows_from_its_question(difficulty):
    for split in ("sft", "train", "test"):
        for row in synthetic_rows(1000, seed=1, split=split, difficulty=difficulty):
            *steps, final = row["answer"].split("\n")
            gold = int(gold_answer(row["answer"]))
            assert gold == solve(row["question"]) > 0, row
            for line in steps:
                ((expr, stated, shown),) = ANNOTATION.findall(line)
                assert calculate(expr) == Fraction(stated) == int(shown), line
            assert int(ANNOTATION.findall(steps[-1])[0][2]) == gold
            steps_wanted = {"easy": {1}, "two_step": {2}, "simple": {1, 2}}[difficulty]
            assert len(steps) in steps_wanted, row
            # small numbers a tiny model can learn to add up
            assert max(map(int, re.findall(r"\d+", row["question"]))) <= 100 and gold < 200


@pytest.mark.parametrize("difficulty", SIMPLE_LEVELS)
def test_held_out_problems_are_never_trained_on(difficulty):
    sums = {
        (split, seed): {
            arithmetic(row)
            for row in synthetic_rows(3000, seed=seed, split=split, difficulty=difficulty)
        }
        for split in ("sft", "train", "test", "validation")
        for seed in (0, 1)
    }
    trained = set().union(*(sums[split, seed] for split in ("sft", "train") for seed in (0, 1)))
    for seed in (0, 1):
        # a held-out problem told with other names or things is still the same problem
        assert not sums["test", seed] & trained
        assert not sums["validation", seed] & trained
        assert not sums["sft", seed] & (sums["train", 1 - seed] | sums["train", seed])
    # each part is big enough to be worth its name: the learning demo's 340 held-out rows are
    # 340 problems, but for the one-step sums of small numbers, which are fewer: each comes
    # once before any repeats
    for seed in (0, 1, 3407):
        problems = [arithmetic(row) for row in synthetic_rows(340, seed, "test", difficulty)]
        distinct = {"easy": 40, "two_step": 300, "simple": 340}[difficulty]
        assert len(set(problems[:distinct])) == distinct


@pytest.mark.parametrize("difficulty", SIMPLE_LEVELS)
def test_a_simple_level_is_seeded(difficulty):
    rows = synthetic_rows(300, seed=3, split="sft", difficulty=difficulty)
    assert rows == synthetic_rows(300, seed=3, split="sft", difficulty=difficulty)
    assert rows[:50] == synthetic_rows(50, seed=3, split="sft", difficulty=difficulty)
    other = synthetic_rows(300, seed=4, split="sft", difficulty=difficulty)
    assert len({r["question"] for r in rows} & {r["question"] for r in other}) <= 5
    assert len({r["question"] for r in rows}) == 300


def test_a_simple_level_is_the_same_in_another_process():
    code = (
        "import hashlib, json; from grpo_cli.data.synthetic import synthetic_rows; "
        "rows = synthetic_rows(300, 7, 'test', 'simple'); "
        "print(hashlib.sha256(json.dumps(rows).encode()).hexdigest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "54321"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == digest(synthetic_rows(300, 7, "test", "simple"))


def test_simple_mixes_one_and_two_step_problems():
    lengths = [
        len(row["answer"].split("\n")) - 1 for row in synthetic_rows(1000, 0, "train", "simple")
    ]
    # one-step problems are 197 of the 1,783 GRPO draws from
    assert lengths.count(1) / len(lengths) == pytest.approx(197 / 1783, abs=0.03)
    assert set(lengths) == {1, 2}


def test_the_default_level_makes_the_rows_it_always_made():
    # the digest of these rows before difficulty levels existed: runs and the tiny model's
    # tokenizer corpus are made from them
    pinned = "95292544ce91ee4f0b9c2878a75a0dcdd82ca5506e8714e4d135b09504196a1a"
    assert digest(synthetic_rows(300, 7, "test")) == pinned
    assert synthetic_rows(300, 7, "test", "gsm8k_like") == synthetic_rows(300, 7, "test")


def test_an_unknown_level_is_refused():
    with pytest.raises(ValueError, match="difficulty must be one of gsm8k_like, easy"):
        synthetic_rows(5, difficulty="hard")


def test_the_config_offers_every_level(write):
    from typing import get_args

    from grpo_cli.config.schema import DataConfig

    choices = get_args(DataConfig.model_fields["difficulty"].annotation)
    assert set(choices) == set(synthetic.DIFFICULTIES)
    assert DataConfig().difficulty == synthetic.DEFAULT_DIFFICULTY


def test_a_config_reads_its_level_and_split(write):
    from grpo_cli.config import load_config
    from grpo_cli.data.loading import read_config_split

    path = write(
        "c.yaml",
        "model:\n  name: gpt2\nrewards: [correctness]\n"
        "data:\n  source: synthetic\n  difficulty: easy\n  limit: 20\n",
    )
    cfg = load_config(path, []).config
    for split in ("sft", "train", "test"):
        rows = read_config_split(cfg, split, limit=20).to_list()
        assert rows == synthetic_rows(20, cfg.training.seed, split, "easy")


def test_a_runs_held_out_rows_are_read_back_at_its_level(write, tmp_path):
    from types import SimpleNamespace

    from grpo_cli.config import load_config
    from grpo_cli.data.loading import load_training_data, write_heldout
    from grpo_cli.evaluation.rows import heldout_rows

    def config(difficulty):
        text = "model:\n  name: gpt2\nrewards: [correctness]\ndata:\n  source: synthetic\n"
        text += f"  difficulty: {difficulty}\n  limit: 60\n  heldout_size: 10\n"
        return load_config(write(f"{difficulty}.yaml", text), []).config

    cfg = config("two_step")
    data = load_training_data(cfg)
    write_heldout(tmp_path / "run", cfg, data.heldout_ids)
    # eval with another config still reads the rows the run held out, at the run's level
    run = SimpleNamespace(run=SimpleNamespace(path=tmp_path / "run"), kind="run")
    raw, ids, _ = heldout_rows(config("easy"), [run])
    held = [row["question"] for i, row in enumerate(raw.to_list()) if i in ids]
    expected = synthetic_rows(60, cfg.training.seed, "train", "two_step")
    assert held == [expected[i]["question"] for i in sorted(data.heldout_ids)]


def test_a_sum_or_product_with_its_operands_swapped_is_the_same_problem():
    """`5 + 3` held out must not be trained on as `3 + 5`: one problem, one part."""
    from grpo_cli.data.synthetic import arithmetic, problem_part

    for swapped, straight in (("5+3", "3+5"), ("12*4", "4*12"), ("40+7", "7+40")):
        one = arithmetic([f"<<{swapped}=0>>", "<<9-2=7>>"])
        other = arithmetic([f"<<{straight}=0>>", "<<9-2=7>>"])
        assert one == other and problem_part(one) == problem_part(other)
    assert arithmetic(["<<9-2=7>>"]) != arithmetic(["<<2-9=-7>>"])  # order matters there


def test_each_simple_template_is_weighted_by_the_problems_it_makes():
    rng = random.Random(0)
    for template in synthetic.EASY_TEMPLATES + synthetic.TWO_STEP_TEMPLATES:
        problems = {synthetic.arithmetic(template(rng)[1]) for _ in range(30_000)}
        assert len(problems) == synthetic.PROBLEMS[template.__name__], template.__name__


def test_grpos_part_draws_problems_and_the_warm_ups_draws_templates():
    """`a - b + c` makes 1,044 of the simple level's 1,783 problems: drawn one template as
    often as another it was 1 GRPO prompt in 8, though more than half the held-out rows."""

    def share(split: str, n: int = 4000) -> float:
        rows = synthetic_rows(n, seed=0, split=split, difficulty="simple")
        return sum("gives away" in row["question"] for row in rows) / len(rows)

    assert share("train") == pytest.approx(1044 / 1783, abs=0.03)
    assert share("sft") == pytest.approx(1 / 8, abs=0.03)
    assert share("test", 340) > 0.5  # the demo's 340 held-out rows, nearly all of their part
