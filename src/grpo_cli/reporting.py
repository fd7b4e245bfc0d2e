"""Pictures of training runs: one PNG per metric (several runs overlaid on the same axes) and one
self-contained HTML page with the figures, the health warnings and sampled completions.

Reading a run is plain file work; matplotlib is imported only inside the drawing functions, so
`grpo --help` never pays for it.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from grpo_cli.errors import GrpoError
from grpo_cli.evaluation.metrics import wilson_interval
from grpo_cli.files import read_jsonl
from grpo_cli.model_source import is_run_dir, read_json, read_run_config
from grpo_cli.training import health
from grpo_cli.training.rundir import RunDir

if TYPE_CHECKING:
    from matplotlib.figure import Figure

HELDOUT = "eval/strict_accuracy"
# Sampled completions shown for the first and for the last sampled step: enough to see what the
# model writes, few enough that the page stays readable.
SAMPLES_SHOWN = 3


@dataclass(frozen=True)
class Panel:
    name: str  # the PNG's file stem
    title: str
    ylabel: str
    key: str  # the metrics.jsonl field drawn
    band: str | None = None  # the field whose value spreads a band of +-1 around the line


@dataclass
class Run:
    label: str
    path: Path
    metrics: list[dict[str, Any]]
    warnings: list[health.HealthWarning]
    evals: dict[str, Any]  # eval.json: {split: metrics} written by `grpo eval`
    completions: list[dict[str, Any]]
    heldout_rows: int | None  # rows behind each eval/strict_accuracy, for its interval

    def series(self, key: str) -> tuple[list[float], list[float]]:
        """Steps and values of KEY where the record has a finite number for it."""
        xs, ys = [], []
        for record in self.metrics:
            value = record.get(key)
            if isinstance(value, int | float) and math.isfinite(value):
                xs.append(float(record["step"]))
                ys.append(float(value))
        return xs, ys


@dataclass
class Drawn:
    panel: Panel
    figure: Figure
    series: list[dict[str, Any]] = field(default_factory=list)


def read_run(path: Path, label: str | None = None) -> Run:
    """A run directory's metrics, warnings, evaluations and samples; a folder that is not a run
    is a user error naming it."""
    if not is_run_dir(path):
        raise GrpoError(
            f"{path} is not a run directory (it has no config.yaml and env.json)",
            "name a folder `grpo train` wrote, e.g. outputs/<run_name>",
        )
    run = RunDir(path)
    config = read_run_config(run.config)
    rows = (config.get("eval") or {}).get("rows")
    heldout = read_json(path / "heldout.json") if (path / "heldout.json").is_file() else {}
    if isinstance(rows, int) and heldout.get("row_ids") is not None:
        rows = min(rows, len(heldout["row_ids"]))
    return Run(
        label=label or path.name,
        path=path,
        metrics=[r for r in read_jsonl(run.metrics) if isinstance(r.get("step"), int)],
        warnings=health.read(path),
        evals=_greedy_evals(read_json(run.evals) if run.evals.is_file() else {}),
        completions=read_jsonl(run.completions),
        heldout_rows=rows if isinstance(rows, int) else None,
    )


def labels_for(paths: list[Path]) -> list[str]:
    """Each run's folder name, or its path where two runs share a name."""
    names = [p.name for p in paths]
    return [p.name if names.count(p.name) == 1 else str(p) for p in paths]


def _greedy_evals(found: Any) -> dict[str, Any]:
    """eval.json's greedy results by split: `grpo eval --samples K` ones (split@K) are sampled,
    not what the held-out greedy panel shows, and an entry that is not an object is skipped."""
    if not isinstance(found, dict):
        return {}
    return {k: v for k, v in found.items() if isinstance(v, dict) and "@" not in str(k)}


def panels(runs: list[Run]) -> list[Panel]:
    """The panels at least one run has data for, in reading order."""
    reward_names = []
    for run in runs:
        for record in run.metrics:
            for key in record:
                name = key[len("rewards/") : -len("/mean")]
                if (
                    key.startswith("rewards/")
                    and key.endswith("/mean")
                    and name not in reward_names
                ):
                    reward_names.append(name)
    # TRL 1.15 logs reward_std and rewards/<name>/std as the std over all of the step's
    # completions (trl/trainer/grpo_trainer.py: nanstd(rewards)), not within groups.
    candidates = [
        Panel(
            "reward",
            "Total reward (band: std over the step's completions)",
            "reward",
            "reward",
            "reward_std",
        ),
        *[
            Panel(
                f"reward-{n}",
                f"Reward: {n} (band: std)",
                "mean reward",
                f"rewards/{n}/mean",
                f"rewards/{n}/std",
            )
            for n in reward_names
        ],
        Panel("train-accuracy", "Train accuracy (sampled completions)", "accuracy", "accuracy"),
        Panel(
            "heldout-accuracy", "Held-out greedy accuracy (band: 95% interval)", "accuracy", HELDOUT
        ),
        Panel("completion-length", "Completion length", "tokens", "completions/mean_length"),
        Panel(
            "truncation",
            "Completions cut at max_completion_length",
            "share",
            "completions/clipped_ratio",
        ),
        Panel(
            "zero-spread",
            "Groups whose rewards were all equal (no signal)",
            "share",
            "frac_reward_zero_std",
        ),
        Panel("kl", "KL to the reference model", "KL", "kl"),
        Panel("learning-rate", "Learning rate", "learning rate", "learning_rate"),
        Panel("step-time", "Step time", "seconds", "step_time"),
    ]
    return [
        p
        for p in candidates
        if any(run.series(p.key)[0] or (p.key == HELDOUT and run.evals) for run in runs)
    ]


def draw(runs: list[Run]) -> list[Drawn]:
    """One figure per panel, each run a line in its own colour (the same in every panel)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: reports are drawn on servers and in CI
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    out = []
    for panel in panels(runs):
        figure = Figure(figsize=(7.5, 3.6), dpi=100, layout="constrained")
        ax = figure.add_subplot()
        for i, run in enumerate(runs):
            _draw_run(ax, panel, run, color=f"C{i % 10}", index=i)
        ax.set_title(panel.title, fontsize=11, loc="left")
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(panel.ylabel)
        ax.grid(alpha=0.3)
        if panel.key == "learning_rate":
            # each tick written out: matplotlib's shared "1e-4" offset label overlaps the title
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.1e}"))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
        out.append(Drawn(panel, figure, series=_read_back(figure)))
    return out


def card_figure(run: Run) -> bytes | None:
    """Reward and accuracy side by side, the figure a model card shows; None without metrics."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    available = {p.key: p for p in panels([run])}
    if "reward" not in available:
        return None
    figure = Figure(figsize=(10, 3.6), dpi=100, layout="constrained")
    reward_ax, accuracy_ax = figure.subplots(1, 2)
    _draw_run(reward_ax, available["reward"], run, color="C0")
    reward_ax.set_title("Total reward (band: std)", fontsize=11, loc="left")
    reward_ax.set_ylabel("reward")
    for key, color in (("accuracy", "C1"), (HELDOUT, "C2")):
        if key in available:
            label = "train (sampled)" if key == "accuracy" else "held-out (greedy, 95% band)"
            _draw_run(accuracy_ax, available[key], replace(run, label=label), color)
    accuracy_ax.set_title("Accuracy", fontsize=11, loc="left")
    accuracy_ax.set_ylabel("accuracy")
    if accuracy_ax.get_legend_handles_labels()[0]:
        accuracy_ax.legend(fontsize=8, loc="best")
    for ax in (reward_ax, accuracy_ax):
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    return png(figure)


def _draw_run(ax: Any, panel: Panel, run: Run, color: str, index: int = 0) -> None:
    xs, ys = run.series(panel.key)
    if xs:
        ax.plot(xs, ys, color=color, label=run.label, marker="." if len(xs) < 30 else None)
        lows, highs = _band(panel, run, xs, ys)
        if lows:
            ax.fill_between(xs, lows, highs, color=color, alpha=0.18, linewidth=0)
    if panel.key == HELDOUT:
        _draw_evals(ax, run, color, at=max(xs) if xs else _last_step(run), index=index)


def _band(
    panel: Panel, run: Run, xs: list[float], ys: list[float]
) -> tuple[list[float], list[float]]:
    if panel.key == HELDOUT:
        if not run.heldout_rows:
            return [], []
        n = run.heldout_rows
        bounds = [wilson_interval(round(y * n), n) for y in ys]
        return [lo for lo, _ in bounds], [hi for _, hi in bounds]
    if panel.band is None:
        return [], []
    spread = dict(zip(*run.series(panel.band), strict=True))
    if not all(x in spread for x in xs):
        return [], []
    return [y - spread[x] for x, y in zip(xs, ys, strict=True)], [
        y + spread[x] for x, y in zip(xs, ys, strict=True)
    ]


def _draw_evals(ax: Any, run: Run, color: str, at: float, index: int) -> None:
    """`grpo eval`'s results on the run: a point with its 95% interval after the last step,
    moved aside a little per run so that runs of equal length do not hide each other's."""
    for offset, (split, metrics) in enumerate(sorted(run.evals.items())):
        value, ci = metrics.get("strict_accuracy"), metrics.get("strict_accuracy_ci95")
        if not isinstance(value, int | float):
            continue
        x = at * (1 + 0.015 * index) + offset * 0.5
        if isinstance(ci, list) and len(ci) == 2:
            ax.errorbar(
                [x],
                [value],
                yerr=[[value - ci[0]], [ci[1] - value]],
                fmt="none",
                ecolor=color,
                capsize=4,
            )
        ax.plot(
            [x],
            [value],
            color=color,
            marker="D",
            linestyle="none",
            label=f"{run.label}: grpo eval {split}",
        )


def _last_step(run: Run) -> float:
    return float(run.metrics[-1]["step"]) if run.metrics else 0.0


def _read_back(figure: Figure) -> list[dict[str, Any]]:
    """The lines as drawn, taken from the figure itself: what the HTML embeds for a reader (or a
    test) to check the picture against metrics.jsonl."""
    return [
        {
            "label": line.get_label(),
            "x": [float(v) for v in cast(Sequence[float], line.get_xdata())],
            "y": [float(v) for v in cast(Sequence[float], line.get_ydata())],
        }
        for ax in figure.axes
        for line in ax.get_lines()
    ]


def png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def write(runs: list[Run], out: Path) -> Path:
    """PNG per panel and report.html (figures embedded, nothing fetched) into OUT."""
    out.mkdir(parents=True, exist_ok=True)
    drawn = draw(runs)
    images = {}
    for d in drawn:
        data = png(d.figure)
        (out / f"{d.panel.name}.png").write_bytes(data)
        images[d.panel.name] = data
    page = out / "report.html"
    page.write_text(html_page(runs, drawn, images), encoding="utf-8")
    return page


def html_page(runs: list[Run], drawn: list[Drawn], images: dict[str, bytes]) -> str:
    e = html.escape
    title = "grpo report: " + ", ".join(r.label for r in runs)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        _runs_table(runs),
        "<h2>Health warnings</h2>",
        _warnings(runs),
        "<h2>Figures</h2>",
    ]
    if not drawn:
        parts.append("<p>No metrics logged yet: metrics.jsonl has no step.</p>")
    for d in drawn:
        data = base64.b64encode(images[d.panel.name]).decode("ascii")
        parts.append(f"<img alt='{e(d.panel.title)}' src='data:image/png;base64,{data}'>")
    parts += ["<h2>Sampled completions</h2>", _samples(runs)]
    series = {d.panel.name: d.series for d in drawn}
    # "</" inside a script element would end it: a run label or a reward name could hold one.
    payload = json.dumps(series).replace("</", "<\\/")
    parts.append(f"<script type='application/json' id='grpo-series'>{payload}</script>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _runs_table(runs: list[Run]) -> str:
    e = html.escape
    rows = []
    for run in runs:
        steps = run.metrics[-1]["step"] if run.metrics else 0
        evals = ", ".join(
            f"{split}: {100 * m['strict_accuracy']:.1f}%"
            for split, m in sorted(run.evals.items())
            if isinstance(m.get("strict_accuracy"), int | float)
        )
        rows.append(
            f"<tr><td>{e(run.label)}</td><td>{e(str(run.path))}</td><td>{steps}</td>"
            f"<td>{e(evals) or '-'}</td></tr>"
        )
    return (
        "<table><tr><th>run</th><th>folder</th><th>last step</th><th>grpo eval (strict)</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _warnings(runs: list[Run]) -> str:
    e = html.escape
    items = [
        f"<li><b>{e(run.label)}</b>, step {w.step}: {e(w.message)}<br><i>fix:</i> {e(w.fix)}</li>"
        for run in runs
        for w in run.warnings
    ]
    return f"<ul>{''.join(items)}</ul>" if items else "<p>None.</p>"


def _samples(runs: list[Run]) -> str:
    e = html.escape
    parts = []
    for run in runs:
        steps = sorted({c["step"] for c in run.completions if isinstance(c.get("step"), int)})
        if not steps:
            continue
        for which, step in (("first", steps[0]), ("last", steps[-1]))[
            : 1 if len(steps) == 1 else 2
        ]:
            parts.append(f"<h3>{e(run.label)}: {which} sampled step ({step})</h3>")
            shown = [c for c in run.completions if c.get("step") == step][:SAMPLES_SHOWN]
            for c in shown:
                rewards = ", ".join(
                    f"{k} {v:g}" for k, v in (c.get("rewards") or {}).items() if v is not None
                )
                parts.append(
                    f"<div class='sample'><p><b>question:</b> {e(_question(c.get('prompt')))}"
                    f"<br><b>gold:</b> {e(str(c.get('gold')))} &nbsp; <b>rewards:</b> "
                    f"{e(rewards)}</p><pre>{e(str(c.get('completion', '')))}</pre></div>"
                )
    return "".join(parts) or "<p>No completions sampled (completions.jsonl is empty).</p>"


def _question(prompt: Any) -> str:
    """The user's turn of a chat prompt, or the prompt itself."""
    if isinstance(prompt, list):
        users = [
            m.get("content", "") for m in prompt if isinstance(m, dict) and m.get("role") == "user"
        ]
        return str(users[-1]) if users else ""
    return str(prompt)


_CSS = (
    "body{font-family:sans-serif;max-width:960px;margin:1em auto;padding:0 1em;color:#222}"
    "img{display:block;max-width:100%;margin:.5em 0}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}"
    "pre{white-space:pre-wrap;background:#f6f6f6;padding:.5em}"
    ".sample{border-left:3px solid #ddd;padding-left:.6em;margin:.6em 0}"
)
