"""Worst-case grading time of one completion: adversarial texts of many shapes and sizes.

Each completion is graded the full way, as training and `grpo score` do: the strict answer, the
flexible answer and every built-in reward (correctness strict and flexible included). A shape is
written both bare and inside the answer tag, at each size; the slowest row is what a sampled
completion can cost the reward step. A case that runs past the limit is stopped and reported.

    python scripts/bench_answer_worst_case.py [SIZE ...]   (default sizes: 32000 400000 chars)
    target: every row well under 0.1 s
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import time
from collections.abc import Callable

from grpo_cli.answers import extract_flexible, extract_strict
from grpo_cli.rewards.builtin import gold_value, strict_value
from grpo_cli.rewards.registry import registered

LIMIT_S = 30.0  # a case still running after this is stopped and reported as "> 30 s"


def _repeat(unit: str | Callable[[int], str]) -> Callable[[int], str]:
    """A text of about `size` characters: `unit` repeated, or `unit(i)` for i = 0, 1, ..."""

    def make(size: int) -> str:
        if isinstance(unit, str):
            return (unit * (size // len(unit) + 1))[:size]
        parts, total, i = [], 0, 0
        while total < size:
            parts.append(unit(i))
            total += len(parts[-1])
            i += 1
        return "".join(parts)

    return make


SHAPES: dict[str, Callable[[int], str]] = {
    "prose": _repeat("She sells the eggs at the market every day. "),
    "1 = ": _repeat("1 = "),
    "distinct numbers": _repeat(lambda i: f"{i} "),
    "i = i+1 equations": _repeat(lambda i: f"{i} = {i + 1} "),
    "sum chain": _repeat(lambda i: f"{i} + "),
    "digits": _repeat("1"),
    "digits with commas": _repeat("1,000,"),
    "digits with spaces": _repeat("1 000 "),
    "decimals": _repeat(lambda i: f"{i}.5."),
    "fractions": _repeat(lambda i: f"{i}/{i + 1} "),
    "mixed numbers": _repeat(lambda i: f"{i} 1/2 "),
    "times": _repeat(lambda i: f"{i}:30 "),
    "ordinals": _repeat(lambda i: f"{i}th "),
    "scaled": _repeat(lambda i: f"{i} million "),
    "number words": _repeat("twenty one "),
    "number words and": _repeat("one hundred and "),
    "sentences with numbers": _repeat(lambda i: f"She has {i} eggs. "),
    "lines of numbers": _repeat(lambda i: f"{i}\n"),
    "list items": _repeat(lambda i: f"{i}. step {i}\n"),
    "parentheses": _repeat("("),
    "asides": _repeat(lambda i: f"{i} ({i + 1}) "),
    "nested parentheses": lambda n: "(" * (n // 3) + "1" + ")" * (n // 3),
    "or asides": _repeat(lambda i: f"{i} (or {i + 1}) "),
    "boxed openers": _repeat("\\boxed{"),
    "boxed numbers": _repeat(lambda i: f"\\boxed{{{i}}} "),
    "nested braces": lambda n: "\\boxed{" + "{" * (n // 2) + "1" + "}" * (n // 2),
    "frac": _repeat(lambda i: f"\\frac{{{i}}}{{2}} "),
    "text wrappers": _repeat("\\text{\\textbf{1}} "),
    "hashes": _repeat("#### "),
    "hashes numbers": _repeat(lambda i: f"#### {i}\n"),
    "answer openers": _repeat("<answer>"),
    "answer tags": _repeat(lambda i: f"<answer>{i}</answer>"),
    "answer is": _repeat(lambda i: f"The answer is {i}. "),
    "answer cues": _repeat(lambda i: f"answer {i} answer "),
    "so cues": _repeat(lambda i: f"so {i}, "),
    "total cues": _repeat(lambda i: f"{i} total "),
    "copulas": _repeat(lambda i: f"it is {i} "),
    "because": _repeat(lambda i: f"{i} because "),
    "dashes": _repeat(lambda i: f"{i} - "),
    "clauses": _repeat(lambda i: f"Since {i}, after {i} selling {i}, "),
    "context": _repeat(lambda i: f"in 2023 for {i} minutes out of {i} "),
    "money": _repeat(lambda i: f"-${i} and {i} cents "),
    "equals words": _repeat(lambda i: f"{i} equals "),
    "struck": _repeat("~~1~~ "),
    "stars": _repeat("1 * "),
    "latex noise": _repeat("\\left( 1 \\right) \\times "),
    "unicode": _repeat("1\u2009000 \u2212 2 \u00d7 "),
    "format tags": _repeat(lambda i: f"\n</reasoning>\n<answer>\n{i}"),
}


def wrap(shape: str, text: str, tagged: bool) -> str:
    if not tagged:
        return text
    return f"<reasoning>\nwork\n</reasoning>\n<answer>\n{text}\n</answer>\n"


def grade(text: str) -> None:
    """Everything training and `grpo score` compute for one completion."""
    strict_value.cache_clear()
    extract_strict(text)
    extract_flexible(text)
    for name, info in registered().items():
        extra = {"flexible": True} if name == "correctness" else {}
        info.fn([text], answer=["#### 18"], **extra)
        if name == "correctness":
            info.fn([text], answer=["#### 18"])
    gold_value("#### 18")


def _timed(text: str, queue: mp.Queue) -> None:
    started = time.perf_counter()
    try:
        grade(text)
    except Exception as exc:  # e.g. RecursionError: reported as the case's result
        queue.put(type(exc).__name__)
        return
    queue.put(time.perf_counter() - started)


def time_case(text: str) -> float | str | None:
    """Seconds to grade `text`, the name of the error it raised, or None past LIMIT_S."""
    queue: mp.Queue = mp.get_context("fork").Queue()
    worker = mp.get_context("fork").Process(target=_timed, args=(text, queue))
    worker.start()
    worker.join(LIMIT_S)
    if worker.is_alive():
        worker.kill()
        worker.join()
        return None
    return queue.get()


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [32_000, 400_000]
    grade("<answer>18</answer>")  # imports and compiled patterns, outside the timings
    worst: dict[int, tuple[float, str, str]] = {}  # size -> (cost, shown, label)
    for size in sizes:
        for shape, make in SHAPES.items():
            text = make(size)
            for tagged in (False, True):
                label = f"{shape} ({'in answer tag' if tagged else 'bare'})"
                seconds = time_case(wrap(shape, text, tagged))
                if isinstance(seconds, str):
                    shown, label = "    error", f"{label}: {seconds}"
                elif seconds is None:
                    shown = f"> {LIMIT_S:.0f} s"
                else:
                    shown = f"{seconds * 1000:9.1f} ms"
                print(f"{size:>8} chars  {label:<42} {shown}", flush=True)
                cost = seconds if isinstance(seconds, float) else float("inf")
                if cost >= worst.get(size, (-1.0, "", ""))[0]:
                    worst[size] = (cost, shown.strip(), label)
    for size, (_, shown, label) in worst.items():
        print(f"worst at {size} chars: {shown} ({label})")


if __name__ == "__main__":
    main()
