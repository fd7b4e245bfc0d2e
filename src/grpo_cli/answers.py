"""Final answers: find them in a completion, read them as numbers, and compare them by value.

One module serves the rewards, `grpo score` and `grpo eval`, so training and evaluation grade
alike. No library does this the way GRPO needs (fast, dependency-free, numeric, strict about
ambiguous answers), hence the hand-written rules below.

Reading an answer (`read_number`):
- Wrappers and decoration are dropped: LaTeX (`$...$`, `\\(...\\)`, `\\boxed{}`, `\\text{}`,
  `\\frac{a}{b}`, `\\%`, `\\,`), markdown emphasis and code marks, currency signs and codes,
  percent signs, a trailing period, thousands separators (`1,234`), unicode minus signs.
- Words around a single number are ignored: `18 dollars`, `$18.00 per hour`, `x = 18`.
- `18.0` equals `18`; `3/4` equals `0.75`; negatives and decimals are read as such;
  `2.5 million` is 2500000.
- Several different numbers are NOT an answer, with two exceptions where the others are clearly
  part of a sentence: an equation (`5 + 3 = 8` -> the number after the last `=`), and an answer
  cue (`... so the answer is 8`, `total: 8` -> the number right after the last cue). Anything else
  (`18 apples at $2 each`, `2 hours 30 minutes`) is ambiguous and reads as no answer.

Finding an answer: strict = the content of the last complete `<answer>...</answer>` (tag name
configurable); flexible = in order, the answer tag, the last `\\boxed{}`, the last `#### N`, the
last "the (final) answer is N", the last number in the text.
"""

from __future__ import annotations

import re
from fractions import Fraction

_INT = re.compile(r"-?\d+")
# A number: optional sign, digits with optional thousands groups, optional decimals; or a bare
# decimal such as .5; optionally a fraction a/b.
_NUM = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+"
_NUMBER = re.compile(
    rf"(?<![\w.])(?P<num>{_NUM})(?:\s*/\s*(?P<den>{_NUM}))?(?:\s*(?P<scale>thousand|million|billion)\b)?",
    re.I,
)
_SCALES = {"thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_LATEX_WRAPPERS = re.compile(r"\\(?:boxed|text|textbf|mathrm|mathbf|mbox|fbox)\s*\{([^{}]*)\}")
_LATEX_NOISE = re.compile(
    r"\\[,;:! ]|\\left|\\right|\\\(|\\\)|\\\[|\\\]|\^\s*\{?\\circ\}?|\\circ|\\(?:quad|qquad)|\\%"
)
_DECORATION = re.compile(r"[$€£¥₹%*_`~]|\b(?:usd|eur|gbp|rs\.?|inr)\b", re.I)
_SIGNED_MONEY = re.compile(r"([-+])\s*\\?[$€£¥₹]\s*")
_MINUS = str.maketrans({"\u2212": "-", "\u2013": "-", "\u2014": "-", "\u00a0": " ",
                        "\u2009": " ", "\u202f": " "})  # fmt: skip
_CUE = re.compile(
    r"(?:answer|total|result|altogether)\b[^0-9\-+.=]{0,20}?(?:is|=|:|of|be)?\s*"
    r"(?=[-+$€£¥₹]?\s*[\d.])",
    re.I,
)
_THE_ANSWER_IS = re.compile(r"answer\s*(?:is|:|=)\s*", re.I)


def read_number(text: str | None) -> Fraction | None:
    """The single number a piece of text states, or None if it states none or several."""
    if text is None:
        return None
    text = text.strip()
    if _INT.fullmatch(text):  # the common case, kept fast
        return Fraction(int(text))
    cleaned = _clean(text)
    values = _numbers(cleaned)
    if not values:
        return None
    if len(set(values)) == 1:
        return values[0]
    if "=" in cleaned:
        return _single(cleaned.rsplit("=", 1)[1])
    cues = list(_CUE.finditer(cleaned))
    if cues:
        return _first(cleaned[cues[-1].end() :])
    return None


def normalize(text: str | None) -> str | None:
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


def gold_answer(text: str | None) -> str | None:
    """A gold answer in canonical form: GSM8K's `"...#### 1,080"` or a bare number."""
    if text is None:
        return None
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
        lambda t: tagged(t, tag),
        _last_boxed,
        _last_hashes,
        _last_answer_phrase,
    ):
        found = normalize(find(text))
        if found is not None:
            return found
    matches = list(_NUMBER.finditer(_clean(text)))  # only the last one is converted
    return format_number(_value(matches[-1])) if matches else None


def _clean(text: str) -> str:
    text = text.translate(_MINUS)
    text = _FRAC.sub(r"\1/\2", text)
    for _ in range(3):  # nested wrappers: \boxed{\text{18}}
        text, count = _LATEX_WRAPPERS.subn(r"\1", text)
        if not count:
            break
    text = _LATEX_NOISE.sub(" ", text)
    text = _SIGNED_MONEY.sub(r"\1", text)  # -$5 is -5
    text = _DECORATION.sub(" ", text)
    return text.strip().rstrip(".").strip()


def _numbers(cleaned: str) -> list[Fraction]:
    return [_value(m) for m in _NUMBER.finditer(cleaned)]


def _value(match: re.Match[str]) -> Fraction:
    value = Fraction(match["num"].replace(",", ""))
    if match["den"] is not None:
        den = Fraction(match["den"].replace(",", ""))
        if den:  # `5/0` is no fraction; the numerator alone is what was written first
            value /= den
    if match["scale"]:
        value *= _SCALES[match["scale"].lower()]
    return value


def _single(cleaned: str) -> Fraction | None:
    values = _numbers(cleaned)
    return values[0] if values and len(set(values)) == 1 else None


def _first(cleaned: str) -> Fraction | None:
    match = _NUMBER.search(cleaned)
    return _value(match) if match else None


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start == -1:
        return None
    depth, i = 0, start + len("\\boxed{") - 1
    for j in range(i, len(text)):
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
    return rest.splitlines()[0] if rest else None


def _last_answer_phrase(text: str) -> str | None:
    matches = list(_THE_ANSWER_IS.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end() :]
    match = _NUMBER.search(_clean(rest.split("\n", 1)[0]))
    return match.group(0) if match else None
