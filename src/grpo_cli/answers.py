"""Final answers: find them in a completion, read them as numbers, and compare them by value.

One module serves the rewards, `grpo score` and `grpo eval`, so training and evaluation grade
alike. No library does this the way GRPO needs (fast, dependency-free, numeric, strict about
ambiguous answers), hence the hand-written rules below; tests/test_answers.py holds a table of
answer writings, as small instruct models produce them, that the rules must grade right.

Reading a number (`read_number`):
- Dropped: LaTeX wrappers and spacing (`$...$`, `\\(...\\)`, `\\text{}`, `\\,`, `^\\circ`, `\\%`),
  markdown emphasis and code marks (`~~struck~~` text goes with its marks), currency signs and
  codes, percent signs, a trailing period. Unicode minus signs and en dashes are minus signs.
- Thousands: `1,234`, `1{,}234`, `1\\,234` and thin or no-break spaces group digits; a plain
  space (`1 080`) does only when that grouped number is the only number in the text, so `3 4`
  is not 34.
- Values: `18.0` and `1.8e1` are 18; `3/4` and `\\frac{3}{4}` are 0.75; `3 1/2`,
  `2\\frac{1}{2}` and `3 and a half` are mixed numbers; `18k`, `2.5 million` and `3 hundred` are
  scaled; `$18 and 50 cents` is 18.5; `-$5` is -5 but a `- 18` bullet is 18. Number words
  (`eighteen`, `twenty-five`, `one hundred and five`) are read only when the text has no digit.
  A number written with over 200 characters is no number.
- Length: a text is read from its last sentences, those in its last 2,000 characters that hold
  its last 30 numbers; a `\\boxed{` left open for 2,000 characters is no box. An answer is a
  few sentences; reading more would cost far more than the text is long.
- An ordinal (`3rd`) or a clock time (`5:30`) never outvotes a plain number; alone, an ordinal
  is its number, `2:00 pm` is 2 and `5:30` is no answer.
- One distinct value, however often and whatever the words around it (`18 dollars`, `Janet makes
  $18 every day.`), is the answer.

Several different numbers are not an answer unless the others are clearly working or part of the
sentence around the answer. The first of these rules that applies decides, possibly "no answer":
  1. Box: the last `\\boxed{}` holds the answer.
  2. Asides: numbers in parentheses are working when a number stands outside them (`$18 (9 x
     $2)`); an aside that starts with "or" is a second answer, so no answer.
  3. Explanation: from "because", "Explanation:", "Note:", ... on, or from a dash right after a
     leading number (`18 - she sells 9 eggs`), text explains the number stated before it.
  4. Sentences: of several sentences with numbers, the last is read, else the first (answer
     first, reasons after). A line that is only a number (`17\\n18`) makes them alternatives.
  5. Equation: the part after the last `=` (or `equals`, `=>`, `->`, `≈`) is read as a result;
     when it is bare working (`$18 = 9 x $2`) the part before is read instead.
  6. Cues: "answer ..." twice with different numbers is no answer. Else the last cue decides:
     after "answer", "final", "total", "result" the rest of the sentence is read as a result;
     after "so", "therefore", "thus", "hence", "meaning", "which gives", ", making",
     ", leaving", ... as a clause; "total", "altogether", "in all" right after a number (`72
     clips altogether`) point back at that number.
  7. Clause: numbers in a leading clause (`Since she sells 9 eggs, ...`, `At $2 per egg, ...`)
     or a trailing one (`after ...`, `to travel 8 km`, `selling 9 eggs`) are givens. Else the one
     copula followed by a number (`the cost of 3 shirts is $18`; two copulas are two answers)
     is read as a result, unless bare working follows it (`$18, which is 9 x $2`: the part
     before). Else context numbers are dropped: list markers counting 1, 2, ..., `Step 2`,
     years after a preposition (`in 2023`), time spans after one (`for 50 minutes`), `out of
     20`, `of the 20`, `than 5`, `for 2 tubs`, `from 9 eggs`, `the 3 friends`.
  A result (after `=`, a copula or a cue) is read by the rules above, or else is its first
  number, unless a second number is joined to that one by "and", "or", "to", a comma or a dash
  (`18 apples and 2 oranges`, `18 or 19`, `17-18`): then it is no answer.
  Anything else is ambiguous and no answer: `18 apples at $2 each`, `2 hours 30 minutes`.

Finding an answer: strict = the content of the last complete `<answer>...</answer>` (tag name
configurable, exact case). Flexible = in order, the answer tag (the last complete one, or an
unclosed one opened after it), the last `\\boxed{}`, the last `#### N`, the last "the (final)
answer is N" sentence, the last number in the text. The first of these that is present and holds
a number decides: if it states several numbers that do not resolve, there is no answer (a
conflicting final answer is not rescued by an earlier number).
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

_INT = re.compile(r"-?\d{1,100}")
# `$18`, `18.00`, `18.`: the next most common answers.
_PLAIN = re.compile(r"\$?(\d{1,100}(?:\.\d{1,100})?)\.?")
_DIGIT = re.compile(r"\d")

# A number: optional sign, digits with optional thousands groups, optional decimals and exponent
# (or a bare decimal such as .5), then at most one of: a clock time's minutes, an ordinal suffix,
# a mixed number's fraction, a denominator; then an optional k or scale word.
_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e[-+]?\d{1,3}(?![a-z\d]))?|\.\d+"
_NUMBER = re.compile(
    rf"(?<![A-Za-z0-9_.])(?P<sign>[-+]?)(?P<num>{_NUM})"
    r"(?:(?P<time>:\d\d)(?!\d)"
    r"|(?P<ord>st|nd|rd|th)\b"
    r"|[ \t]+(?P<mixn>\d+)[ \t]*/[ \t]*(?P<mixd>\d+)(?![\d.,/])"
    rf"|\s*/\s*(?P<den>[-+]?(?:{_NUM})))?"
    r"(?:(?P<k>k)(?![a-z])|\s*(?P<scale>hundred|thousand|million|billion)\b)?",
    re.I,
)
_MAX_CHARS = 200  # a longer "number" is noise, and int() refuses over 4300 digits
# What one answer may cost. The rules above re-read parts of a text (sentences, clauses, what
# follows each cue), so their work grows faster than the text; an answer is a few sentences at
# most. A longer text is read from its last sentences: those in its last _MAX_ANSWER_CHARS
# characters, and of those the ones holding its last _MAX_NUMBERS numbers.
_MAX_ANSWER_CHARS = 2_000
_MAX_NUMBERS = 30
_DIGIT_RUN = re.compile(r"\d+")
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
# Grouping marks that are never anything else between digits: LaTeX `{,}` and `\,`, thin and
# no-break spaces.
_GROUP_MARK = re.compile(r"(?<=\d)(?:\{,\}|\\,|\\ |[\u2009\u202f\u00a0])(?=\d{3}(?!\d))")
_SPACE_HINT = re.compile(r"\d \d\d\d")
_SPACE_GROUPED = re.compile(r"(?<![\d.,])\d{1,3}(?: \d{3})+(?:\.\d+)?(?![\d,/]|\.\d)")
_CHARS = str.maketrans(
    {
        "\u2212": "-",
        "\u2013": "-",
        "\u2014": " - ",
        "\u00a0": " ",
        "\u2009": " ",
        "\u202f": " ",
        "\u00d7": " x ",
        "\u2248": "=",
        "\u21d2": "=",
        "\u2192": "=",
        "\uff04": "$",
    }
)
_STRUCK = re.compile(r"~~.*?~~", re.S)
_MIXED_FRAC = re.compile(r"(?<=\d)\s*\\[dt]?frac\s*\{")
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_LATEX_WRAPPERS = re.compile(
    r"\\(?:boxed|fbox|text|textbf|textit|mathrm|mathbf|mathit|mbox|operatorname)\s*\{([^{}]*)\}"
)
_LATEX_NOISE = re.compile(
    r"\\[,;:! ]|\\left|\\right|\\\(|\\\)|\\\[|\\\]|\^\s*\{?\\circ\}?|\\circ|\\(?:quad|qquad)|\\%"
    r"|\\(?:times|cdot)|\\(?:approx|Rightarrow|implies|to)\b|=>|->"
)
_NOISE_AS = {
    "\\times": " x ",
    "\\cdot": " x ",
    "=>": "=",
    "->": "=",
    "\\approx": "=",
    "\\Rightarrow": "=",
    "\\implies": "=",
    "\\to": "=",
}
_TIMES_SIGN = re.compile(r"(?<=[\d)])\s*\*\s*(?=[-+$\\(]*\.?\d)")  # `9 * 2`, not **bold**
_DECORATION_CHARS = str.maketrans(dict.fromkeys("$€£¥₹%*_`~#", " "))
_CURRENCY_CODES = re.compile(r"\b(?:USD|usd|EUR|eur|GBP|gbp|INR|inr|Rs\.?|rs\.?)\b")
_SIGNED_MONEY = re.compile(r"(?<![\w.])([-+])\\?[$€£¥₹]")  # -$5 is -5; a "- $5" bullet is not
_CENTS = re.compile(r"(\d+)(?:\s*dollars?)?\s+and\s+(\d{1,2})\s*cents?\b", re.I)
_AND_A_HALF = re.compile(r"(\d+)\s+and\s+a\s+half\b", re.I)

_UNIT_WORDS = [
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
_TEN_WORDS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_WORD_VALUES = {w: i for i, w in enumerate(_UNIT_WORDS)} | {
    w: 10 * i for i, w in enumerate(_TEN_WORDS, 2)
}
_WORD = "|".join(sorted([*_WORD_VALUES, *_SCALES], key=len, reverse=True))
_NUMBER_WORDS = re.compile(
    rf"\b(?:{_WORD})(?:(?:[ \t]*-[ \t]*|[ \t]+|(?<=hundred)[ \t]+and[ \t]+"
    rf"|(?<=thousand)[ \t]+and[ \t]+)(?:{_WORD}))*\b",
    re.I,
)

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ASIDE = re.compile(r"\(([^()]*)\)")
_HEDGE = re.compile(r"^\s*(?:or|maybe|possibly|alternatively)\b", re.I)
# Cues that name the answer (`the answer is 18`, `total: 18`) and conclusions (`so she makes $18`).
_CUE = re.compile(
    r"\b(?:(?P<noun>answer|final|total|result)|so|therefore|thus|hence|meaning|which\s+means"
    r"|that\s+means|altogether|in\s+(?:total|all)|which\s+gives|which\s+makes|which\s+leaves"
    r"|,\s*(?:making|giving|leaving|earning|bringing|resulting\s+in))\b",
    re.I,
)
_ANSWER_STATED = re.compile(
    r"\banswer\b(?:\s*(?:is|was|would\s+be|will\s+be|should\s+be))?\s*[:=]?([^\n.;]*\d[^\n;]*)",
    re.I,
)
_BACK_CUE = re.compile(r"^(?:total|altogether|in\s+(?:total|all))$", re.I)
_NUMBER_BEFORE = re.compile(r"\d(?:\s+[A-Za-z'-]+){0,3}\s*,?\s*$")
_DETERMINER_BEFORE = re.compile(r"\b(?:the|a|an|my|his|her|their|its|our|your)\s*$", re.I)
_FILLER = re.compile(r"(?:\s|\b(?:is|are|was|were|will\s+be|would\s+be|of)\b|[:=,])*", re.I)
_SENTENCE_END = re.compile(r"\.(?!\d)|[\n;!?]")
_COPULA = re.compile(
    r"\b(?:is|are|was|were|comes\s+to|amounts\s+to|will\s+be|would\s+be)\b|:(?!\d)", re.I
)
_EQUALS = re.compile(r"\b(?:is\s+)?equal\s+to\b|\bequals\b", re.I)
_STARTS_WITH_NUMBER = re.compile(r"\s*[-+]?\.?\d")
# After a stated value, a second number joined by "and", "or", "to", a comma or a dash is a
# second answer (`18 apples and 2 oranges`, `18 or 19`, `17-18`), not a trailing detail.
_SECOND_ANSWER = re.compile(
    r"(?:\s+[A-Za-z%]+){0,2}\s*(?:,|;|\band\b|\bor\b|\bto\b|-)\s*[-+]?\.?\d"
    r"|(?:\s+[A-Za-z%]+){0,2}\s*,?\s*\band\b[^.;\n]*\d"
    r"|.*\bor\b\s*(?:maybe\s+|possibly\s+|perhaps\s+)?[-+]?\.?\d",
    re.I | re.S,
)
# A bare computation (`9 eggs times $2`): the working, not the value it stands for.
_EXPRESSION = re.compile(
    r"[\s(]*[\d.,]+(?:\s+[a-z]+)?(?:[\s()]*(?:[-+x]|times|plus|minus|multiplied\s+by"
    r"|divided\s+by)[\s()]*[\d.,]+(?:[ \t]+[a-z]+)?)+[\s).]*",
    re.I,
)
# Numbers that set the scene rather than answer: list markers, `Step 2`, `in 2023`, `for 50
# minutes`, `out of 20`, `than 5`, `for 2 tubs`, `the 3 friends`.
_CONTEXT = re.compile(
    r"(?m:^[ \t]*(?P<item>\d+)[.)](?=\s))"
    r"|\bstep[ \t]+(?P<step>\d+)\b"
    r"|\b(?:in|since|by|until|from|of|before|after|during)[ \t]+(?:the[ \t]+year[ \t]+)?"
    r"(?P<year>1[89]\d\d|20\d\d)\b"
    r"|\b(?:for|in|after|over|within|during|every|each|per)[ \t]+(?:the[ \t]+"
    r"(?:next|first|last|past|following)[ \t]+)?(?P<span>\d+(?:\.\d+)?)[ \t]+(?:more[ \t]+)?"
    r"(?:second|minute|hour|day|week|month|year|night|weekend)s?\b"
    r"|\b(?:out[ \t]+of|of[ \t]+the|of[ \t]+all|than(?:[ \t]+the)?)[ \t]+(?P<of>\d+)"
    r"|\b(?:for|on|with|from)[ \t]+(?:the[ \t]+|all[ \t]+)?(?P<for>\d+)[ \t]+"
    r"(?!to\b|and\b|or\b)[a-z]"
    r"|(?:^|[,.][ \t]*)the[ \t]+(?P<the>\d+)[ \t]+[a-z]",
    re.I,
)
# Clauses around the stated number that only give its givens: `Since she sells 9 eggs, ...`,
# `... 48 minutes to travel 8 km`, `... by selling 9 eggs`.
_LEADING_CLAUSE = re.compile(
    r"^\s*(?:since|if|because|when|once|while|after|before|given(?:\s+that)?|as|at|with|for|by"
    r"|from|in|on|using)\b[^,]*\d[^,]*,",
    re.I,
)
_TRAILING_CLAUSE = re.compile(
    r"\b(?:because|since|after|before|when|if|while|until|given\s+that|in\s+order\s+to"
    r"|to[ \t]+(?!the\b|a\b|an\b)[a-z]+|(?!remaining|following|missing|existing|outstanding"
    r"|matching|working|living|upcoming|ongoing|coming|morning|evening|during)[a-z]{2,}ing)\b[^,;]*",
    re.I,
)
# An explanation after the answer: `18\n\nExplanation: ...`, `$18. This is because ...`.
_EXPLANATION = re.compile(
    r"(?:^|[\n.:]\s*)(?:explanation|reasoning|justification|working|work|solution|note"
    r"|this\s+is\s+because|that\s+is\s+because|that'?s\s+because|here'?s\s+how)\b"
    r"|\bbecause\b"
    r"|^\s*[-+]?[\d.,]+(?:[ \t]+[A-Za-z%]+){0,2}(?P<dash>[ \t]+-[ \t]+)(?=[A-Za-z]{2})",
    re.I,
)
_LIST_MARKER = re.compile(r"(?m)^[ \t]*(?:\d+[.)]|step[ \t]+\d+[:.]?)[ \t]+", re.I)
_SENTENCE = re.compile(r"[^.\n;!?]*(?:\.\d[^.\n;!?]*)*")
_WORD_RE = re.compile(r"[A-Za-z]{2,}")

_THE_ANSWER_IS = re.compile(
    r"\banswer\s*(?:(?:is|was|would\s+be|will\s+be|should\s+be)\s*[:=]?|[:=])\s*", re.I
)
_CHAT_TOKEN = "<|"

_Token = tuple[Fraction | None, int, int, str]  # value, start, end, kind (num / ord / other)


def read_number(text: str | int | float | None) -> Fraction | None:
    """The single number a piece of text states, or None if it states none or several. A JSON
    number (int or float, not bool) is its own value."""
    if text is None or isinstance(text, bool):
        return None
    if isinstance(text, int | float):
        return Fraction(repr(text)) if math.isfinite(text) else None
    text = text.strip()
    if _INT.fullmatch(text):  # the common case, kept fast
        return Fraction(int(text))
    plain = _PLAIN.fullmatch(text)
    if plain:
        return Fraction(plain[1])
    text = _tail(text)
    boxed = last_boxed(text)
    if boxed is not None and _has_number(boxed):
        return read_number(boxed)
    return _read(_last_numbers(_clean(text)))


def _last_numbers(text: str) -> str:
    """The text from the sentence that holds its last _MAX_NUMBERS numbers, or from its
    _MAX_NUMBERS-th last number when no sentence starts before it."""
    runs = [m.start() for m in _DIGIT_RUN.finditer(text)]
    if len(runs) <= _MAX_NUMBERS:
        return text
    first, before = runs[-_MAX_NUMBERS], runs[-_MAX_NUMBERS - 1]
    end = _SENTENCE_END.search(text, before, first)
    return text[end.end() if end else first :]


def _tail(text: str) -> str:
    """The text's last _MAX_ANSWER_CHARS characters, from a sentence start where one is near."""
    if len(text) <= _MAX_ANSWER_CHARS:
        return text
    start = len(text) - _MAX_ANSWER_CHARS
    end = _SENTENCE_END.search(text, start, start + _MAX_ANSWER_CHARS // 2)
    if end is not None:
        return text[end.end() :]
    while start < len(text) and not text[start].isspace():  # no number is cut in two
        start += 1
    return text[start:]


def normalize(text: str | int | float | None) -> str | None:
    """An answer in canonical form (`"1,080"` -> `"1080"`, `"$18.50"` -> `"18.5"`), or None."""
    value = read_number(text)
    return None if value is None else format_number(value)


def format_number(value: Fraction) -> str:
    """`Fraction(18)` -> `"18"`, `Fraction(3, 4)` -> `"0.75"`, `Fraction(1, 3)` -> `"1/3"`."""
    if value.denominator == 1:
        return str(value.numerator)
    den = value.denominator
    twos = fives = 0
    while den % 2 == 0:
        den //= 2
        twos += 1
    while den % 5 == 0:
        den //= 5
        fives += 1
    if den != 1:
        return f"{value.numerator}/{value.denominator}"
    places = max(twos, fives)
    scaled = abs(value.numerator) * 10**places // value.denominator
    sign = "-" if value < 0 else ""
    whole, frac = divmod(scaled, 10**places)
    return f"{sign}{whole}.{str(frac).rjust(places, '0').rstrip('0')}"


def same_number(answer: str | None, gold: str | None) -> bool:
    """Whether two answers state the same number (by value: `18.0` equals `18`)."""
    a, b = read_number(answer), read_number(gold)
    return a is not None and a == b


def gold_answer(text: str | int | float | None) -> str | None:
    """A gold answer in canonical form: GSM8K's `"...#### 1,080"`, a bare number in text, or a
    JSON number (`"answer": 42`)."""
    if not isinstance(text, str):
        return normalize(text)
    if "####" in text:
        text = text.rsplit("####", 1)[1]
    return normalize(text)


def tagged(text: str, tag: str = "answer") -> str | None:
    """The content of the last complete `<tag>...</tag>`, or None."""
    close = text.rfind(f"</{tag}>")
    if close == -1:
        return None
    open_ = text.rfind(f"<{tag}>", 0, close)
    if open_ == -1:
        return None
    return text[open_ + len(tag) + 2 : close].strip()


def extract_strict(text: str, tag: str = "answer") -> str | None:
    """The canonical number in the answer tag, or None (no tag, no number, several numbers)."""
    return normalize(tagged(text, tag))


def extract_flexible(text: str, tag: str = "answer") -> str | None:
    """The canonical final answer wherever the completion states it (see the module docstring)."""
    for find in (
        lambda t: _final_tag(t, tag),
        last_boxed,
        _last_hashes,
        _last_answer_phrase,
    ):
        found = find(text)
        if found is None:
            continue
        value = read_number(found)
        if value is not None:
            return format_number(value)
        if _has_number(_tail(found)):  # a final answer that states several numbers: no answer
            return None
    nums = [t for t in _tokens(_clean(_tail(text))) if t[3] == "num"]
    last = nums[-1][0] if nums else None  # a "num" token always has a value
    return format_number(last) if last is not None else None


def _final_tag(text: str, tag: str) -> str | None:
    """The last tag's content: up to its close, or to the end when it was never closed."""
    open_ = text.rfind(f"<{tag}>")
    if open_ == -1:
        return None
    close = text.find(f"</{tag}>", open_)
    if close == -1:
        return text[open_ + len(tag) + 2 :].split(_CHAT_TOKEN, 1)[0].strip()
    return text[open_ + len(tag) + 2 : close].strip()


def _has_number(text: str) -> bool:
    return _DIGIT.search(text) is not None or _NUMBER_WORDS.search(text) is not None


def _clean(text: str) -> str:
    # Each pass runs only where its characters occur: this is the reward's hot path.
    if not text.isascii():
        text = _GROUP_MARK.sub(",", text).translate(_CHARS)
    if "~~" in text:
        text = _STRUCK.sub(" ", text)
    if "\\" in text:
        text = _GROUP_MARK.sub(",", text)
        text = _MIXED_FRAC.sub(r" \\frac{", text)  # 2\frac{1}{2} is 2 1/2, not 21/2
        text = _FRAC.sub(r"\1/\2", text)
        for _ in range(3):  # nested wrappers: \boxed{\text{18}}
            text, count = _LATEX_WRAPPERS.subn(r"\1", text)
            if not count:
                break
    text = _LATEX_NOISE.sub(lambda m: _NOISE_AS.get(m[0], " "), text)
    if "qual" in text:
        text = _EQUALS.sub("=", text)
    if "{,}" in text:
        text = _GROUP_MARK.sub(",", text)
    if "-" in text or "+" in text:
        text = _SIGNED_MONEY.sub(r"\1", text)
    if "*" in text:
        text = _TIMES_SIGN.sub(" x ", text)
    text = text.translate(_DECORATION_CHARS)
    text = _CURRENCY_CODES.sub(" ", text)
    if not _DIGIT.search(text):
        text = _NUMBER_WORDS.sub(_words_to_digits, text)
    if "and" in text:
        text = _CENTS.sub(lambda m: f"{m[1]}.{m[2].rjust(2, '0')}", text)
        text = _AND_A_HALF.sub(r"\1 1/2", text)
    return text.strip().rstrip(".").strip()


def _words_to_digits(match: re.Match[str]) -> str:
    words = re.split(r"[\s-]+", match[0].lower())
    if len(words) > 12:  # no number is written so; and `hundred hundred ...` would overflow
        return match[0]
    total = current = 0
    for word in words:
        if word == "and" or not word:
            continue
        if word in _WORD_VALUES:
            current += _WORD_VALUES[word]
        elif word == "hundred":
            current = (current or 1) * 100
        else:
            total += (current or 1) * _SCALES[word]
            current = 0
    return str(total + current)


def _tokens(text: str) -> list[_Token]:
    grouped = _SPACE_GROUPED.search(text) if _SPACE_HINT.search(text) else None
    if (
        grouped
        and not _DIGIT.search(text, 0, grouped.start())
        and not _DIGIT.search(text, grouped.end())
    ):
        text = text[: grouped.start()] + grouped[0].replace(" ", ",") + text[grouped.end() :]
    out: list[_Token] = []
    pos = 0
    while match := _NUMBER.search(text, pos):
        pos = match.end()
        negative = match["sign"] == "-"
        num = match["num"].replace(",", "")
        if (match["time"] and match["time"] != ":00") or len(match[0]) > _MAX_CHARS:
            # `5:30` is a time, not a number; `2:00 pm` is the hour 2. Hundreds of digits are
            # no answer either (and int() refuses thousands).
            out.append((None, match.start("num"), pos, "other"))
            continue
        exact = int(num) if num.isdigit() else None
        value = Fraction(num if exact is None else exact)  # int: Fraction(str) is slow
        if match["ord"]:
            out.append((value, match.start("num"), pos, "ord"))
            continue
        if match["mixn"]:
            mixn, mixd = int(match["mixn"]), int(match["mixd"])
            if not (exact is not None and 0 < mixn < mixd):  # `3 4/2` is two numbers
                pos = match.end("num")
                out.append((-value if negative else value, match.start("num"), pos, "num"))
                continue
            value += Fraction(mixn, mixd)
        elif match["den"] is not None:
            den = Fraction(match["den"].replace(",", ""))
            if den:  # `5/0` is no fraction; the numerator alone is what was written first
                value /= den
        if match["k"]:
            value *= 1000
        elif match["scale"]:
            value *= _SCALES[match["scale"].lower()]
        out.append((-value if negative else value, match.start("num"), pos, "num"))
    return out


def _settle(tokens: list[_Token]) -> tuple[bool, Fraction | None]:
    """(decided, value): one value among plain numbers, or no numbers at all, decides."""
    values = {t[0] for t in tokens if t[3] == "num"}
    if len(values) == 1:
        return True, values.pop()
    if values:
        return False, None
    ordinals = {t[0] for t in tokens if t[3] == "ord"}
    return True, ordinals.pop() if len(ordinals) == 1 else None


def _read(text: str) -> Fraction | None:
    tokens = _tokens(text)
    decided, value = _settle(tokens)
    if decided:
        return value
    if "(" in text:
        outside = _ASIDE.sub(" ", text)
        if outside != text and _DIGIT.search(outside):
            if any(_HEDGE.match(aside) for aside in _ASIDE.findall(text)):
                return None
            return _read(outside)
    explanation = _EXPLANATION.search(text)
    if explanation:
        start = explanation.start("dash" if explanation["dash"] else 0)  # `18 - she sells ...`
        if _DIGIT.search(text, 0, start):
            return _read(text[:start])
    value = _by_sentence(text)
    if value is not None:
        return value
    if "=" in text:
        head, tail = text.rsplit("=", 1)
        if _DIGIT.search(tail):
            if _EXPRESSION.fullmatch(tail) and _DIGIT.search(head):
                return _read(head)
            return _result(tail)
    found, value = _by_cue(text)
    if found:
        return value
    return _clause(text, tokens)


def _by_sentence(text: str) -> Fraction | None:
    """Several sentences with numbers: the last one concludes; or the first states the answer
    and the rest explains it. Lines that are only a number are alternatives, not sentences."""
    pieces = [p for p in _SENTENCE.findall(_LIST_MARKER.sub("", text)) if _DIGIT.search(p)]
    if len(pieces) < 2:
        return None
    for piece in pieces:
        if len(_tokens(piece)) == 1 and len(_WORD_RE.findall(piece)) <= 1:
            return None
    for piece in (pieces[-1], pieces[0]):
        value = _read(piece)
        if value is not None:
            return value
    return None


def _result(text: str) -> Fraction | None:
    """What follows `=`, a copula or an answer cue: resolved, or else its first number."""
    tokens = _tokens(text)
    decided, value = _settle(tokens)
    if decided:
        return value
    found, value = _by_cue(text, back=False)  # `= 13 pieces of $50 and $100 bills in all`
    if found:
        return value
    value = _clause(text, tokens)
    if value is not None:
        return value
    first = tokens[0]
    if (
        first[3] == "num"
        and _STARTS_WITH_NUMBER.match(text)
        and not _SECOND_ANSWER.match(text, first[2])
    ):
        return first[0]
    return None


def _by_cue(text: str, back: bool = True) -> tuple[bool, Fraction | None]:
    """(found, value) from the last answer cue that is followed or preceded by a number."""
    stated = {_result(m[1]) for m in _ANSWER_STATED.finditer(text)}
    if len(stated) > 1:  # `Answer: 17 ... Answer: 18`: two answers
        return True, None
    for cue in reversed(list(_CUE.finditer(text))):
        before = text[: cue.start()]
        if (
            _BACK_CUE.match(cue[0])
            and _NUMBER_BEFORE.search(before)
            and not _DETERMINER_BEFORE.search(before)
        ):  # `72 clips altogether` points back at 72
            if not back:
                continue
            nums = [t for t in _tokens(_SENTENCE_END.split(before)[-1]) if t[3] == "num"]
            if nums:
                return True, nums[-1][0]
        rest = _SENTENCE_END.split(text[cue.end() :], 1)[0]
        if _DIGIT.search(rest):
            if cue["noun"]:
                filler = _FILLER.match(rest)
                assert filler is not None  # the pattern matches the empty string too
                return True, _result(rest[filler.end() :])
            return True, _clause(rest, _tokens(rest))
    return False, None


def _clause(text: str, tokens: list[_Token]) -> Fraction | None:
    """One sentence's number: a single value, without the givens around it, or the copula's."""
    decided, value = _settle(tokens)
    if decided:
        return value
    nums = [t for t in tokens if t[3] == "num"]
    leading = _LEADING_CLAUSE.match(text)  # `Since she has 9 eggs, she makes $18`
    if leading:
        nums = [t for t in nums if t[1] >= leading.end()]
    if nums:
        trailing = _TRAILING_CLAUSE.search(text, nums[0][2])  # `48 minutes to travel 8 km`
        if trailing:
            nums = [t for t in nums if not trailing.start() <= t[1] < trailing.end()]
    decided, value = _settle(nums)
    if decided and value is not None:
        return value
    if nums and len(nums) < len(tokens):
        text = text[: nums[-1][2]]
    copulas = [m for m in _COPULA.finditer(text) if _STARTS_WITH_NUMBER.match(text, m.end())]
    if len(copulas) == 1:  # two (`she is 18 and he is 20`) are two answers
        after = text[copulas[0].end() :]
        if _EXPRESSION.fullmatch(_SENTENCE_END.split(after, 1)[0]):  # `$18, which is 9 x $2`
            before = text[: copulas[0].start()]
            return _clause(before, _tokens(before))
        value = _result(after)
        if value is not None:
            return value
    context = set()
    items = []
    for m in _CONTEXT.finditer(text):
        group = m.lastgroup
        if group == "item":
            items.append(m)
        elif group is not None:
            context.add(m.start(group))
    # Line-start numbers are list markers only when they count 1, 2, ...: `18. She sells 9 eggs`
    # starts with its answer.
    if [int(m["item"]) for m in items] == list(range(1, len(items) + 1)):
        context.update(m.start("item") for m in items)
    decided, value = _settle([t for t in nums if t[1] not in context])
    return value if decided else None


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (braces inside it balanced), or None; a box that
    stays open for over _MAX_ANSWER_CHARS characters is no box."""
    end = len(text)
    while True:  # from the end: the last box is found without reading the rest
        at = max(text.rfind("\\boxed", 0, end), text.rfind("\\fbox", 0, end))
        if at == -1:
            return None
        opener = _BOXED.match(text, at)
        if opener is not None:
            break
        end = at
    depth, i = 0, opener.end() - 1
    for j in range(i, min(len(text), i + _MAX_ANSWER_CHARS)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None


def _last_hashes(text: str) -> str | None:
    if "####" not in text:
        return None
    rest = text.rsplit("####", 1)[1].strip()
    return rest.partition("\n")[0].rstrip("\r") if rest else None


def _last_answer_phrase(text: str) -> str | None:
    lowered = text.encode("ascii", "replace").lower()  # one byte a character: same positions
    end = len(text)
    while (at := lowered.rfind(b"answer", 0, end)) != -1:  # from the end: the last one decides
        phrase = _THE_ANSWER_IS.match(text, at)
        if phrase is not None:
            rest = text[phrase.end() :]
            return _SENTENCE_END.split(rest, 1)[0] if rest.strip() else None
        end = at
    return None
