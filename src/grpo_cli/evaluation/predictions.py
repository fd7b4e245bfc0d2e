"""Graded predictions and the predictions.jsonl file that makes an evaluation resumable.

Each finished batch is appended and flushed to disk, so a crash at row 900 of 1,319 loses at
most one batch; the next run with the same settings reads the file back and generates only the
rows it lacks. The settings sit beside it in settings.json: predictions made with other settings
are never mixed in.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from grpo_cli.errors import GrpoError
from grpo_cli.evaluation.generate import Completion, Sampling
from grpo_cli.files import write_atomic
from grpo_cli.grading import grade as grade_one

PREDICTIONS = "predictions.jsonl"
SETTINGS = "settings.json"
METRICS = "metrics.json"


def grade(
    row_id: int,
    question: str,
    gold: str,
    completions: list[Completion],
    reasoning_tag: str | None,
    answer_tag: str,
) -> dict[str, Any]:
    """One prediction record: every completion with its answers and flags, each graded by
    `grpo_cli.grading` (the rule `grpo score` and training's accuracy use)."""
    texts = [c.text for c in completions]
    grades = [grade_one(t, gold, answer_tag, reasoning_tag) for t in texts]
    return {
        "row_id": row_id,
        "question": question,
        "gold": str(gold),
        "completions": texts,
        "extracted": [g.extracted for g in grades],
        "extracted_flexible": [g.extracted_flexible for g in grades],
        "correct": [g.correct for g in grades],
        "correct_flexible": [g.correct_flexible for g in grades],
        "formatted": [g.formatted for g in grades],
        "truncated": [c.truncated for c in completions],
        "tokens": [c.tokens for c in completions],
    }


def generate_and_grade(
    engine: Any, rows: list[dict[str, Any]], sampling: Sampling, fmt: Any
) -> list[dict[str, Any]]:
    """One batch of formatted rows (prompt, answer, row_id) generated and graded: what both
    `grpo eval` and the evaluation during training do per batch."""
    outs = engine.generate([r["prompt"] for r in rows], sampling)
    return [
        grade(r["row_id"], question_of(r), r["answer"], o, fmt.reasoning_tag, fmt.answer_tag)
        for r, o in zip(rows, outs, strict=True)
    ]


def question_of(row: dict[str, Any]) -> str:
    """The question of a formatted row: its last user message."""
    return next(m["content"] for m in reversed(row["prompt"]) if m["role"] == "user")


class PredictionFile:
    """`<output>/<model>/`: settings.json, predictions.jsonl (appended per batch), metrics.json."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / PREDICTIONS
        self.settings_path = folder / SETTINGS
        self.metrics_path = folder / METRICS

    def open(self, settings: dict[str, Any]) -> dict[int, dict[str, Any]]:
        """The finished records (by row id) made with these settings; refuses a folder that
        holds predictions made with other settings rather than mixing or deleting them."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.settings_path.is_file() and self.path.is_file():
            old = json.loads(self.settings_path.read_text(encoding="utf-8"))
            changed = sorted(k for k in {*old, *settings} if old.get(k) != settings.get(k))
            if changed:
                diff = ", ".join(
                    "the model's weights changed (retrained?)" if k == "model" else
                    f"{k}: {old.get(k)!r} -> {settings.get(k)!r}"
                    for k in changed
                )  # fmt: skip
                raise GrpoError(
                    f"{self.folder} holds predictions made with other settings ({diff})",
                    "pass another --output folder, or delete that folder to start over",
                )
        write_atomic(self.settings_path, json.dumps(settings, indent=1) + "\n")
        return self._read()

    def _read(self) -> dict[int, dict[str, Any]]:
        if not self.path.is_file():
            return {}
        records: dict[int, dict[str, Any]] = {}
        lines = self.path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines):  # the line a crash cut short: drop it, keep the rest
                    write_atomic(self.path, "".join(f"{x}\n" for x in lines[:-1]))
                    break
                raise GrpoError(
                    f"{self.path}:{number} is not valid JSON",
                    "delete the file to evaluate this model again",
                ) from None
            records[int(record["row_id"])] = record
        return records

    def append(self, records: list[dict[str, Any]]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        write_atomic(self.metrics_path, json.dumps(metrics, indent=1) + "\n")
