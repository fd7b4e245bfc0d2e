"""The built-in rewards: the seed recipe's values, graded by number, on text and chat input."""

from __future__ import annotations

import pytest

from grpo_cli.rewards.builtin import (
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
    assert len(built_ins) == 7
    for name, info in built_ins.items():
        as_text = info.fn(completions=texts, answer=["18"] * len(texts))
        as_chat = info.fn(completions=[chat(t) for t in texts], answer=["18"] * len(texts))
        assert as_text == as_chat, name
        assert len(set(as_text)) > 1, f"{name} should tell these completions apart"
