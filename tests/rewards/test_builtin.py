"""The built-in rewards: the seed recipe's values, graded by number, on text and chat input."""

from __future__ import annotations

import pytest

from grpo_cli.rewards.builtin import (
    arithmetic,
    calculations,
    completion_text,
    correctness,
    integer_answer,
    length_penalty,
    soft_format,
    strict_format,
    think_format,
    xml_count,
)

GOOD = "<reasoning>\n9 eggs at $2 each.\n9 * 2 = 18\n</reasoning>\n<answer>\n18\n</answer>\n"


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


@pytest.mark.parametrize("wrap", [str, chat], ids=["text", "chat"])
def test_a_perfect_completion_earns_every_format_reward_and_correctness(wrap):
    c = [wrap(GOOD)]
    assert correctness(c, answer=["18"]) == [2.0]
    assert integer_answer(c) == [0.5]
    assert strict_format(c) == [0.5]
    assert soft_format(c) == [0.5]
    assert xml_count(c) == [0.5]


@pytest.mark.parametrize(
    "written", ["$18", "18.00", "18 dollars", "**18**", "\\boxed{18}", "She makes $18 a day."]
)
def test_correctness_compares_numbers_not_strings(written):
    completion = f"<reasoning>\n...\n</reasoning>\n<answer>\n{written}\n</answer>"
    assert correctness([completion], answer=["18"]) == [2.0]


def test_correctness_reads_gsm8k_gold_with_thousands_separators():
    completion = "<reasoning>\n1000 + 80\n</reasoning>\n<answer>\n1080\n</answer>"
    assert correctness([completion], answer=["...\n#### 1,080"]) == [2.0]
    assert correctness([completion], answer=["1,081"]) == [0.0]


@pytest.mark.parametrize(
    "completion",
    [
        "<reasoning>\n9 * 2\n</reasoning>\n<answer>\n19\n</answer>",  # wrong number
        "<reasoning>\n9 * 2 = 18\n</reasoning>\n18",  # no answer tag
        "<reasoning>\n...\n</reasoning>\n<answer>\n18 or 20\n</answer>",  # two answers
        "<answer>\n18",  # unclosed tag
        "",
    ],
)
def test_correctness_pays_nothing_for_wrong_missing_or_conflicting_answers(completion):
    assert correctness([completion], answer=["18"]) == [0.0]


def test_correctness_flexible_finds_an_answer_outside_the_tag_and_params_set_the_value():
    plain = "9 * 2 = 18, so the answer is 18."
    assert correctness([plain], answer=["18"]) == [0.0]
    assert correctness([plain], answer=["18"], flexible=True, value=1.0) == [1.0]


def test_correctness_uses_the_configured_answer_tag():
    completion = "<think>\n9 * 2\n</think>\n<final>\n18\n</final>"
    assert correctness([completion], answer=["18"], answer_tag="final") == [2.0]
    assert correctness([completion], answer=["18"]) == [0.0]


@pytest.mark.parametrize(
    ("inside", "expected"), [("18", 0.5), ("$18", 0.5), ("-4", 0.5), ("2.5", 0.0), ("none", 0.0)]
)
def test_integer_answer_wants_one_whole_number(inside, expected):
    assert integer_answer([f"<answer>\n{inside}\n</answer>"]) == [expected]


def test_format_rewards_accept_multi_line_reasoning_which_the_seed_patterns_missed():
    # The seed notebook's patterns had no re.DOTALL: reasoning over several lines never matched.
    assert GOOD.count("\n") > 4
    assert strict_format([GOOD]) == [0.5]
    assert soft_format([GOOD]) == [0.5]


@pytest.mark.parametrize(
    ("completion", "strict", "soft"),
    [
        ("<reasoning>a</reasoning><answer>18</answer>", 0.0, 0.5),  # tags not on own lines
        ("  <reasoning>\na\n</reasoning>\n\n<answer>\n18\n</answer>", 0.0, 0.5),
        (GOOD + "Hope this helps!", 0.0, 0.5),  # text after the answer
        ("<answer>\n18\n</answer>\n<reasoning>\na\n</reasoning>", 0.0, 0.0),  # wrong order
        ("<reasoning>\na\n</reasoning>", 0.0, 0.0),  # no answer
        ("Sure! " + GOOD, 0.0, 0.0),  # text before the reasoning
    ],
)
def test_strict_and_soft_format(completion, strict, soft):
    assert strict_format([completion]) == [strict]
    assert soft_format([completion]) == [soft]


def test_format_rewards_follow_the_configured_tags():
    think = "<think>\na\n</think>\n<answer>\n18\n</answer>\n"
    assert strict_format([think]) == [0.0]
    assert strict_format([think], reasoning_tag="think") == [0.5]
    assert soft_format([think], reasoning_tag="think") == [0.5]
    assert xml_count([think], reasoning_tag="think") == [0.5]
    # a custom prompt without a reasoning tag prescribes the answer block only
    assert strict_format(["Nine times two.\n<answer>\n18\n</answer>"], reasoning_tag=None) == [0.5]


def test_xml_count_pays_per_well_placed_tag_and_charges_trailing_text():
    assert xml_count([GOOD]) == [0.5]
    # </reasoning><answer> on one line misplaces both tags
    assert xml_count([GOOD.replace("</reasoning>\n", "</reasoning>")]) == [0.25]
    assert xml_count([GOOD + "<reasoning>"]) == pytest.approx([0.375 - 0.011])
    assert xml_count([GOOD + "x" * 10]) == pytest.approx([0.49])
    assert xml_count([GOOD + "x" * 100_000]) == [0.0]  # the penalty is capped at the tag credit
    assert xml_count(["no tags at all"]) == [0.0]


def test_think_format():
    assert think_format(["<think>\nhmm\n</think>\n<answer>18</answer>"]) == [0.5]
    assert think_format(["<think>hmm</think> <answer>18</answer> trailing"]) == [0.0]
    assert think_format([chat("<think>a</think><answer>1</answer>")], value=1.0) == [1.0]


def test_length_penalty_counts_tokens_and_falls_to_minus_one_at_the_limit():
    ids = [[0] * n for n in (10, 80, 90, 100)]
    values = length_penalty(["x"] * 4, completion_ids=ids, max_completion_length=100)
    assert values == pytest.approx([0.0, 0.0, -0.5, -1.0])
    # without token ids (grpo score) characters / 4 estimate the length
    assert length_penalty(["x" * 400], max_completion_length=100) == [-1.0]
    with pytest.raises(ValueError, match="buffer"):
        length_penalty([], buffer=1.5)


def test_completion_text_reads_chat_messages_and_content_parts():
    assert completion_text("plain") == "plain"
    assert completion_text(chat("a")) == "a"
    assert (
        completion_text([{"role": "assistant", "content": [{"type": "text", "text": "b"}]}]) == "b"
    )
    assert (
        completion_text([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])
        == "a"
    )


def test_every_built_in_gives_the_same_value_for_text_and_chat_completions():
    from grpo_cli.rewards import registered

    long = GOOD + "x" * 2100  # past 80% of the default 512-token limit (4 characters a token)
    texts = [GOOD, GOOD + "tail", "<think>\nx\n</think>\n<answer>\n18\n</answer>", long, ""]
    built_ins = {n: i for n, i in registered().items() if i.source == "built-in"}
    assert len(built_ins) == 8
    for name, info in built_ins.items():
        as_text = info.fn(completions=texts, answer=["18"] * len(texts))
        as_chat = info.fn(completions=[chat(t) for t in texts], answer=["18"] * len(texts))
        assert as_text == as_chat, name
        assert len(set(as_text)) > 1, f"{name} should tell these completions apart"


TWO_STEPS = (
    "<reasoning>\nShe has 28 + 10 = 38 pens.\nThen 38 - 3 = 35 pens.\n</reasoning>\n"
    "<answer>\n35\n</answer>\n"
)


@pytest.mark.parametrize(
    ("text", "paid"),
    [
        (TWO_STEPS, 1.0),  # both steps and the answer check
        (TWO_STEPS.replace("38 - 3 = 35", "38 - 3 = 34"), 1 / 3),  # a wrong step, a lucky answer
        (TWO_STEPS.replace("= 38 pens", "= 39 pens"), 2 / 3),  # one wrong step
        (TWO_STEPS.replace("\n35\n</answer>", "\n36\n</answer>"), 2 / 3),  # the steps are right
        ("<answer>\n35\n</answer>", 0.0),  # no calculation written
        ("x = 35\n<answer>\n35\n</answer>", 0.0),  # an `=` is not a calculation
    ],
)
def test_arithmetic_pays_the_share_of_steps_that_add_up(text, paid):
    assert arithmetic([text]) == [pytest.approx(paid)]
    assert arithmetic([chat(text)]) == [pytest.approx(paid)]


def test_arithmetic_reads_chains_brackets_money_and_thousands():
    text = "3 * 4 * 2 = 24\n(1,200 - 200) / 4 = $250\n$5 \u00d7 3 = $15\n10 \u00f7 4 = 2.5"
    assert [worked == written for _, worked, written in calculations(text)] == [True] * 4
    assert calculations(text)[1][0] == [1200, 200, 4]
    # A wrong chain is wrong as a whole, not judged on its last operator alone.
    assert [w == r for _, w, r in calculations("3 * 4 * 2 = 8")] == [False]


def test_arithmetic_survives_a_division_by_zero():
    assert calculations("5 / 0 = 1") == [([5, 0], None, 1)]
    assert arithmetic(["5 / 0 = 1\n<answer>\n1\n</answer>"]) == [pytest.approx(0.5)]


QUESTION = [
    {"role": "system", "content": "Answer in tags."},
    {"role": "user", "content": "Tina has 28 pens. She gets 10 more and gives 3 away. How many?"},
]


def test_arithmetic_pays_only_steps_built_on_the_question():
    """The hack a policy found in the learning demo: a right sum of made-up numbers, whatever
    the question, answered consistently, was paid in full."""
    hack = "<reasoning>\n11 + 11 = 22 pens.\n</reasoning>\n<answer>\n22\n</answer>\n"
    honest_but_wrong = TWO_STEPS.replace("= 38 pens", "= 39 pens").replace(
        "38 - 3 = 35", "39 - 3 = 36"
    )
    honest_but_wrong = honest_but_wrong.replace("\n35\n</answer>", "\n36\n</answer>")
    paid = arithmetic([TWO_STEPS, hack, honest_but_wrong], prompts=[QUESTION] * 3)
    # the hack: its step and answer use no number of the question (3 checks of 3 fail); the
    # slip: 2 steps, 1 right, the answer its result, every number of the question used
    assert paid == [1.0, 0.0, pytest.approx(3 / 4)]
    assert arithmetic([hack], prompts=["Tina has 28 pens."], grounded=False) == [1.0]
    assert arithmetic([hack]) == [1.0]  # no prompt to check against (grpo score without one)


def test_arithmetic_pays_less_for_a_solution_that_stops_half_way():
    """The hack a policy found next: one right step of two and its result as the answer, on
    problems whose second step it sometimes got wrong (0.44 -> 0.00 on one template)."""
    from grpo_cli.data.prompts import PromptFormat

    question = "Carla has 2 oranges. She buys 3 trays with 2 oranges in each. How many now?"
    whole = "She buys 3 * 2 = 6 oranges.\nNow she has 6 + 2 = 8 oranges."
    half = "She buys 3 * 2 = 6 oranges."
    slip = "She buys 3 * 2 = 6 oranges.\nNow she has 6 + 2 = 9 oranges."
    texts = [
        PromptFormat().target(steps, answer)
        for steps, answer in ((whole, "8"), (half, "6"), (slip, "9"))
    ]
    paid = arithmetic(texts, prompts=[question] * 3)
    # the 2 the question gives twice is used once by the half-way solution
    assert paid == [1.0, pytest.approx(2 / 3), pytest.approx(3 / 4)]
    assert paid[1] < paid[2]  # stopping early pays less than finishing with a slip
    # a step's result that equals a number of the question is the result, not that number
    given_8 = "Tina has 5 pens, 3 bags, 8 cups and 1 hat. How many?"
    reused = PromptFormat().target("5 + 3 = 8 pens.\nThen 8 + 1 = 9 pens.", "9")
    assert arithmetic([reused], prompts=[given_8]) == [pytest.approx(3 / 4)]
    both = PromptFormat().target("5 + 3 = 8 pens.\nThen 8 + 8 = 16 pens.", "16")
    assert arithmetic([both], prompts=["Tina has 5 pens, 3 bags and 8 cups. How many?"]) == [1.0]
    # a question's number the solution has no use for costs one check, no more
    distractor = question.replace("Carla", "Carla, 9 years old,")
    assert arithmetic(texts[:1], prompts=[distractor]) == [pytest.approx(3 / 4)]


def test_arithmetic_pays_the_synthetic_worked_solutions_in_full():
    from grpo_cli.data.formatters import split_gsm8k_solution
    from grpo_cli.data.prompts import PromptFormat
    from grpo_cli.data.synthetic import synthetic_rows

    # gsm8k_like brings numbers of its own (a percentage over 100), as GSM8K does: ungrounded.
    for level, grounded in (("gsm8k_like", False), ("simple", True)):
        for row in synthetic_rows(50, seed=1, split="sft", difficulty=level):
            reasoning, final = split_gsm8k_solution(row["answer"])
            target = PromptFormat().target(reasoning, final)
            paid = arithmetic([target], prompts=[row["question"]], grounded=grounded)
            assert paid == [1.0], row


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        ("5 + 3 = 8. 8 - 2 = 6", [True, True]),  # a sentence's full stop is not a number
        ("Step 1. 4 + 5 = 9", [True]),
        ("2, 3 + 4 = 7", [True]),
        ("3 () + 2 = 5", []),  # not arithmetic: no step, and no crash of the run
        ("2 ** 3 = 8", []),
        ("x = 5", []),
    ],
)
def test_arithmetic_finds_the_calculation_in_its_sentence(text, steps):
    assert [worked == written for _, worked, written in calculations(text)] == steps
    arithmetic([text], prompts=["5 3 8 2 4 7"])  # never raises


def test_a_made_up_number_does_not_ground_the_steps_after_it():
    chain = "11 + 11 = 22\n22 + 28 = 50\n<answer>\n50\n</answer>"
    assert arithmetic([chain], prompts=[QUESTION]) == [0.0]
    slip = "28 + 10 = 39\n39 - 3 = 36\n<answer>\n36\n</answer>"  # a slip, then consistent
    assert arithmetic([slip], prompts=[QUESTION]) == [pytest.approx(3 / 4)]


def test_arithmetic_reads_a_bounded_share_of_a_huge_completion():
    """A completion's cost stays near its size: the first 64 calculations are judged, each
    read from at most 160 characters before its `=`."""
    from grpo_cli.rewards.builtin import MAX_CALCULATIONS

    many = "1 + 1 = 2\n" * 1000 + "1 + 1 = 3\n" * 1000
    assert len(calculations(many)) == MAX_CALCULATIONS
    # the answer (none) fails, the question's one number is used
    assert arithmetic([many], prompts=["1"]) == [pytest.approx(65 / 66)]
    long_chain = "1 + " * 50_000 + "1 = 50001"
    assert len(calculations(long_chain)) <= 1
