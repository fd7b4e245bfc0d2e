"""Reading final answers: right answers written oddly are right, wrong or ambiguous ones are not."""

from __future__ import annotations

import json
import re
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
    "18",
    " 18 ",
    "18.",
    "18.0",
    "18.00",
    "+18",
    "$18",
    "$ 18",
    "$18.00",
    "\\$18",
    "18 dollars",
    "18 dollars.",
    "$18 per day",
    "**18**",
    "*18*",
    "__18__",
    "`18`",
    "\\boxed{18}",
    "$\\boxed{18}$",
    "\\(18\\)",
    "\\[18\\]",
    "$18$",
    "\\text{18}",
    "18 \\text{ dollars}",
    "x = 18",
    "9 * 2 = 18",
    "9 * 2 = $18",
    "The answer is 18.",
    "The answer is: 18",
    "Total: 18",
    "The total is $18.",
    "She makes 18 dollars",
    "18 eggs",
    "18%",
    "18 USD",
    "USD 18",
    "£18",
    "€18",
    "18\n",
    "36/2",
    "\\frac{36}{2}",
    "18 and 18",
]


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
        None,
        "",
        "   ",
        "no number here",
        "18 or 19",
        "18 apples at $2 each",
        "2 hours 30 minutes",
        "1,23",
        "between 5 and 10",
        "€18,50",
    ],
)
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


# How small instruct models (Qwen2.5-0.5B/1.5B/3B-Instruct, Llama-3.2-1B-Instruct) write a GSM8K
# answer inside the tag, labelled as a careful human grader would: is the model's final stated
# answer the gold number? Each row is (answer tag content, gold).
REASONING = (
    "Janet's ducks lay 16 eggs per day. She eats 3 for breakfast and bakes muffins with 4.\n"
    "So she has 16 - 3 - 4 = 9 eggs left, sold at $2 each: 9 * 2 = 18."
)

RIGHT_IN_THE_TAG = [
    # bare numbers, currency, units
    ("18", "18"),
    ("18.", "18"),
    ("18.0", "18"),
    ("18.00", "18"),
    ("+18", "18"),
    ("$18", "18"),
    ("$ 18", "18"),
    ("$18.00", "18"),
    ("$18.", "18"),
    ("\\$18", "18"),
    ("\\$18.00", "18"),
    ("18 dollars", "18"),
    ("18 dollars.", "18"),
    ("18 Dollars", "18"),
    ("$18 dollars", "18"),
    ("18.00 dollars", "18"),
    ("$18 per day", "18"),
    ("$18/day", "18"),
    ("$18 a day", "18"),
    ("$18 every day", "18"),
    ("18 eggs", "18"),
    ("18 USD", "18"),
    ("USD 18", "18"),
    ("USD 18.00", "18"),
    ("£18", "18"),
    ("€18", "18"),
    ("18€", "18"),
    ("¥18", "18"),
    ("Rs. 18", "18"),
    ("₹18", "18"),
    ("18%", "18"),
    ("18 %", "18"),
    ("18 percent", "18"),
    ("18 bucks", "18"),
    ("18!", "18"),
    ("About 18", "18"),
    ("approximately 18", "18"),
    ("≈ 18", "18"),
    ("~18", "18"),
    ("18.0 dollars", "18"),
    ("$18.00 per day", "18"),
    # markdown
    ("**18**", "18"),
    ("**$18**", "18"),
    ("*18*", "18"),
    ("__18__", "18"),
    ("`18`", "18"),
    ("```\n18\n```", "18"),
    ("# 18", "18"),
    ("### 18", "18"),
    ("- 18", "18"),
    ("* 18", "18"),
    ("~~17~~ 18", "18"),
    ("**Answer:** 18", "18"),
    ("**Final Answer:** $18", "18"),
    ("Janet makes **$18** every day.", "18"),
    # cues
    ("Answer: 18", "18"),
    ("Final answer: 18", "18"),
    ("Final: 18", "18"),
    ("The answer is 18.", "18"),
    ("The answer is: 18", "18"),
    ("The answer is $18.", "18"),
    ("The final answer is 18.", "18"),
    ("The final answer is $18.", "18"),
    ("Thus, the answer is 18.", "18"),
    ("Total: 18", "18"),
    ("Total: $18", "18"),
    ("Total earnings: $18", "18"),
    ("Daily earnings: $18", "18"),
    ("Janet: $18", "18"),
    ("The total is $18.", "18"),
    ("It is 18.", "18"),
    ("18 is the answer.", "18"),
    # LaTeX
    ("\\boxed{18}", "18"),
    ("$\\boxed{18}$", "18"),
    ("\\(\\boxed{18}\\)", "18"),
    ("\\[\\boxed{18}\\]", "18"),
    ("\\[ \\boxed{18} \\]", "18"),
    ("\\boxed{\\$18}", "18"),
    ("\\boxed{18 \\text{ dollars}}", "18"),
    ("\\boxed{18\\text{ eggs}}", "18"),
    ("\\boxed{\\text{18}}", "18"),
    ("\\(18\\)", "18"),
    ("\\[18\\]", "18"),
    ("$18$", "18"),
    ("$$18$$", "18"),
    ("\\text{18}", "18"),
    ("18 \\text{ dollars}", "18"),
    ("\\textbf{18}", "18"),
    ("\\mathbf{18}", "18"),
    ("\\text{Janet makes } \\$18 \\text{ every day.}", "18"),
    ("Final Answer: \\boxed{18}", "18"),
    ("The final answer is: $\\boxed{18}$", "18"),
    ("Answer: $\\boxed{18}$", "18"),
    ("The answer is \\( 18 \\).", "18"),
    ("Janet makes \\(\\boxed{18}\\) dollars every day at the farmers' market.", "18"),
    (
        "## Step 1: Eggs left\n16 - 3 - 4 = 9\n\n## Step 2: Money\n9 * 2 = 18\n\n"
        "The final answer is: $\\boxed{18}$",
        "18",
    ),
    # equations
    ("x = 18", "18"),
    ("x=18", "18"),
    ("Total = 18", "18"),
    ("9 * 2 = 18", "18"),
    ("9 * $2 = $18", "18"),
    ("9 x 2 = 18", "18"),
    ("9 × 2 = 18", "18"),
    ("9 \\times 2 = 18", "18"),
    ("$9 \\times 2 = 18$", "18"),
    ("9 \\cdot 2 = 18", "18"),
    ("16 - 3 - 4 = 9 eggs; 9 * $2 = $18", "18"),
    ("(16 - 3 - 4) * 2 = 18", "18"),
    ("(16 - 3 - 4) × $2 = $18 per day", "18"),
    ("16 - 3 - 4 = 9\n9 * 2 = 18", "18"),
    ("16 - 3 - 4 = 9 → 9 × 2 = 18", "18"),
    ("9 * 2 => 18", "18"),
    ("18 = 18", "18"),
    ("$18 = 9 x $2", "18"),
    ("9 * 2 = 18 dollars per day for 7 days", "18"),
    ("She has 9 eggs left, so she makes 9 * $2 = $18.", "18"),
    ("Janet sells 16 - 3 - 4 = 9 eggs and makes 9 * 2 = $18 per day.", "18"),
    ("9 eggs times $2 equals $18", "18"),
    ("1. 16 - 3 - 4 = 9 eggs left\n2. 9 * $2 = $18", "18"),
    ("Step 1: 16 - 3 - 4 = 9 eggs\nStep 2: 9 * 2 = 18\nFinal: 18", "18"),
    ("Step 1: Subtract the eggs she uses.\nStep 2: Multiply by the price.\nFinal answer: 18", "18"),
    ("1. Eggs left to sell: 9\n2. Money made: $18\nAnswer: $18", "18"),
    # sentences
    ("Janet makes $18 every day at the farmers' market.", "18"),
    ("Janet makes $18 every day.", "18"),
    ("She makes 18 dollars", "18"),
    ("She makes 18 dollars per day.", "18"),
    ("Janet earns $18 daily.", "18"),
    ("Janet makes $18 (eighteen dollars) every day.", "18"),
    ("Janet makes $18 per day by selling her eggs at the farmers' market.", "18"),
    ("Janet sells 9 eggs at $2 each, so she makes $18 every day.", "18"),
    ("Therefore, Janet makes $18 every day.", "18"),
    ("So, she makes $18.", "18"),
    ("The amount she makes every day is $18.", "18"),
    ("The amount Janet makes from 9 eggs is $18.", "18"),
    ("In total, Janet makes $18 every day.", "18"),
    ("Janet makes a total of $18 every day.", "18"),
    ("$18 in total", "18"),
    ("18 dollars in total", "18"),
    ("Janet makes $18 because she sells 9 eggs at $2 each.", "18"),
    ("Since she sells 9 eggs at $2 each, Janet makes $18 every day.", "18"),
    ("In 2023, Janet made $18 every day.", "18"),
    ("25% of 72 is 18", "18"),
    ("Half of 36 is 18", "18"),
    ("The cost of 3 shirts is $18.", "18"),
    ("The total cost for 3 shirts is $18.", "18"),
    ("John is 18 years old.", "18"),
    # asides
    ("18 (eighteen)", "18"),
    ("eighteen (18)", "18"),
    ("$18 (9 eggs x $2)", "18"),
    ("$18 (16 - 3 - 4 = 9 eggs, 9 x $2 = $18)", "18"),
    ("$18 (9 eggs sold at $2 each)", "18"),
    ("18 (9 * 2)", "18"),
    ("18 (since 9 x 2 = 18)", "18"),
    ("18 (rounded from 17.6)", "18"),
    ("The answer is 18 (since 9 x 2 = 18).", "18"),
    # number words: read only when no digit is written
    ("eighteen", "18"),
    ("Eighteen", "18"),
    ("Eighteen dollars.", "18"),
    ("Janet makes eighteen dollars every day.", "18"),
    ("twenty-five", "25"),
    ("Twenty five", "25"),
    ("twenty-five percent", "25"),
    ("zero", "0"),
    ("Zero", "0"),
    ("one thousand eighty", "1080"),
    ("one thousand and eighty", "1080"),
    ("eighteen thousand", "18000"),
    ("one hundred and five", "105"),
    ("two thousand five hundred", "2500"),
    ("a hundred", "100"),
    # thousands
    ("1,080", "1080"),
    ("$1,080", "1080"),
    ("1080", "1080"),
    ("1 080", "1080"),
    ("1\u202f080", "1080"),
    ("1\u2009080", "1080"),
    ("1\u00a0080", "1080"),
    ("1\\,080", "1080"),
    ("1{,}080", "1080"),
    ("$1{,}080$", "1080"),
    ("$1,080.00", "1080"),
    ("1080.0", "1080"),
    ("1,080 dollars", "1080"),
    ("\\boxed{1,080}", "1080"),
    ("\\boxed{1\\,080}", "1080"),
    ("1.08 thousand", "1080"),
    ("1.08k", "1080"),
    ("He has $1 080 left.", "1080"),
    ("18,000", "18000"),
    ("18 000", "18000"),
    ("$18,000 per year", "18000"),
    ("18k", "18000"),
    ("$18K", "18000"),
    ("18 thousand", "18000"),
    ("1,234,567", "1234567"),
    # scales, decimals, fractions, mixed numbers, negatives
    ("$1.5 million", "1500000"),
    ("1.5 million", "1500000"),
    ("1,500,000", "1500000"),
    ("1.5 million dollars", "1500000"),
    ("$1,500,000.00", "1500000"),
    ("0.5", "0.5"),
    (".5", "0.5"),
    ("1/2", "0.5"),
    ("\\frac{1}{2}", "0.5"),
    ("\\dfrac{1}{2}", "0.5"),
    ("$\\frac{1}{2}$", "0.5"),
    ("0.50", "0.5"),
    ("3.5", "3.5"),
    ("3 1/2", "3.5"),
    ("3 1/2 hours", "3.5"),
    ("3\\frac{1}{2}", "3.5"),
    ("3 \\frac{1}{2}", "3.5"),
    ("7/2", "3.5"),
    ("\\frac{7}{2}", "3.5"),
    ("3 and a half", "3.5"),
    ("three and a half", "3.5"),
    ("3.50", "3.5"),
    ("3.5 hours", "3.5"),
    ("It takes 3 1/2 hours.", "3.5"),
    ("2\\frac{1}{2}", "2.5"),
    ("$18 and 50 cents", "18.5"),
    ("18 dollars and 50 cents", "18.5"),
    ("36/2", "18"),
    ("\\frac{36}{2}", "18"),
    ("-5", "-5"),
    ("\u22125", "-5"),
    ("-$5", "-5"),
    ("\u20135", "-5"),
    ("x = -5", "-5"),
    ("-5 dollars", "-5"),
    ("\\(-5\\)", "-5"),
    ("$-5$", "-5"),
    ("-\\$5", "-5"),
    ("The answer is -5.", "-5"),
    ("25%", "25"),
    ("25 percent", "25"),
    ("25\\%", "25"),
    ("0", "0"),
    ("$0", "0"),
    ("0 dollars", "0"),
    ("She has 0 eggs left.", "0"),
    # other GSM8K answers as the models restate them
    ("Natalia sold 72 clips altogether in April and May.", "72"),
    ("Natalia sold 48 + 24 = 72 clips in April and May.", "72"),
    ("48 + 24 = 72", "72"),
    ("72 clips", "72"),
    ("She sold 48 clips in April and 24 in May, 72 altogether.", "72"),
    ("Natalia sold a total of 72 clips.", "72"),
    ("In total, Natalia sold 72 clips in April and May.", "72"),
    ("Weng earned $10.", "10"),
    ("$10", "10"),
    ("Weng earned $10 for 50 minutes of babysitting.", "10"),
    ("12 / 60 * 50 = $10", "10"),
    ("Weng earned 0.2 * 50 = $10.", "10"),
    ("540 meters", "540"),
    ("James runs 540 meters a week.", "540"),
    ("3 * 3 * 60 = 540 meters per week", "540"),
    ("540 meters/week", "540"),
    ("James runs a total of 540 meters every week.", "540"),
    ("Betty needs $5 more.", "5"),
    ("$5 more", "5"),
    ("5 more dollars", "5"),
    ("Betty needs 100 - 50 - 15 - 30 = $5 more.", "5"),
    ("Julie should read 42 pages tomorrow.", "42"),
    ("James writes 624 pages a year.", "624"),
    ("624 pages in a year", "624"),
    ("Mark has 35 flowers in his garden.", "35"),
    ("Albert eats 48 pieces of pizza in one day.", "48"),
    ("After 2 years, the car's value is $16,000.", "16000"),
    ("Eliza's earnings for this week are $460.", "460"),
    ("It will take Carla 160 minutes to download the file.", "160"),
    ("It takes 48 minutes to travel 8 kilometers.", "48"),
    ("It would take 840 minutes to groom 5 dogs and 3 cats.", "840"),
    ("She needs 16 more ounces to drink 100 ounces.", "16"),
    ("There are 20 students in the class.", "20"),
    ("Ken's box weighs 16 pounds.", "16"),
    ("He will be 26 years old 10 years from now.", "26"),
    ("Thus, the pirates will need to walk 60 + 75 = 135 miles to explore the 4 islands.", "135"),
    ("The clovers are worth 554 cents because 450 plus 96 plus 8 equals 554", "554"),
    ("Therefore, Sherry needs 33 bananas because there is 1 banana in each batch.", "33"),
    ("Each of the 3 friends gets 6 candies.", "6"),
    ("18 of the 20 students passed.", "18"),
    ("He needs 2 more cups of flour.", "2"),
    ("Two", "2"),
    ("Tom has 5 apples left after giving 3 to Sam.", "5"),
    ("The price of 1 cupcake is $3.", "3"),
    ("Each person gets 4 slices of pizza.", "4"),
    ("The 2 friends each get 7 cookies", "7"),
    ("Both of them get 7 cookies each, 14 in total.", "14"),
    ("He spent $40 on 4 books.", "40"),
    ("Janet makes 18 dollars every day. That is 126 dollars per week.", "126"),
    ("$18/day * 7 days = $126/week", "126"),
    # whole sentences and paragraphs around the answer
    (
        "Janet's ducks lay 16 eggs per day. She eats 3 for breakfast and uses 4 for muffins, "
        "leaving her with 16 - 3 - 4 = 9 eggs. She sells these at $2 per egg, so she makes "
        "9 * 2 = $18 every day at the farmers' market.",
        "18",
    ),
    ("Janet makes $18 every day at the farmers' market by selling 9 eggs at $2 each.", "18"),
    ("Janet sells 9 eggs a day at $2 each, which gives her $18.", "18"),
    ("She sells 9 eggs at $2 each, making $18 per day.", "18"),
    ("18\n\nExplanation: Janet has 16 - 3 - 4 = 9 eggs left and sells them for $2 each.", "18"),
    ("Janet makes $18 every day, which is 9 eggs times $2.", "18"),
    ("Janet has 16 eggs. She uses 7. She sells 9 eggs for $2 each. She makes $18.", "18"),
    ("16 - 3 - 4 = 9 eggs. She sells them for $2 each. She makes $18.", "18"),
    ("Janet makes $18 every day. She sells 9 eggs at $2 each.", "18"),
    ("Janet makes $18 every day. This is because she sells 9 eggs.", "18"),
    ("Step 1: She has 9 eggs left.\nStep 2: She makes $18.", "18"),
    ("The answer is 18. Janet has 9 eggs and sells each for $2.", "18"),
    ("The final answer is $18. I hope it is correct.", "18"),
    ("18 dollars (9 eggs x 2 dollars per egg)", "18"),
    ("16 eggs - 3 eggs - 4 eggs = 9 eggs\n9 eggs x $2/egg = $18", "18"),
    ("Janet makes 9 × $2 = $18 every day. (16 − 3 − 4 = 9 eggs)", "18"),
    ("Janet will earn $18 daily from selling 9 duck eggs.", "18"),
    ("Janet makes $18 a day selling 9 eggs at $2 each.", "18"),
    ("Janet earns 9 x 2 = 18 dollars", "18"),
    ("Janet makes $2 per egg * 9 eggs = $18 per day", "18"),
    ("x = 9, so total = 18", "18"),
    ("18.00$", "18"),
    ("18$", "18"),
    ("Janet's total daily earnings: $18.", "18"),
    ("18 — she sells 9 eggs at $2.", "18"),
    ("$18 - she sells 9 eggs", "18"),
    ("18 dollars - because she sells 9 eggs.", "18"),
    ("At $2 per egg, Janet makes $18.", "18"),
    ("Janet makes $18 from 9 eggs.", "18"),
    ("With 9 eggs left, Janet makes $18.", "18"),
    ("For 9 eggs, Janet makes $18.", "18"),
    ("She makes $18 because 9 * 2 = 18", "18"),
    ("He can skip 4 classes because 10 - 4 = 6", "4"),
    ("The 4 remaining players averaged 5 points.", "5"),
    ("18, since 9 x 2 = 18.", "18"),
    ("She will have 18 eggs left after 3 days.", "18"),
    ("During 3 days she sold 18 eggs.", "18"),
    ("She makes 18 dollars, which is 9 * 2.", "18"),
    ("The total amount Janet makes every day is 18 dollars.", "18"),
    ("Janet earns eighteen dollars ($18) per day.", "18"),
    ("The answer is eighteen.", "18"),
    ("18 (Janet sells 9 eggs for $2 each)", "18"),
    ("$18 per day (9 eggs × $2)", "18"),
    ("18 (final answer)", "18"),
    ("18 (rounded)", "18"),
    ("around 18", "18"),
    ("Final Answer: The final answer is 18. I hope it is correct.", "18"),
    ("The final answer is $\\boxed{18}$ dollars.", "18"),
    ("\\( 18 \\)", "18"),
    ("The answer is $\\$18$.", "18"),
    ("18 \\, \\text{dollars}", "18"),
    ("$18\\text{ per day}$", "18"),
    ("18 (dollars)", "18"),
    ("[18]", "18"),
    ("9*2=18", "18"),
    ("9×2=18", "18"),
    ("$$\\text{Total} = 9 \\times 2 = 18$$", "18"),
    ("Janet's earnings = 9 eggs × $2/egg = $18", "18"),
    ("Profit: $18", "18"),
    ("**Total: $18**", "18"),
    ("**$18.00**", "18"),
    ("30% of 60 = 18", "18"),
    ("60 * 0.3 = 18", "18"),
    ("18°", "18"),
    ("18 kg", "18"),
    ("18/1", "18"),
    ("180/10", "18"),
    ("+$18", "18"),
    ("US$18", "18"),
    ("18 USD/day", "18"),
    ("It takes 18 days.", "18"),
    ("18:00", "18"),
    ("6:00 PM", "6"),
    ("6 PM", "6"),
    ("1.8e1", "18"),
    ("2.5 hours (2 hours 30 minutes)", "2.5"),
    ("150 minutes (2.5 hours)", "150"),
    ("the 3rd", "3"),
    ("5:00 PM", "5"),
    ("She should leave at 5:00 pm.", "5"),
    ("In 2023", "2023"),
    ("Janet finished 3rd with 18 points.", "18"),
]

WRONG_IN_THE_TAG = [
    # another number
    ("17", "18"),
    ("19", "18"),
    ("180", "18"),
    ("1.8", "18"),
    ("18.5", "18"),
    ("-18", "18"),
    ("$17", "18"),
    ("$180.00", "18"),
    ("\\boxed{17}", "18"),
    ("The answer is 17.", "18"),
    ("x = 17", "18"),
    ("9 * 2 = 17", "18"),
    ("16 - 3 - 4 = 9; 9 * 2 = 19", "18"),
    ("1,800", "18"),
    ("18,000", "18"),
    ("18k", "18"),
    ("0.18", "18"),
    ("$18.50", "18"),
    ("18 1/2", "18"),
    ("eighteen and a half", "18"),
    ("seventeen", "18"),
    ("nineteen", "18"),
    ("eighty", "18"),
    ("eighty-one", "18"),
    ("81", "18"),
    ("1 8", "18"),
    ("18 thousand", "18"),
    ("$18 million", "18"),
    ("1/18", "18"),
    ("18/2", "18"),
    ("9", "18"),
    ("16", "18"),
    ("Janet makes $9 every day.", "18"),
    ("9 * 2 = 36", "18"),
    ("$36", "18"),
    ("1,08", "1080"),
    ("108", "1080"),
    ("10,800", "1080"),
    ("1 08", "1080"),
    ("3", "3.5"),
    ("3 1/4", "3.5"),
    ("31/2", "3.5"),
    ("5", "-5"),
    ("- 5", "-5"),
    ("$5", "-5"),
    ("1.5", "1500000"),
    ("0.25", "25"),
    ("17", "18000"),
    ("0", "18"),
    # two answers: not an answer, whichever of them is the gold
    ("18 or 19", "18"),
    ("18 or 19", "19"),
    ("17 or 18", "18"),
    ("Either 18 or 19", "19"),
    ("18 dollars or 19 dollars", "18"),
    ("The answer is 18 or 19.", "18"),
    ("x = 18 or 19", "18"),
    ("18 (or 19)", "18"),
    ("18 and 19", "19"),
    ("18 apples and 2 oranges", "18"),
    ("18 apples and 2 oranges", "2"),
    ("The answer is 18 apples and 2 oranges.", "18"),
    ("between 17 and 18", "18"),
    ("between 17 and 18", "17"),
    ("17-18", "18"),
    ("17 to 18", "18"),
    ("17, 18", "18"),
    ("18, 19, 20", "18"),
    ("18\n19", "18"),
    ("18\n19", "19"),
    ("$18 per day, $126 per week", "18"),
    ("$18 per day, $126 per week", "126"),
    ("Janet makes $18 per day and $126 per week.", "126"),
    ("Janet makes $18 per day and $126 per week.", "18"),
    ("She is 18 and her brother is 20.", "20"),
    ("She is 18 and her brother is 20.", "18"),
    ("9 eggs and $18", "18"),
    ("18 apples at $2 each", "18"),
    ("18 apples at $2 each", "2"),
    ("2 hours 30 minutes", "2"),
    ("2 hours 30 minutes", "30"),
    ("5:30 PM", "5"),
    ("5:30", "30"),
    ("\\boxed{18 \\text{ or } 19}", "18"),
    ("Answer: 17\nAnswer: 18", "18"),
    ("Answer: 17\nAnswer: 18", "17"),
    ("17 eggs\n18 eggs", "18"),
    ("1. 18\n2. 19", "19"),
    ("$18 each day, or $126 per week", "126"),
    ("It takes 1 hour and 30 minutes", "30"),
    ("The number of eggs left is 9 and she makes $18", "18"),
    ("The number of eggs left is 9 and she makes $18", "9"),
    ("17? 18?", "18"),
    ("I think it's 17 or maybe 18", "18"),
    ("Tom has 18 and Sam has 20", "20"),
    ("from 17 to 18", "18"),
    ("18 / 100", "18"),
    ("The answer is 5 hours and 30 minutes", "5"),
    ("The answer is 5 hours and 30 minutes", "30"),
]


def _completions(content: str) -> list[str]:
    return [
        f"<reasoning>\n{REASONING}\n</reasoning>\n<answer>\n{content}\n</answer>",
        f"<reasoning>{REASONING}</reasoning> <answer>{content}</answer><|im_end|>",
    ]


@pytest.mark.parametrize(
    ("content", "gold", "right"),
    [(c, g, True) for c, g in RIGHT_IN_THE_TAG] + [(c, g, False) for c, g in WRONG_IN_THE_TAG],
)
def test_answer_tag_writings(content, gold, right):
    gold = gold_answer(gold)
    for text in _completions(content):
        assert same_number(extract_strict(text), gold) is right
        assert same_number(extract_flexible(text), gold) is right


E = "<reasoning>\n" + REASONING + "\n</reasoning>\n"

# Whole completions: (text, gold, strict right, flexible right).
COMPLETIONS = [
    (E + "<answer>\n18\n</answer>", "18", True, True),
    (E + "<answer>18</answer>", "18", True, True),
    (E + "<answer>\n18\n</answer><|im_end|>", "18", True, True),
    (E + "<answer>\n18\n</answer><|eot_id|>", "18", True, True),
    (E + "<answer>18</answer>\n<|im_start|>user\nAnd 20 more?", "18", True, True),
    (E + "<answer>18</answer>\nI hope this helps! The eggs cost $2, not 19.", "18", True, True),
    (E + "<answer>17</answer> wait, 9 * 2 is 18. <answer>18</answer>", "18", True, True),
    (E + "<answer>18</answer> wait <answer>17</answer>", "18", False, False),
    (
        "<reasoning>I put it as <answer>17</answer>. " + REASONING + "</reasoning>\n"
        "<answer>18</answer>",
        "18",
        True,
        True,
    ),
    (E + "<answer><answer>18</answer></answer>", "18", True, True),
    (E + "<answer>\n<answer>18\n</answer>", "18", True, True),
    (E.replace("</reasoning>", "") + "<answer>\n18\n</answer>", "18", True, True),
    (E + "<answer>\n```\n18\n```\n</answer>", "18", True, True),
    (E + "<answer>\n17\n</answer>", "18", False, False),
    # the last complete tag counts, even in a made-up next turn
    (
        E + "<answer>18</answer>\nHuman: Tom has 40 apples...\n<answer>42</answer>",
        "18",
        False,
        False,
    ),
    # no complete tag: strict has nothing, flexible reads what is there
    (E + "<answer>\n18", "18", False, True),
    (E + "<answer>\n18<|im_end|>", "18", False, True),
    (E + "<answer>\n17 or 18", "18", False, False),
    (E + "<answer>", "18", False, True),
    (E + "</answer>", "18", False, True),
    (REASONING + "\nThe answer is 18.", "18", False, True),
    (REASONING + "\nThe final answer is 18 dollars. Then she rests 2 hours.", "18", False, True),
    (REASONING + "\nThe answer is 18 or 19.", "18", False, False),
    (REASONING + "\n#### 18", "18", False, True),
    (REASONING + "\n#### 18\nQuestion 2: Tom has 5 apples", "18", False, True),
    (REASONING + "\nThe final answer is: $\\boxed{18}$", "18", False, True),
    (REASONING + " Janet makes \\(\\boxed{18}\\) dollars.", "18", False, True),
    (REASONING + "\nJanet makes $18 every day at the farmers' market.", "18", False, True),
    (REASONING.replace("9 * 2 = 18.", "9 * 2 = 18 dollars"), "18", False, True),
    (REASONING.replace("9 * 2 = 18.", "9 * 2 = "), "18", False, False),  # cut off
    ("Janet makes eighteen dollars a day.", "18", False, True),
    (
        "To find the total meters, 3 x 60 = 180 meters.\nThen 180 x 3 = 540 meters/week.\n"
        "The final answer is 540 meters.",
        "540",
        False,
        True,
    ),
    (
        "Regular pay: $10 x 40 = $400\nOvertime: $12 x 5 = $60\n"
        "Therefore, Eliza's total earnings for the week are $460.",
        "460",
        False,
        True,
    ),
    (
        "Regular pay: $10 × 40 = $40\nTherefore, Eliza's total earnings are $88.",
        "460",
        False,
        False,
    ),
    # a tag without a number leaves flexible to look elsewhere
    (E + "<answer></answer>", "18", False, True),
    (E + "<answer>\n...\n</answer>", "18", False, True),
    (E + "<answer>\nJanet makes money every day.\n</answer>", "18", False, True),
    (E + "<answer>\nNone\n</answer>", "18", False, True),
    (E + "<answer>see above</answer> so \\boxed{18}", "18", False, True),
    # a tag that does state a number wins, boxed or not
    ("\\boxed{18} " + E + "<answer>17</answer>", "18", False, False),
    (E + "<answer>\n17 or 18\n</answer>", "18", False, False),
    (E + "<answer>\n17 or 18\n</answer>", "17", False, False),
    # the tag name is exact
    (E + "<Answer>18</Answer>", "18", False, True),
]


@pytest.mark.parametrize(("text", "gold", "strict", "flexible"), COMPLETIONS)
def test_completions(text, gold, strict, flexible):
    assert same_number(extract_strict(text), gold) is strict
    assert same_number(extract_flexible(text), gold) is flexible


def test_gsm8k_solutions_last_lines_read_as_their_gold(gsm8k_dir):
    """The gold solutions end in sentences like the ones models write in the answer tag."""
    wrong = right = 0
    for name in ("train.jsonl", "test.jsonl"):
        with open(gsm8k_dir / name, encoding="utf-8") as rows:
            for line in rows:
                solution, gold = json.loads(line)["answer"].rsplit("####", 1)
                last = re.sub(r"<<[^>]*>>", "", solution.strip().splitlines()[-1])
                value = read_number(last)
                right += value == read_number(gold)
                wrong += value is not None and value != read_number(gold)
    # The rest are GSM8K's own quirks: last lines that state another quantity than the gold.
    assert right / (right + wrong) > 0.99


numbers = st.fractions(max_denominator=64).filter(lambda f: abs(f) < 10**9) | st.integers(
    -(10**9), 10**9
).map(Fraction)

_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def _words(n: int) -> str:
    """`n` (0 <= n < 10**6) in English words, the way models spell numbers out."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else "-" + _ONES[n % 10])
    if n < 1000:
        rest = "" if n % 100 == 0 else " and " + _words(n % 100)
        return _words(n // 100) + " hundred" + rest
    rest = "" if n % 1000 == 0 else " " + _words(n % 1000)
    return _words(n // 1000) + " thousand" + rest


def _writings(value: Fraction) -> list[str]:
    canonical = format_number(value)
    out = [
        canonical,
        f"{canonical}.",
        f"**{canonical}**",
        f"\\boxed{{{canonical}}}",
        f"x = {canonical}",
        f"The answer is {canonical}.",
        f"{canonical} dollars",
    ]
    if value.denominator == 1:
        n = value.numerator
        out += [f"{n:,}", f"{n}.00", f"${n:,}" if n >= 0 else f"-${-n:,}"]
        out += [f"{n:,}".replace(",", " "), f"{n:,}".replace(",", "\u202f")]
        out += [f"{n:,}".replace(",", "{,}"), f"She has {n:,}".replace(",", " ") + " eggs."]
        if 0 <= n < 10**6:
            out += [_words(n), f"She has {_words(n)} eggs."]
    else:
        out.append(f"{value.numerator}/{value.denominator}")
        out.append(f"\\frac{{{value.numerator}}}{{{value.denominator}}}")
        whole, part = divmod(abs(value), 1)
        if whole:  # a mixed number: `3 1/2`, `3\frac{1}{2}`
            sign = "-" if value < 0 else ""
            out.append(f"{sign}{whole} {part.numerator}/{part.denominator} hours")
            out.append(f"{sign}{whole}\\frac{{{part.numerator}}}{{{part.denominator}}}")
    return out


@given(numbers)
def test_any_supported_writing_round_trips(value):
    for text in _writings(value):
        assert read_number(text) == value, text
        assert normalize(normalize(text)) == normalize(text)


@pytest.mark.parametrize(
    ("gold", "expected"),
    [
        (42, "42"),
        (-3, "-3"),
        (7.5, "7.5"),
        (0.1, "0.1"),
        (1e20, "100000000000000000000"),
        (True, None),
        (float("nan"), None),
        (float("inf"), None),
        (None, None),
    ],
)
def test_json_numbers_are_gold_answers(gold, expected):
    assert gold_answer(gold) == expected
    assert normalize(gold) == expected


def _long(unit, size: int = 400_000) -> str:
    parts, total, i = [], 0, 0
    while total < size:
        parts.append(unit(i))
        total += len(parts[-1])
        i += 1
    return "".join(parts)


# Shapes that made the reading of one completion cost seconds (or a RecursionError) before the
# answer region was bounded; scripts/bench_answer_worst_case.py times many more.
ADVERSARIAL = {
    "1 = ": lambda i: "1 = ",
    "digits with spaces": lambda i: "1 000 ",
    "distinct numbers": lambda i: f"{i} ",
    "fractions": lambda i: f"{i}/{i + 1} ",
    "context": lambda i: f"in 2023 for {i} minutes out of {i} ",
    "answer cues": lambda i: f"answer {i} answer ",
    "number words": lambda i: "twenty one ",
    "prose": lambda i: "She sells the eggs at the market every day. ",
}


@pytest.mark.parametrize("shape", ADVERSARIAL)
def test_no_completion_costs_far_more_than_its_size(shape):
    """Reading is bounded, not linear: 100 times the text costs about the same, where reading
    all of it cost 100 times as much or more (seconds per row). Timed as a ratio within this
    run, the best of three, so a busy machine does not decide it; the absolute worst case is
    printed by scripts/bench_answer_worst_case.py."""
    import time

    def cost(size: int) -> float:
        body = _long(ADVERSARIAL[shape], size)
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for text in (body, f"<answer>\n{body}\n</answer>", f"\\boxed{{{body}}}"):
                extract_flexible(text)
                extract_strict(text)
                read_number(text)
            best = min(best, time.perf_counter() - started)
        return best

    assert cost(400_000) < 20 * cost(4_000) + 0.05, shape


def test_a_long_answer_is_read_from_its_last_sentences():
    reasoning = "She sells 16 eggs and eats 3. " * 200  # 6,000 characters, many numbers
    assert read_number(reasoning + "So she makes $18.") == 18
    assert extract_strict(f"<answer>{reasoning}So she makes $18.</answer>") == "18"
    assert extract_flexible("x " * 5_000 + "and then 7 more, so 18") == "18"


def test_an_answer_stating_hundreds_of_numbers_is_read_from_its_last_ones():
    working = "".join(f"Step {i}: {i} + {i} = {2 * i}. " for i in range(100))
    assert read_number(working + "The total is 18.") == 18
    assert read_number(working) == 198
    assert read_number("1 " * 500 + "2") is None
