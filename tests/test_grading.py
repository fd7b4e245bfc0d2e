"""The one grading rule of eval, score and training's accuracy."""

from __future__ import annotations

from grpo_cli.evaluation.generate import Completion
from grpo_cli.evaluation.predictions import grade as grade_record
from grpo_cli.grading import grade

GOOD = "<reasoning>\n9 * 2\n</reasoning>\n<answer>\n$18.00\n</answer>"


def test_numbers_are_compared_by_value_and_the_layout_is_checked():
    g = grade(GOOD, "She makes 9 * 2 = 18 dollars.\n#### 18")
    assert (g.extracted, g.correct, g.correct_flexible, g.formatted) == ("18", True, True, True)
    loose = grade("So the answer is 18.", "18")
    assert loose.extracted is None and not loose.correct and loose.correct_flexible
    assert not loose.formatted


def test_an_unreadable_gold_never_counts_as_correct():
    g = grade("<answer>\nmany\n</answer>", "lots")
    assert not g.correct and not g.correct_flexible and not g.gold_readable


def test_an_eval_record_grades_every_sample_by_the_same_rule():
    texts = [GOOD, "<answer>\n17\n</answer>"]
    completions = [Completion(t, 5, False) for t in texts]
    record = grade_record(0, "Q?", "18", completions, "reasoning", "answer")
    assert record["correct"] == [grade(t, "18").correct for t in texts] == [True, False]
    assert record["extracted"] == ["18", "17"] and record["formatted"] == [True, False]
