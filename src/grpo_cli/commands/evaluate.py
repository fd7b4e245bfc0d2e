"""`grpo eval CONFIG [--model M ...]`: held-out accuracy with 95% intervals, several models side
by side on the same rows with paired tests.

models -> rows (test split, the run's held-out slice or a file) -> for each model: finished
predictions read back, the rest generated batch by batch and appended -> metrics.json (and
eval.json in a run directory) -> one comparison table.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from grpo_cli.config import load_config
from grpo_cli.config.schema import DATA_SUFFIXES, GrpoConfig, is_hub_id, looks_like_path
from grpo_cli.config.yamlio import display_path
from grpo_cli.errors import GrpoError
from grpo_cli.evaluation.generate import Sampling
from grpo_cli.evaluation.metrics import paired_comparison, row_scores, summarize

COMPARISON = "comparison.json"


@dataclass
class ModelSpec:
    """One --model: what to load, and the config it was trained with (its prompt format)."""

    arg: str  # as the user wrote it
    label: str  # folder name under --output and the table's row name
    kind: str  # base | run | adapter | merged | hub
    base: str  # model to load: Hub id or folder
    cfg: GrpoConfig
    adapter: Path | None = None
    run: Path | None = None
    fingerprint: dict[str, Any] = field(default_factory=dict)


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
) -> list[dict[str, Any]]:
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    cfg = load_config(config_path, overrides).config
    specs = resolve_models(model_args or ["base"], cfg)
    if temperature is None:
        temperature = 0.0 if samples == 1 else 1.0
    if samples > 1 and temperature == 0:
        raise GrpoError(
            f"--samples {samples} with --temperature 0 gives {samples} identical greedy answers",
            "sample with a temperature (e.g. --temperature 1.0), or drop --samples",
        )
    sampling = Sampling(samples, temperature, cfg.training.top_p,
                        max_new_tokens or cfg.training.max_completion_length, seed)  # fmt: skip
    split_name, raw, wanted, data_desc = eval_rows(cfg, split, specs)
    if output is None:  # one folder per split and sampling, so evaluations never collide
        output = Path("eval") / split_name
        if samples > 1:
            output = output.with_name(f"{split_name}-k{samples}-t{temperature:g}")
    import transformers

    from grpo_cli.training.models import quiet_progress_bars

    quiet_progress_bars()
    transformers.utils.logging.set_verbosity_error()  # generation-flag warnings per batch

    results = []
    for spec in specs:
        rows = model_rows(raw, spec, wanted, limit)
        console.print(
            f"{spec.label}: {len(rows)} rows of {data_desc} ({spec.kind} {spec.arg})", markup=False
        )
        records, engine_name = predict(spec, rows, sampling, data_desc, batch_size, output,
                                       engine, console)  # fmt: skip
        metrics = {
            "model": spec.label,
            "source": spec.arg,
            "split": split_name,
            "data": data_desc,
            **summarize(records, seed),
            "temperature": sampling.temperature,
            "max_new_tokens": sampling.max_new_tokens,
            "seed": seed,
            "engine": engine_name,
            "evaluated": datetime.now().isoformat(timespec="seconds"),
        }
        from grpo_cli.evaluation.predictions import PredictionFile

        PredictionFile(output / spec.label).write_metrics(metrics)
        if spec.run is not None:
            record_in_run(spec.run, split_name, samples, metrics)
        results.append({"metrics": metrics, "records": records})

    comparisons = compare(results, seed)
    if len(results) > 1:
        from grpo_cli.files import write_atomic

        record = {"reference": results[0]["metrics"]["model"], "comparisons": comparisons,
                  "models": [r["metrics"] for r in results]}  # fmt: skip
        write_atomic(output / COMPARISON, json.dumps(record, indent=1) + "\n")
    print_table(results, comparisons, sampling)
    console.print(f"predictions and metrics: {display_path(output)}/<model>/", markup=False)
    return [r["metrics"] for r in results]


# ---------------------------------------------------------------- which models


def resolve_models(args: list[str], cfg: GrpoConfig) -> list[ModelSpec]:
    specs = [resolve_model(arg, cfg) for arg in args]
    seen: dict[str, int] = {}
    for spec in specs:  # two runs named alike still get a folder each
        count = seen[spec.label] = seen.get(spec.label, 0) + 1
        if count > 1:
            spec.label = f"{spec.label}-{count}"
    return specs


def resolve_model(arg: str, cfg: GrpoConfig) -> ModelSpec:
    """base, a run directory, an adapter folder, a merged-model folder, or a Hub id."""
    m = cfg.model
    if arg == "base":
        return ModelSpec(arg, "base", "base", m.name, cfg,
                         fingerprint={"model": m.name, "revision": m.revision})  # fmt: skip
    path = Path(arg).expanduser()
    if path.is_dir():
        return _local_model(arg, path, cfg)
    if path.exists() or looks_like_path(arg) or not is_hub_id(arg):
        raise GrpoError(
            f"--model {arg}: no such folder",
            "give base, a run directory (outputs/<run>), an adapter or merged-model folder, or "
            "a Hub id (owner/name)",
        )
    return ModelSpec(arg, arg.replace("/", "__"), "hub", arg, cfg, fingerprint={"model": arg})


def _local_model(arg: str, path: Path, cfg: GrpoConfig) -> ModelSpec:
    run_config = path / "config.yaml"
    if run_config.is_file() and (path / "adapter").is_dir():
        run_cfg = read_run_config(run_config)
        adapter = path / "adapter"
        _require_adapter(adapter, arg)
        return ModelSpec(arg, path.resolve().name, "run", run_cfg.model.name, run_cfg, adapter,
                         path, fingerprint=fingerprint(adapter))  # fmt: skip
    if run_config.is_file() and (path / "checkpoints").is_dir():
        raise GrpoError(
            f"--model {arg}: the run has no adapter/ yet (it did not finish)",
            f"finish it with `grpo train {run_config} --resume`, or evaluate a checkpoint: "
            f"--model {path / 'checkpoints' / 'checkpoint-N'}",
        )
    if (path / "adapter_config.json").is_file():
        _require_adapter(path, arg)
        from grpo_cli.training.rundir import adapter_base, enclosing_run

        base, _ = adapter_base(path)
        run_dir = enclosing_run(path)
        run = run_dir.path if run_dir is not None else None
        model_cfg = read_run_config(run_dir.config) if run_dir is not None else cfg
        label = path.resolve().name
        if run is not None and label != "adapter":
            label = f"{run.name}-{label}"  # a checkpoint of a run
        elif run is not None:
            label = run.name
        return ModelSpec(arg, label, "adapter", base, model_cfg, path, run,
                         fingerprint(path))  # fmt: skip
    if (path / "config.json").is_file():
        from grpo_cli.modelcard import CONFIG_FILE

        trained = path / CONFIG_FILE  # grpo merge copies the run's config beside the weights
        model_cfg = read_run_config(trained) if trained.is_file() else cfg
        return ModelSpec(arg, path.resolve().name, "merged", str(path), model_cfg,
                         fingerprint=fingerprint(path))  # fmt: skip
    raise GrpoError(
        f"--model {arg}: {path} holds no model (no adapter_config.json, config.json or run "
        "config.yaml)",
        "give a run directory (outputs/<run>), its adapter/ folder, or a merged-model folder",
    )


def _require_adapter(path: Path, arg: str) -> None:
    if not any(path.glob("adapter_model.*")):
        raise GrpoError(
            f"--model {arg}: {path} has adapter_config.json but no adapter_model weights",
            "the save was interrupted: train again, or point at a complete checkpoint",
        )


def read_run_config(path: Path) -> GrpoConfig:
    """A run's saved config, schema-checked only: the run was validated when it started, and
    its relative paths (plugins, data) need not resolve from where eval runs."""
    import yaml
    from pydantic import ValidationError

    from grpo_cli.config.yamlio import load_text

    try:
        return GrpoConfig.model_validate(load_text(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValidationError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise GrpoError(
            f"{path}: not a readable run config ({first})",
            "the run directory was changed by hand or written by another version",
        ) from exc


def fingerprint(folder: Path) -> dict[str, Any]:
    """Weight files by name, size and modification time: retraining a run into the same
    folder changes them, so its old predictions are not reused."""
    files = sorted(
        p for p in folder.iterdir()
        if p.suffix in (".safetensors", ".bin") and p.name != "training_args.bin"
    )  # fmt: skip
    weights = {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in files}
    return {"path": str(folder.resolve()), "weights": weights}


# ---------------------------------------------------------------- which rows


def eval_rows(cfg: GrpoConfig, split: str | None, specs: list[ModelSpec]):
    """(split name, raw rows, row ids to keep or None, description) for every model alike."""
    from grpo_cli.data.loading import read_split

    d = cfg.data
    name = split or d.eval_split
    if name == "heldout":
        return ("heldout", *heldout_rows(cfg, specs))
    if name.lower().endswith(DATA_SUFFIXES) or looks_like_path(name):
        raw = read_split(name, name, primary_split=name)
        return Path(name).stem, raw, None, display_path(Path(name))
    raw = read_split(d.source, name, subset=d.subset, primary_split=d.split,
                     seed=cfg.training.seed)  # fmt: skip
    return name, raw, None, f"{d.source} [{name}]"


def heldout_rows(cfg: GrpoConfig, specs: list[ModelSpec]):
    """The held-out slice a run recorded (the same for every run compared), or the config's."""
    from grpo_cli.data.loading import format_split, heldout_ids, read_heldout, read_split
    from grpo_cli.data.prompts import PromptFormat

    records = {}
    for spec in specs:
        if spec.run is not None:
            record = read_heldout(spec.run)
            records[json.dumps(record, sort_keys=True)] = (spec.run, record)
    if len(records) > 1:
        runs = ", ".join(str(run) for run, _ in records.values())
        raise GrpoError(
            f"--split heldout: the runs held out different rows ({runs})",
            "compare them on the test split, or evaluate each run on its own",
        )
    if records:
        _, r = next(iter(records.values()))
        raw = read_split(r["source"], r["split"], subset=r.get("subset"), primary_split=r["split"],
                         seed=r["seed"], limit=r.get("limit"))  # fmt: skip
        return raw, set(r["row_ids"]), f"{r['source']} [{r['split']}] held-out rows"
    d = cfg.data
    if not d.heldout_size:
        raise GrpoError(
            "--split heldout: no run among --model and data.heldout_size is 0",
            "evaluate a run directory (--model outputs/<run>), or use --split test",
        )
    raw = read_split(d.source, d.split, subset=d.subset, primary_split=d.split,
                     seed=cfg.training.seed, limit=d.limit)  # fmt: skip
    from grpo_cli.data.loading import DataReport

    formatted = format_split(raw, d.formatter, PromptFormat.from_config(d),
                             DataReport(d.source, d.split))  # fmt: skip
    ids = heldout_ids(formatted["row_id"], d.heldout_size, cfg.training.seed)
    return raw, set(ids), f"{d.source} [{d.split}] held-out rows"


def model_rows(raw: Any, spec: ModelSpec, wanted: set[int] | None, limit: int | None) -> list:
    """The rows in this model's prompt format; row ids are the same for every model."""
    from grpo_cli.data.loading import DataReport, format_split
    from grpo_cli.data.prompts import PromptFormat

    d = spec.cfg.data
    rows = format_split(raw, d.formatter, PromptFormat.from_config(d),
                        DataReport(d.source, "eval"))  # fmt: skip
    out = [row for row in rows if wanted is None or row["row_id"] in wanted]
    return out[:limit] if limit else out


# ---------------------------------------------------------------- predictions


def predict(spec, rows, sampling, data_desc, batch_size, output, engine, console):
    """Every row's graded prediction: the finished ones read back, the rest generated."""
    from grpo_cli.data.prompts import PromptFormat
    from grpo_cli.evaluation.predictions import PredictionFile, generate_and_grade

    fmt = PromptFormat.from_config(spec.cfg.data)
    settings = {
        "model": spec.fingerprint,
        "data": data_desc,
        "prompt": asdict(fmt),
        "samples": sampling.samples,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_new_tokens": sampling.max_new_tokens,
        "seed": sampling.seed,
    }
    file = PredictionFile(output / spec.label)
    done = file.open(settings)
    todo = [row for row in rows if row["row_id"] not in done]
    engine_name = _previous_engine(file.metrics_path)
    if done and todo:
        console.print(f"{spec.label}: {len(rows) - len(todo)} rows reused from {file.path}")
    elif done:
        console.print(f"{spec.label}: all {len(rows)} rows reused from {file.path}")
    if todo:
        generator = load_engine(spec, engine, console)
        engine_name = generator.name
        finished = [done[r["row_id"]] for r in rows if r["row_id"] in done]
        progress = EvalProgress(console, spec.label, len(rows), finished)
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
                f"{spec.label}: {len(done)} of {len(rows)} rows are saved in {file.path}; the "
                "same command continues from there",
                markup=False,
            )
            raise
        progress.close()
    return [done[r["row_id"]] for r in rows], engine_name


def _previous_engine(path: Path) -> str:
    try:
        return str(json.loads(path.read_text(encoding="utf-8")).get("engine", "unknown"))
    except (OSError, json.JSONDecodeError):
        return "unknown"


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

            self.bar = Progress(TextColumn(f"{label}"), BarColumn(),
                                TextColumn("{task.completed}/{task.total}"),
                                TimeRemainingColumn(), TextColumn("{task.fields[acc]}"),
                                console=console)  # fmt: skip
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


def load_engine(spec: ModelSpec, engine: str, console: Console):
    """vLLM on a CUDA GPU when installed (or asked for), else transformers generation."""
    from grpo_cli.hardware import installed, probe

    hw = probe()
    if engine == "auto":
        engine = "vllm" if hw.device == "cuda" and installed("vllm") else "transformers"
    if engine == "vllm" and (hw.device != "cuda" or not installed("vllm")):
        raise GrpoError(
            "--engine vllm needs a CUDA GPU and vllm installed",
            "pip install -e '.[gpu]' on a GPU machine, or use --engine transformers",
        )
    from grpo_cli.training.models import load_tokenizer

    m = spec.cfg.model
    tok_cfg = spec.cfg.model_copy(
        update={"model": m.model_copy(update={"name": _tokenizer_source(spec)})}
    )
    tokenizer = load_tokenizer(tok_cfg)
    console.print(f"{spec.label}: generating with {engine} on {hw.describe()}", markup=False)
    if engine == "vllm":
        from grpo_cli.evaluation.generate import VllmEngine

        return VllmEngine(spec.base, tokenizer, adapter=str(spec.adapter) if spec.adapter else None,
                          lora_rank=spec.cfg.lora.r, revision=_revision(spec),
                          trust_remote_code=m.trust_remote_code,
                          max_model_len=m.max_seq_length)  # fmt: skip
    from grpo_cli.evaluation.generate import TransformersEngine

    return TransformersEngine(load_transformers_model(spec, hw), tokenizer)


def _tokenizer_source(spec: ModelSpec) -> str:
    """The adapter's own tokenizer when it was saved with one (grpo train saves it)."""
    if spec.adapter is not None and (spec.adapter / "tokenizer_config.json").is_file():
        return str(spec.adapter)
    return spec.base


def _revision(spec: ModelSpec) -> str | None:
    return spec.cfg.model.revision if spec.kind in ("base", "run", "adapter") else None


def load_transformers_model(spec: ModelSpec, hw: Any) -> Any:
    """The model in 16 bit on a GPU (bf16 where supported), fp32 on CPU; an adapter is merged
    into it for generation speed. Quantized training weights are not reproduced: the adapter
    is evaluated on the 16-bit base, as `grpo merge` ships it."""
    import torch
    from transformers import AutoModelForCausalLM

    from grpo_cli.training.models import load_error

    dtype = torch.float32
    if hw.device == "cuda":
        dtype = torch.bfloat16 if hw.bf16 else torch.float16
    m = spec.cfg.model
    try:
        model = AutoModelForCausalLM.from_pretrained(
            spec.base, revision=_revision(spec), dtype=dtype,
            trust_remote_code=m.trust_remote_code,
        )  # fmt: skip
        if spec.adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(spec.adapter)).merge_and_unload()
    except Exception as exc:
        cfg = spec.cfg.model_copy(update={"model": m.model_copy(update={"name": spec.base})})
        raise load_error(cfg, "model", exc) from exc
    if hw.device in ("cuda", "mps"):
        model = model.to(hw.device)
    return model.eval()


def record_in_run(run: Path, split_name: str, samples: int, metrics: dict[str, Any]) -> None:
    """eval.json in the run directory: what `grpo merge` puts in the model card."""
    from grpo_cli.training.rundir import RunDir

    path = RunDir(run).evals
    try:
        evals = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except json.JSONDecodeError:
        evals = {}
    key = split_name if samples == 1 else f"{split_name}@{samples}"
    evals[key] = metrics
    RunDir(run).write_json(path, evals)


# ---------------------------------------------------------------- the table


def compare(results: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Each model against the first, on the rows both have (strict accuracy per row)."""
    if len(results) < 2:
        return []
    reference = {r["row_id"]: row_scores(r) for r in results[0]["records"]}
    out = []
    for result in results[1:]:
        other = {r["row_id"]: row_scores(r) for r in result["records"]}
        common = [i for i in reference if i in other]
        test = paired_comparison([reference[i] for i in common], [other[i] for i in common], seed)
        out.append({"model": result["metrics"]["model"], "metric": "strict_accuracy", **test})
    return out


def _pct(value: float, ci: list[float] | None = None) -> str:
    text = f"{100 * value:.1f}%"
    if ci:
        text += f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
    return text


def print_table(results, comparisons, sampling: Sampling) -> None:
    k = sampling.samples
    mode = "greedy" if sampling.greedy else f"T={sampling.temperature:g}, {k} samples"
    title = f"grpo eval: {results[0]['metrics']['data']} ({mode}); 95% intervals"
    table = Table(title=escape(title), title_justify="left")
    columns = ["model", "rows", "strict acc", "flexible acc", "format", "truncated", "tokens"]
    if k > 1:
        columns += [f"pass@{k}", f"maj@{k}"]
    if len(results) > 1:
        columns += ["vs first (strict)", "p"]
    for column in columns:
        table.add_column(column, justify="left" if column == "model" else "right")
    by_model = {c["model"]: c for c in comparisons}
    for result in results:
        m = result["metrics"]
        cells = [
            m["model"], str(m["rows"]),
            _pct(m["strict_accuracy"], m["strict_accuracy_ci95"]),
            _pct(m["flexible_accuracy"], m["flexible_accuracy_ci95"]),
            _pct(m["format_rate"]), _pct(m["truncation_rate"]),
            f"{m['mean_completion_tokens']:.0f}",
        ]  # fmt: skip
        if k > 1:
            cells += [_pct(m[f"pass@{k}"], m[f"pass@{k}_ci95"]),
                      _pct(m[f"maj@{k}"], m[f"maj@{k}_ci95"])]  # fmt: skip
        if len(results) > 1:
            c = by_model.get(m["model"])
            if c is None:
                cells += ["reference", ""]
            else:
                lo, hi = c["difference_ci95"]
                cells += [f"{100 * c['difference']:+.1f} pts [{100 * lo:+.1f}, {100 * hi:+.1f}]",
                          f"{c['p_value']:.3g}"]  # fmt: skip
        table.add_row(*cells)
    out = Console()
    if not out.is_terminal:  # a log file or a pipe: keep one row per line
        out = Console(width=200)
    out.print(table)
