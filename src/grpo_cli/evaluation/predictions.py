"""Graded predictions and the predictions.jsonl file that makes an evaluation resumable.

Each finished batch is appended and flushed to disk, so a crash at row 900 of 1,319 loses at
most one batch; the next run with the same settings reads the file back and generates only the
rows it lacks. The settings sit beside it in settings.json: predictions made with other settings
are never mixed in, and a saved row is reused only while its question and gold answer are the
current row's (a split file rewritten in place gets new predictions).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grpo_cli.errors import GrpoError
from grpo_cli.evaluation.generate import Completion, Engine, Sampling
from grpo_cli.evaluation.metrics import row_scores
from grpo_cli.files import append_jsonl, write_atomic
from grpo_cli.grading import grade as grade_one

if TYPE_CHECKING:
    from rich.console import Console

    from grpo_cli.data.prompts import PromptFormat

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
    engine: Engine, rows: list[dict[str, Any]], sampling: Sampling, fmt: PromptFormat
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
            old = _read_json(self.settings_path)
            changed = sorted(k for k in {*old, *settings} if old.get(k) != settings.get(k))
            if changed:
                diff = ", ".join(
                    "the model's weights changed (retrained?)"
                    if k == "model"
                    else f"{k}: {old.get(k)!r} -> {settings.get(k)!r}"
                    for k in changed
                )
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
        lines = _read_text(self.path).splitlines()
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
        append_jsonl(self.path, records, durable=True)  # a crash loses at most the next batch

    def previous_engine(self) -> str:
        """The engine named in an earlier metrics.json, for rows that are all reused."""
        if not self.metrics_path.is_file():
            return "unknown"
        return str(_read_json(self.metrics_path).get("engine", "unknown"))

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        write_atomic(self.metrics_path, json.dumps(metrics, indent=1) + "\n")


def predict(
    file: PredictionFile,
    label: str,
    fingerprint: dict[str, Any],
    rows: list[dict[str, Any]],
    fmt: PromptFormat,
    sampling: Sampling,
    data_desc: str,
    batch_size: int,
    open_engine: Callable[[], Engine],
    console: Console,
) -> tuple[list[dict[str, Any]], str]:
    """Every row's graded prediction and the engine's name: the finished ones read back, the
    rest generated (the model is loaded, by OPEN_ENGINE, only when a row is missing)."""
    settings = {
        "model": fingerprint,
        "data": data_desc,
        "prompt": asdict(fmt),
        "samples": sampling.samples,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_new_tokens": sampling.max_new_tokens,
        "seed": sampling.seed,
    }
    done = file.open(settings)
    changed = [
        r["row_id"] for r in rows if r["row_id"] in done and not _same_row(done[r["row_id"]], r)
    ]
    for row_id in changed:
        del done[row_id]
    todo = [row for row in rows if row["row_id"] not in done]
    engine_name = file.previous_engine()
    reused = len(rows) - len(todo)
    if reused and todo:
        console.print(f"{label}: {reused} rows reused from {file.path}", markup=False)
    elif reused:
        console.print(f"{label}: all {len(rows)} rows reused from {file.path}", markup=False)
    if changed:
        console.print(
            f"{label}: {len(changed)} saved rows are generated again: their question or gold "
            f"answer is no longer the one in {data_desc}",
            markup=False,
        )
    if todo:
        generator = open_engine()
        engine_name = generator.name
        finished = [done[r["row_id"]] for r in rows if r["row_id"] in done]
        progress = EvalProgress(console, label, len(rows), finished)
        try:
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                seed_batch(sampling.seed, batch[0]["row_id"])
                graded = generate_and_grade(generator, batch, sampling, fmt)
                file.append(graded)
                done.update((g["row_id"], g) for g in graded)
                progress.advance(graded)
        except BaseException:
            progress.close()
            console.print(
                f"{label}: {len(done)} of {len(rows)} rows are saved in {file.path}; the "
                "same command continues from there",
                markup=False,
            )
            raise
        progress.close()
    return [done[r["row_id"]] for r in rows], engine_name


def _same_row(record: dict[str, Any], row: dict[str, Any]) -> bool:
    return record.get("question") == question_of(row) and record.get("gold") == str(row["answer"])


def seed_batch(seed: int, first_row: int) -> None:
    """Sampling seeded per batch by its first row, so a resumed run draws what a straight one
    would have drawn for the same batches."""
    import torch

    torch.manual_seed(seed * 1_000_003 + first_row)


class EvalProgress:
    """A progress bar with the running strict accuracy in a terminal; a line per batch
    elsewhere."""

    def __init__(self, console: Console, label: str, total: int, done: list[dict[str, Any]]):
        self.console, self.label, self.total = console, label, total
        self.scores = [row_scores(r) for r in done]
        self.bar: Any = None
        if console.is_terminal:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            columns = (
                TextColumn(label),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[acc]}"),
            )
            self.bar = Progress(*columns, console=console)
            self.task = self.bar.add_task(label, total=total, completed=len(done), acc="")
            self.bar.start()

    def advance(self, graded: list[dict[str, Any]]) -> None:
        self.scores += [row_scores(r) for r in graded]
        acc = f"strict accuracy {100 * statistics.fmean(self.scores):.1f}%"
        if self.bar is not None:
            self.bar.update(self.task, completed=len(self.scores), acc=acc)
        else:
            self.console.print(f"{self.label}: {len(self.scores)}/{self.total} rows, {acc}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def record_in_run(run: Path, split_name: str, samples: int, metrics: dict[str, Any]) -> None:
    """eval.json in the run directory: what `grpo merge` puts in the model card."""
    from grpo_cli.training.rundir import RunDir

    path = RunDir(run).evals
    repair = f"repair {path} or move it aside (it holds the run's earlier evaluations)"
    evals = _read_json(path, repair) if path.is_file() else {}
    key = split_name if samples == 1 else f"{split_name}@{samples}"
    evals[key] = metrics
    RunDir(run).write_json(path, evals)


def _read_text(path: Path, hint: str | None = None) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise GrpoError(
            f"{path} is not UTF-8 text (byte {exc.start}): it was not written by grpo eval, or "
            "was damaged",
            hint or f"delete {path} to evaluate this model again, or pass another --output folder",
        ) from None


def _read_json(path: Path, hint: str | None = None) -> dict[str, Any]:
    """A JSON object grpo eval wrote; a damaged file is a user error that names it."""
    hint = hint or f"delete {path} to evaluate this model again, or pass another --output folder"
    try:
        data = json.loads(_read_text(path, hint))
    except json.JSONDecodeError as exc:
        raise GrpoError(
            f"{path} is not valid JSON ({exc.msg}, line {exc.lineno})",
            hint,
        ) from None
    if not isinstance(data, dict):
        raise GrpoError(f"{path} is not a JSON object", hint)
    return data
