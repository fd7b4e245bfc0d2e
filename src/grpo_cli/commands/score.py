"""`grpo score INPUT.jsonl`: grade completions with the reward set a config trains on.

Rows stream through in chunks, so memory stays flat however long the file is. The output file is
written beside its final name and renamed when every row is scored: a failure leaves no
half-written file and keeps an existing one.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from grpo_cli.config.schema import RewardSpec
from grpo_cli.errors import GrpoError
from grpo_cli.files import open_temporary
from grpo_cli.grading import grade
from grpo_cli.rewards.builtin import DEFAULT_REWARDS, completion_problem, completion_text
from grpo_cli.rewards.runner import BoundReward, RewardContext, RewardError, build_rewards

CHUNK_ROWS = 1024
# Columns grpo score adds; an input row that already has them is overwritten in the output.
ADDED = ("rewards", "reward", "extracted", "correct", "correct_flexible")


@dataclass
class Summary:
    """Running totals: constant memory, whatever the number of rows."""

    names: list[str]
    rows: int = 0
    correct: int = 0
    correct_flexible: int = 0
    formatted: int = 0
    unreadable_gold: int = 0
    reward_total: float = 0.0
    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, row: dict[str, Any], formatted: bool, gold_ok: bool) -> None:
        self.rows += 1
        self.correct += row["correct"]
        self.correct_flexible += row["correct_flexible"]
        self.formatted += formatted
        self.unreadable_gold += not gold_ok
        self.reward_total += row["reward"]
        for name, value in row["rewards"].items():
            if value is not None:
                self.sums[name] = self.sums.get(name, 0.0) + value
                self.counts[name] = self.counts.get(name, 0) + 1

    def share(self, count: int) -> str:
        return f"{count / self.rows:.2%}" if self.rows else "-"

    def mean(self, name: str) -> str:
        return f"{self.sums[name] / self.counts[name]:.4f}" if self.counts.get(name) else "-"


def score(
    input_path: str,
    config_path: Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    output_path: Path | None = None,
) -> Summary:
    """Score every row of `input_path` ('-' for stdin); rows to `output_path` or stdout."""
    rewards, context = _rewards(config_path, overrides)
    names = [r.info.name for r in rewards]
    summary = Summary(names)
    label = "stdin" if input_path == "-" else input_path
    if output_path is not None and input_path != "-" and _same_file(Path(input_path), output_path):
        raise GrpoError(
            f"--output {output_path} is the input file", "write the scores to another file"
        )
    with _open_input(input_path) as source, _open_output(output_path) as sink:
        for first, chunk in _chunks(source, label):
            for row in score_rows(chunk, rewards, context, summary, first, label):
                sink.write(json.dumps(row, ensure_ascii=False) + "\n")
    report(summary, sys.stderr if output_path is None else sys.stdout, label, output_path)
    return summary


def score_rows(
    rows: list[dict[str, Any]],
    rewards: list[BoundReward],
    context: RewardContext,
    summary: Summary,
    first_line: int = 1,
    label: str = "input",
) -> list[dict[str, Any]]:
    """The rows with rewards, total, extracted answer and correctness added."""
    completions = [row["completion"] for row in rows]
    texts = [completion_text(c) for c in completions]
    columns = _columns(rows)
    values: dict[str, list[float | None]] = {}
    for bound in rewards:
        try:
            values[bound.info.name] = bound(completions, **columns)
        except RewardError as exc:
            line = None if exc.row is None else first_line + exc.row
            raise exc.at(line, label) from exc.__cause__
    tag, reasoning_tag = context.answer_tag, context.reasoning_tag
    out = []
    for i, (row, text) in enumerate(zip(rows, texts, strict=True)):
        graded = grade(text, row["answer"], tag, reasoning_tag)
        per_reward = {b.info.name: values[b.info.name][i] for b in rewards}
        total = sum(b.weight * v for b in rewards if (v := per_reward[b.info.name]) is not None)
        scored = {
            **row,
            "rewards": per_reward,
            "reward": round(total, 6),
            "extracted": graded.extracted,
            "correct": graded.correct,
            "correct_flexible": graded.correct_flexible,
        }
        summary.add(scored, graded.formatted, graded.gold_readable)
        out.append(scored)
    return out


def report(summary: Summary, stream: IO[str], label: str, output: Path | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=stream, soft_wrap=False)
    table = Table(title=f"grpo score {label}", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("rows", str(summary.rows))
    table.add_row("accuracy (strict: answer tag)", summary.share(summary.correct))
    table.add_row("accuracy (flexible)", summary.share(summary.correct_flexible))
    table.add_row("format (reasoning then answer tags)", summary.share(summary.formatted))
    for name in summary.names:
        table.add_row(f"mean {name}", summary.mean(name))
    mean_total = summary.reward_total / summary.rows if summary.rows else 0.0
    table.add_row("mean reward (weighted total)", f"{mean_total:.4f}" if summary.rows else "-")
    console.print(table)
    if summary.unreadable_gold:
        console.print(
            f"[yellow]Warning:[/] {summary.unreadable_gold} rows have a gold answer that is not a "
            "number; they count as wrong."
        )
    if output is not None:
        console.print(f"Scored rows written to {output}")


def _rewards(
    config_path: Path | None, overrides: list[str] | tuple[str, ...]
) -> tuple[list[BoundReward], RewardContext]:
    if config_path is None:
        if overrides:
            raise GrpoError("--set needs --config", "give the config the overrides apply to")
        context = RewardContext()
        specs = [RewardSpec(name=name) for name in DEFAULT_REWARDS]
        return build_rewards(specs, context), context
    from grpo_cli.config import load_config

    cfg = load_config(config_path, list(overrides)).config
    context = RewardContext.from_config(cfg)
    return build_rewards(cfg.rewards, context, cfg.reward_plugins), context


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Every column the rows share, as lists, the way TRL passes dataset columns to rewards."""
    keys = [k for k in rows[0] if k != "completion" and k not in ADDED]
    shared = [k for k in keys if all(k in row for row in rows)]
    columns = {k: [row[k] for row in rows] for k in shared}
    if "prompt" in columns:
        columns["prompts"] = columns.pop("prompt")
    return columns


def _chunks(source: Iterable[bytes], label: str) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    chunk: list[dict[str, Any]] = []
    first = 1
    for number, raw in enumerate(source, start=1):
        try:  # decoded line by line, so a bad byte is reported with its line
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise GrpoError(
                f"{label}:{number}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column "
                f"{exc.start + 1})",
                "save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 IN > OUT`)",
            ) from None
        if not line.strip():
            continue
        chunk.append(_parse_row(line, number, label))
        if len(chunk) == 1:
            first = number
        if len(chunk) >= CHUNK_ROWS:
            yield first, chunk
            chunk = []
    if chunk:
        yield first, chunk


def _parse_row(line: str, number: int, label: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise GrpoError(
            f"{label}:{number}: not a JSON object ({exc.msg} at column {exc.colno})",
            "each line must be one JSON object with completion and answer",
        ) from None
    if not isinstance(row, dict):
        raise GrpoError(f"{label}:{number}: expected a JSON object, found {type(row).__name__}")
    missing = [k for k in ("completion", "answer") if k not in row]
    if missing:
        raise GrpoError(
            f"{label}:{number}: row has no {' or '.join(missing)} (its keys: "
            f"{', '.join(row) or 'none'})",
            "each row needs completion (text or chat messages) and answer (gold: '... #### N' or "
            "a number)",
        )
    problem = completion_problem(row["completion"])
    if problem is not None:
        raise GrpoError(
            f"{label}:{number}: {problem}",
            'a completion is text, or messages such as [{"role": "assistant", "content": "..."}]',
        )
    return row


@contextmanager
def _open_input(path: str) -> Iterator[Iterable[bytes]]:
    if path == "-":
        stdin = getattr(sys.stdin, "buffer", None)  # a replaced stdin may be text only
        yield stdin if stdin is not None else (line.encode("utf-8") for line in sys.stdin)
        return
    file = Path(path)
    if not file.is_file():
        raise GrpoError(f"{path} not found", "give a .jsonl file of {completion, answer} rows")
    with file.open("rb") as f:
        yield f


@contextmanager
def _open_output(path: Path | None) -> Iterator[IO[str]]:
    if path is None:
        yield sys.stdout
        return
    if path.is_dir():
        raise GrpoError(f"--output {path} is a folder", "give a file name such as scores.jsonl")
    fd, tmp = open_temporary(path, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False
