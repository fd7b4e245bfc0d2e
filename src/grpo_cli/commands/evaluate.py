"""`grpo eval CONFIG [--model M ...]`: held-out accuracy with 95% intervals, several models side
by side on the same rows with paired tests.

models -> rows (test split, the run's held-out slice or a file) -> for each model: finished
predictions read back, the rest generated batch by batch and appended -> metrics.json (and
eval.json in a run directory) -> one comparison table. The work is done in `grpo_cli.evaluation`,
`grpo_cli.model_source` and `grpo_cli.model_loading`.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from grpo_cli.config import load_config
from grpo_cli.config.schema import DATA_SUFFIXES, GrpoConfig, looks_like_path
from grpo_cli.config.yamlio import display_path
from grpo_cli.errors import GrpoError
from grpo_cli.evaluation.generate import (
    Engine,
    Sampling,
    choose_engine,
    describe_decoding,
    load_engine,
)
from grpo_cli.evaluation.metrics import summarize
from grpo_cli.evaluation.report import compare, print_table
from grpo_cli.hub_access import HubItem, refuse_unreachable
from grpo_cli.model_source import ModelSource, resolve_model
from grpo_cli.threads import apply_threads

COMPARISON = "comparison.json"


def evaluate(
    config_path: Path,
    model_args: list[str],
    overrides: list[str],
    *,
    split: str | None = None,
    limit: int | None = None,
    samples: int = 1,
    temperature: float | None = None,
    batch_size: int = 32,
    max_new_tokens: int | None = None,
    seed: int = 0,
    output: Path | None = None,
    engine: str = "auto",
    threads: int | None = None,
    tensor_parallel_size: int = 1,
) -> list[dict[str, Any]]:
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    cfg = load_config(config_path, overrides).config
    models = resolve_models(model_args or ["base"], cfg)
    if temperature is None:  # several samples are drawn as training draws them
        temperature = 0.0 if samples == 1 else cfg.training.temperature
    if samples > 1 and temperature == 0:
        raise GrpoError(
            f"--samples {samples} with --temperature 0 gives {samples} identical greedy answers",
            "sample with a temperature (e.g. --temperature 1.0), or drop --samples",
        )
    max_new_tokens = max_new_tokens or cfg.training.max_completion_length
    sampling = Sampling(samples, temperature, cfg.training.top_p, max_new_tokens, seed)
    from grpo_cli.hardware import installed, probe

    if tensor_parallel_size > 1:  # GPUs this machine lacks are refused before the Hub is asked
        choose_engine(engine, probe(), installed("vllm"), tensor_parallel_size)
    # Otherwise the Hub first: probing the machine imports torch, seconds an offline refusal
    # need not wait for.
    refuse_unreachable(hub_items(models, cfg, split))
    hw = probe()
    choose_engine(engine, hw, installed("vllm"), tensor_parallel_size)  # before any download
    if line := apply_threads(threads, hw.device):
        console.print(line, markup=False)
    console.print(describe_decoding(sampling), markup=False)
    quiet_libraries()  # before any data is read: datasets draws a bar per file it loads

    from grpo_cli.data.prompts import PromptFormat
    from grpo_cli.evaluation.predictions import PredictionFile, predict, record_in_run
    from grpo_cli.evaluation.rows import eval_rows, model_rows

    split_name, raw, wanted, data_desc = eval_rows(cfg, split, [m for _, m, _ in models])
    if output is None:  # one folder per split and sampling, so evaluations never collide
        output = Path("eval") / split_name
        if samples > 1:
            output = output.with_name(f"{split_name}-k{samples}-t{temperature:g}")

    results: list[dict[str, Any]] = []
    for label, source, model_cfg in models:
        rows = model_rows(raw, model_cfg, wanted, limit)
        console.print(
            f"{label}: {len(rows)} rows of {data_desc} ({source.describe()})", markup=False
        )
        file = PredictionFile(output / label)
        fmt = PromptFormat.from_config(model_cfg.data)

        def open_engine(source: ModelSource = source, model_cfg: GrpoConfig = model_cfg) -> Engine:
            return load_engine(source, model_cfg, engine, console, tensor_parallel_size)

        records, engine_name = predict(
            file,
            label,
            source.fingerprint(),
            rows,
            fmt,
            sampling,
            data_desc,
            batch_size,
            open_engine,
            console,
        )
        metrics = {
            "model": label,
            "source": source.arg,
            "split": split_name,
            "data": data_desc,
            **summarize(records, seed),
            "temperature": sampling.temperature,
            "max_new_tokens": sampling.max_new_tokens,
            "seed": seed,
            "engine": engine_name,
            "evaluated": datetime.now().isoformat(timespec="seconds"),
        }
        file.write_metrics(metrics)
        if source.run is not None:
            record_in_run(source.run.path, split_name, samples, metrics)
        results.append({"metrics": metrics, "records": records})

    comparisons = compare(results, seed)
    if len(results) > 1:
        from grpo_cli.files import write_atomic

        record = {
            "reference": results[0]["metrics"]["model"],
            "comparisons": comparisons,
            "models": [r["metrics"] for r in results],
        }
        write_atomic(output / COMPARISON, json.dumps(record, indent=1) + "\n")
    print_table(results, comparisons, sampling)
    folders = ", ".join(f"{display_path(output / label)}/" for label, _, _ in models)
    console.print(f"predictions and metrics: {folders}", markup=False)
    return [r["metrics"] for r in results]


def hub_items(
    models: list[tuple[str, ModelSource, GrpoConfig]], cfg: GrpoConfig, split: str | None
) -> list[HubItem]:
    """What eval will fetch: each model's base, and the config's data unless --split is a file
    (a run's held-out rows are rows of its source too)."""
    items = [HubItem(s.base, s.base_origin, revision=s.revision) for _, s, _ in models]
    if split is None or not (split.lower().endswith(DATA_SUFFIXES) or looks_like_path(split)):
        items.append(HubItem(cfg.data.source, "data.source", "dataset", subset=cfg.data.subset))
    return items


def resolve_models(args: list[str], cfg: GrpoConfig) -> list[tuple[str, ModelSource, GrpoConfig]]:
    """(label, model, the config it was trained with) per --model; the config gives the prompt
    format, so a run is asked its questions the way it was trained."""
    models = []
    seen: dict[str, int] = {}
    for arg in args:
        source = resolve_model(arg, cfg, "--model")
        label = source.label
        count = seen[label] = seen.get(label, 0) + 1
        if count > 1:  # two runs named alike still get a folder each
            label = f"{label}-{count}"
        models.append((label, source, source.grpo_config(cfg)))
    return models


def quiet_libraries() -> None:
    import transformers

    from grpo_cli.training.models import quiet_progress_bars

    quiet_progress_bars()
    transformers.utils.logging.set_verbosity_error()  # generation-flag warnings per batch
