"""Rows for training and evaluation: read a split from the Hub, a local file or folder, or the
synthetic generator; format it into prompts and gold answers; set a held-out slice aside.

A local file is the training data itself; its other splits are the files beside it named
`<split><suffix>` (train.jsonl -> test.jsonl). A local folder holds one `<split><suffix>` file per
split. Relative paths are read from the current folder.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grpo_cli.config.schema import DATA_SUFFIXES, looks_like_path
from grpo_cli.data.formatters import get_formatter
from grpo_cli.data.prompts import PromptFormat
from grpo_cli.errors import GrpoError, first_line
from grpo_cli.files import write_atomic

if TYPE_CHECKING:
    from datasets import Dataset

    from grpo_cli.config.schema import GrpoConfig

SYNTHETIC_ROWS = 2000  # rows per synthetic split; data.limit takes fewer
HELDOUT_FILE = "heldout.json"
ROW_ID = "row_id"  # index of the row in its source split, kept so eval can find held-out rows
REASONING = "reasoning"  # a formatter's worked solution of a row, for grpo sft
WITHOUT_SOLUTION = "without a worked solution"
SFT_SPLIT = "sft"  # synthetic data's warm-up split, disjoint from train's and the held-out ones


@dataclass
class DataReport:
    """What happened to the rows on their way to the trainer, for the run output."""

    source: str
    split: str
    rows: int = 0  # read from the source (after data.limit)
    dropped: int = 0  # unusable rows: no question, or a gold answer that is no number
    dropped_example: str | None = None  # the first dropped row
    dropped_why: dict[str, int] = field(default_factory=dict)  # reason -> rows
    dropped_examples: dict[str, str] = field(default_factory=dict)  # reason -> its first row
    heldout: int = 0
    kept: int = 0
    notes: list[str] = field(default_factory=list)

    def drop(self, why: str, example: str) -> None:
        self.dropped += 1
        self.dropped_why[why] = self.dropped_why.get(why, 0) + 1
        self.dropped_examples.setdefault(why, example)
        if self.dropped_example is None:
            self.dropped_example = example

    def summary(self) -> str:
        text = f"{self.kept} rows from {self.source} [{self.split}]"
        if self.heldout:
            text += f", {self.heldout} held out for evaluation"
        return text

    def warning(self) -> str | None:
        if not self.dropped:
            return None
        reasons = "; ".join(
            f"{count} {why} (e.g. {self.dropped_examples[why]})"
            for why, count in self.dropped_why.items()
        )
        return (
            f"dropped {self.dropped} of {self.rows} rows of {self.source} [{self.split}]: {reasons}"
        )


def is_local(source: str) -> bool:
    return (
        looks_like_path(source) or source.lower().endswith(DATA_SUFFIXES) or Path(source).is_dir()
    )


def local_file(source: str, split: str, primary_split: str) -> Path:
    """The file that holds `split` of a local source (see the module docstring)."""
    split_path = Path(split).expanduser()
    if split.lower().endswith(DATA_SUFFIXES) or looks_like_path(split):
        candidates = [split_path]
    else:
        path = Path(source).expanduser()
        if path.is_dir():
            candidates = [path / f"{split}{suffix}" for suffix in DATA_SUFFIXES]
        elif split == primary_split:
            candidates = [path]
        else:
            candidates = [path.with_name(f"{split}{path.suffix}")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    shown = " or ".join(str(c) for c in candidates)
    raise GrpoError(
        f"data split {split!r} of {source}: {shown} not found",
        "a local dataset keeps each split in a file named <split>.jsonl (or .json, .parquet, "
        ".csv); give the file's path instead of the split name if it is named otherwise",
    )


def read_split(
    source: str,
    split: str,
    *,
    subset: str | None = None,
    primary_split: str = "train",
    seed: int = 0,
    limit: int | None = None,
    difficulty: str = "gsm8k_like",
) -> Dataset:
    """The raw rows of one split, the first `limit` of them when given."""
    import datasets

    if source == "synthetic":
        from grpo_cli.data.synthetic import synthetic_rows

        rows = synthetic_rows(
            limit or SYNTHETIC_ROWS, seed=seed, split=split, difficulty=difficulty
        )
        return datasets.Dataset.from_list(rows)
    if is_local(source):
        ds = _local_split(local_file(source, split, primary_split))
    else:
        ds = _hub_split(source, subset, split)
    if limit is not None and limit < len(ds):
        ds = ds.select(range(limit))
    return ds


_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def _local_split(path: Path) -> Dataset:
    """A local file's rows. Faults the datasets loaders report vaguely or not at all (an empty
    file, bytes that are not UTF-8, a broken JSON line) are named with the file and line."""
    import datasets

    kind = _BUILDERS.get(path.suffix.lower())
    if kind is None:
        raise GrpoError(f"{path}: unsupported file type; use {', '.join(DATA_SUFFIXES)}")
    if kind != "parquet":
        _check_text(path)
    elif path.stat().st_size == 0:
        raise GrpoError(f"{path} is empty", "give a data file with at least one row")
    try:
        ds = datasets.load_dataset(kind, data_files=str(path), split="train")
    except Exception as exc:
        if path.suffix.lower() == ".jsonl":
            _find_bad_line(path)
        elif path.suffix.lower() == ".json":
            _check_json(path)
        elif len(path.read_bytes().strip().splitlines()) < 2:
            raise GrpoError(f"{path} has no rows, only a header") from None
        raise GrpoError(
            f"cannot read {path} as {path.suffix.lstrip('.')}: {type(exc).__name__}: "
            f"{first_line(exc)}",
            "check the file (JSON Lines: one JSON object per line)",
        ) from exc
    if len(ds) == 0:
        raise GrpoError(f"{path} has no rows", "give a data file with at least one row")
    return ds


def _check_text(path: Path) -> None:
    data = path.read_bytes()
    if not data.strip():
        raise GrpoError(f"{path} is empty", "give a data file with at least one row")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise GrpoError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at column {column})",
            "save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 IN > OUT`)",
        ) from None


def _find_bad_line(path: Path) -> None:
    """Raise for the first JSON Lines line that is no JSON object; return when every line is one
    (the loader failed for another reason)."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as exc:
                raise GrpoError(
                    f"{path}:{number}: not a JSON object ({exc.msg} at column {exc.colno})",
                    "each line must be one JSON object, e.g. "
                    '{"question": "...", "answer": "... #### 18"}',
                ) from None
            if not isinstance(row, dict):
                raise GrpoError(
                    f"{path}:{number}: expected a JSON object, found {_json_kind(row)}",
                    "each line must be one JSON object",
                )


def _check_json(path: Path) -> None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise GrpoError(
            f"{path}:{exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno})",
            "a .json data file holds one list of row objects; use .jsonl for one row per line",
        ) from None
    if not data:
        raise GrpoError(f"{path} has no rows", "give a data file with at least one row")


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    return "a list" if isinstance(value, list) else "an object"


def _hub_split(source: str, subset: str | None, split: str) -> Dataset:
    import datasets

    from grpo_cli.hub_access import cache_first

    try:
        return cache_first(
            partial(datasets.load_dataset, source, subset, split=split),
            source,
            key="data.source",
            subset=subset,
            kind="dataset",
        )
    except GrpoError:
        raise
    except ValueError as exc:
        if "split" in str(exc).lower():
            raise GrpoError(
                f"data.split: {source} has no split {split!r}: {first_line(exc)}",
                "set data.split (or data.eval_split) to one of the splits listed",
            ) from exc
        raise GrpoError(f"data.source: cannot load {source}: {first_line(exc)}") from exc
    except Exception as exc:
        raise GrpoError(
            f"data.source: cannot load {source} (subset {subset}) from the Hugging Face Hub: "
            f"{type(exc).__name__}: {first_line(exc)}",
            "check the dataset id and your network (HF_HUB_OFFLINE must be unset to download), "
            "or point data.source at a local .jsonl file or folder",
        ) from exc


def format_split(
    ds: Dataset,
    formatter_name: str,
    prompt: PromptFormat,
    report: DataReport,
    *,
    reasoning: bool = False,
) -> Dataset:
    """Rows as prompts + gold answers, other columns kept; unreadable gold answers dropped.
    With REASONING, each row also has the formatter's worked solution (`reasoning`), and rows
    without one are dropped; without it, a worked solution the formatter returns is left out."""
    import datasets

    fmt = get_formatter(formatter_name)
    missing = [c for c in fmt.columns if c not in ds.column_names]
    if missing:
        raise GrpoError(
            f"data.source: {report.source} [{report.split}] has columns "
            f"{', '.join(ds.column_names)}, but the {fmt.name} formatter needs "
            f"{', '.join(fmt.columns)} ({', '.join(missing)} missing)",
            "pick the formatter for this dataset with data.formatter, or rename its columns",
        )
    rows = []
    made_keys: set[str] = set()
    report.rows = len(ds)
    for index, row in enumerate(ds):
        empty = next((c for c in fmt.columns if _blank(row.get(c))), None)
        if empty is not None:  # a prompt of "None" would be trained on silently
            report.drop(f"with no {empty}", f"row {index}: {_show_row(row)}")
            continue
        formatted = fmt.fn(row, prompt)
        if formatted is None:
            gold = str(row.get(fmt.columns[-1], ""))[-60:].replace("\n", " ")
            report.drop("whose gold answer cannot be read as a number", f"row {index}: ...{gold!r}")
            continue
        solution = formatted.pop(REASONING, None)
        if reasoning:
            if _blank(solution):
                report.drop(WITHOUT_SOLUTION, f"row {index}: {_show_row(row)}")
                continue
            formatted[REASONING] = str(solution).strip()
        made_keys.update(formatted)
        rows.append({**row, **formatted, ROW_ID: index})
    report.kept = len(rows)
    if reasoning and not rows and WITHOUT_SOLUTION in report.dropped_why:
        raise GrpoError(
            f"{report.dropped_why[WITHOUT_SOLUTION]} of the {report.rows} rows of "
            f"{report.source} [{report.split}] have no worked solution (the {fmt.name} formatter "
            f"returns none for them){_other_drops(report)}",
            "grpo sft trains on worked solutions: use a formatter that returns one "
            '("reasoning", as gsm8k and math_boxed do) or a dataset whose rows have one',
        )
    if not rows:
        raise GrpoError(
            f"no usable rows in {report.source} [{report.split}]: "
            f"{report.warning() or 'the split is empty'}",
            f"check that data.formatter ({fmt.name}) fits this dataset",
        )
    # The source's columns keep their types (a column of numbers and text is datasets' Json
    # type, which inferring from the rows again would refuse); the formatter's are inferred.
    made = {*made_keys, ROW_ID}
    features = datasets.Dataset.from_list([{k: r[k] for k in made} for r in rows]).features
    kept = {c: ds.features[c] for c in ds.column_names if c not in made}
    return datasets.Dataset.from_list(rows, features=datasets.Features({**kept, **features}))


def _other_drops(report: DataReport) -> str:
    others = report.dropped - report.dropped_why[WITHOUT_SOLUTION]
    return f", and {others} were unusable besides" if others else ""


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _show_row(row: dict[str, Any]) -> str:
    text = json.dumps(row, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def heldout_ids(row_ids: list[int], size: int, seed: int) -> list[int]:
    """A seeded choice of `size` row ids, sorted; the same for the same rows and seed."""
    if size >= len(row_ids):
        raise GrpoError(
            f"data.heldout_size {size} leaves no training rows (the split has {len(row_ids)})",
            f"set data.heldout_size below {len(row_ids)}",
        )
    return sorted(random.Random(seed).sample(sorted(row_ids), size))


@dataclass
class TrainingData:
    train: Dataset
    heldout: Dataset | None
    heldout_ids: list[int]
    report: DataReport


def read_config_split(
    cfg: GrpoConfig, split: str | None = None, limit: int | None = None
) -> Dataset:
    """A split of the config's data source (default data.split), read as the config says:
    its subset, its local files' naming, its seed for synthetic rows."""
    d = cfg.data
    return read_split(
        d.source,
        split or d.split,
        subset=d.subset,
        primary_split=d.split,
        seed=cfg.training.seed,
        limit=limit,
        difficulty=d.difficulty,
    )


def load_training_data(cfg: GrpoConfig) -> TrainingData:
    """The training rows of a config, with its held-out slice removed."""
    d = cfg.data
    report = DataReport(source=d.source, split=d.split)
    raw = read_config_split(cfg, limit=d.limit)
    ds = format_split(raw, d.formatter, PromptFormat.from_config(d), report)
    ids: list[int] = []
    heldout = None
    if d.heldout_size:
        ids = heldout_ids(ds[ROW_ID], d.heldout_size, cfg.training.seed)
        chosen = set(ids)
        # select, not filter: filter would hash the lambda with dill inside datasets' bare
        # `except:`, which swallows a Ctrl-C
        held = [row_id in chosen for row_id in ds[ROW_ID]]
        heldout = ds.select([i for i, h in enumerate(held) if h])
        ds = ds.select([i for i, h in enumerate(held) if not h])
        report.heldout = len(ids)
        report.kept = len(ds)
    return TrainingData(ds, heldout, ids, report)


def load_sft_data(cfg: GrpoConfig) -> TrainingData:
    """The rows `grpo sft` trains on, each with its worked solution. Synthetic data has a split
    of its own for the warm-up (`sft`: on the split levels, disjoint from GRPO's rows and the
    held-out ones); any other source warms up on data.split less the held-out slice, the rows
    GRPO trains on, so held-out and eval rows are never trained on. sft.limit, else data.limit,
    takes the first rows."""
    d = cfg.data
    limit = cfg.sft.limit or d.limit
    if d.source == "synthetic":
        report = DataReport(source=d.source, split=SFT_SPLIT)
        raw = read_config_split(cfg, SFT_SPLIT, limit=limit)
        ds = format_split(raw, d.formatter, PromptFormat.from_config(d), report, reasoning=True)
        return TrainingData(ds, None, [], report)
    report = DataReport(source=d.source, split=d.split)
    raw = read_config_split(cfg, limit=limit)
    ds = format_split(raw, d.formatter, PromptFormat.from_config(d), report, reasoning=True)
    ids: list[int] = []
    if d.heldout_size:
        # chosen among the same rows as grpo train's (data.limit of them, not sft.limit):
        # worked solutions a formatter lacks do not move the held-out slice
        same_rows = limit == d.limit and WITHOUT_SOLUTION not in report.dropped_why
        row_ids = list(ds[ROW_ID]) if same_rows else _formatted_row_ids(cfg)
        ids = heldout_ids(row_ids, d.heldout_size, cfg.training.seed)
        chosen = set(ids)
        keep = [i for i, row_id in enumerate(ds[ROW_ID]) if row_id not in chosen]
        report.heldout = len(ds) - len(keep)
        ds = ds.select(keep)
        report.kept = len(ds)
    return TrainingData(ds, None, ids, report)


def _formatted_row_ids(cfg: GrpoConfig) -> list[int]:
    """The row ids grpo train draws its held-out slice from."""
    d = cfg.data
    raw = read_config_split(cfg, limit=d.limit)
    ds = format_split(raw, d.formatter, PromptFormat.from_config(d), DataReport(d.source, d.split))
    return list(ds[ROW_ID])


def load_eval_data(cfg: GrpoConfig, split: str | None = None) -> tuple[Dataset, DataReport]:
    """The evaluation rows of a config: `split` (default data.eval_split), formatted alike."""
    d = cfg.data
    split = split or d.eval_split
    report = DataReport(source=d.source, split=split)
    raw = read_config_split(cfg, split)
    return format_split(raw, d.formatter, PromptFormat.from_config(d), report), report


def write_heldout(run_dir: Path, cfg: GrpoConfig, ids: list[int]) -> Path:
    """Record the held-out rows in the run directory, so eval uses exactly them."""
    d = cfg.data
    record = {
        "source": d.source,
        "subset": d.subset,
        "split": d.split,
        "limit": d.limit,
        "seed": cfg.training.seed,
        "difficulty": d.difficulty,
        "row_ids": ids,
    }
    path = run_dir / HELDOUT_FILE
    write_atomic(path, json.dumps(record, indent=1) + "\n")
    return path


def read_heldout(run_dir: Path) -> dict[str, Any]:
    path = run_dir / HELDOUT_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GrpoError(
            f"{run_dir} has no {HELDOUT_FILE}: the run held no rows out",
            "set data.heldout_size when training, or evaluate on the test split",
        ) from None
    except json.JSONDecodeError as exc:
        raise GrpoError(f"{path} is not valid JSON: {exc}") from exc
    return record
