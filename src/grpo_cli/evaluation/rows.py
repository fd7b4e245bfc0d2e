"""The rows `grpo eval` scores: the test split, a run's held-out slice or a file, the same rows
for every model compared, each in the prompt format its model was trained with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grpo_cli.config.schema import DATA_SUFFIXES, GrpoConfig, looks_like_path
from grpo_cli.config.yamlio import display_path
from grpo_cli.errors import GrpoError
from grpo_cli.model_source import ModelSource

if TYPE_CHECKING:
    from datasets import Dataset


def eval_rows(
    cfg: GrpoConfig, split: str | None, sources: list[ModelSource]
) -> tuple[str, Dataset, set[int] | None, str]:
    """(split name, raw rows, row ids to keep or None, description) for every model alike."""
    from grpo_cli.data.loading import read_config_split, read_split

    d = cfg.data
    name = split or d.eval_split
    if name == "heldout":
        return ("heldout", *heldout_rows(cfg, sources))
    if name.lower().endswith(DATA_SUFFIXES) or looks_like_path(name):
        raw = read_split(name, name, primary_split=name)
        return Path(name).stem, raw, None, display_path(Path(name))
    raw = read_config_split(cfg, name)
    return name, raw, None, f"{d.source} [{name}]"


def heldout_rows(cfg: GrpoConfig, sources: list[ModelSource]) -> tuple[Dataset, set[int], str]:
    """The held-out slice a run recorded (the same for every run compared), or the config's."""
    from grpo_cli.data.loading import (
        format_split,
        heldout_ids,
        read_config_split,
        read_heldout,
        read_split,
    )
    from grpo_cli.data.prompts import PromptFormat

    records = {}
    # A grpo sft run's held-out slice (if any) is the warm-up's: the grpo runs compared with it
    # decide, and it counts only when it is evaluated alone.
    grpo_runs = [s for s in sources if s.run is not None and s.kind != "sft"]
    for source in grpo_runs or sources:
        if source.run is not None:
            record = read_heldout(source.run.path)
            records[json.dumps(record, sort_keys=True)] = (source.run.path, record)
    if len(records) > 1:
        runs = ", ".join(str(run) for run, _ in records.values())
        raise GrpoError(
            f"--split heldout: the runs held out different rows ({runs})",
            "compare them on the test split, or evaluate each run on its own",
        )
    if records:
        _, r = next(iter(records.values()))
        raw = read_split(
            r["source"],
            r["split"],
            subset=r.get("subset"),
            primary_split=r["split"],
            seed=r["seed"],
            limit=r.get("limit"),
            difficulty=r.get("difficulty", "gsm8k_like"),
        )
        return raw, set(r["row_ids"]), f"{r['source']} [{r['split']}] held-out rows"
    d = cfg.data
    if not d.heldout_size:
        raise GrpoError(
            "--split heldout: no run among --model and data.heldout_size is 0",
            "evaluate a run directory (--model outputs/<run>), or use --split test",
        )
    raw = read_config_split(cfg, limit=d.limit)
    from grpo_cli.data.loading import DataReport

    formatted = format_split(
        raw, d.formatter, PromptFormat.from_config(d), DataReport(d.source, d.split)
    )
    ids = heldout_ids(formatted["row_id"], d.heldout_size, cfg.training.seed)
    return raw, set(ids), f"{d.source} [{d.split}] held-out rows"


def model_rows(
    raw: Dataset, cfg: GrpoConfig, wanted: set[int] | None, limit: int | None
) -> list[dict[str, Any]]:
    """The rows in the prompt format of CFG (the model's run config); row ids are the same for
    every model."""
    from grpo_cli.data.loading import DataReport, format_split
    from grpo_cli.data.prompts import PromptFormat

    d = cfg.data
    rows = format_split(raw, d.formatter, PromptFormat.from_config(d), DataReport(d.source, "eval"))
    out = [row for row in rows if wanted is None or row["row_id"] in wanted]
    return out[:limit] if limit else out
