"""What `grpo eval` shows and compares: each model against the first on the rows both have
(a paired test), and one table of accuracies with their 95% intervals."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from grpo_cli.evaluation.generate import Sampling
from grpo_cli.evaluation.metrics import paired_comparison, row_scores


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


def print_table(
    results: list[dict[str, Any]], comparisons: list[dict[str, Any]], sampling: Sampling
) -> None:
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
            m["model"],
            str(m["rows"]),
            _pct(m["strict_accuracy"], m["strict_accuracy_ci95"]),
            _pct(m["flexible_accuracy"], m["flexible_accuracy_ci95"]),
            _pct(m["format_rate"]),
            _pct(m["truncation_rate"]),
            f"{m['mean_completion_tokens']:.0f}",
        ]
        if k > 1:
            cells += [
                _pct(m[f"pass@{k}"], m[f"pass@{k}_ci95"]),
                _pct(m[f"maj@{k}"], m[f"maj@{k}_ci95"]),
            ]
        if len(results) > 1:
            c = by_model.get(m["model"])
            if c is None:
                cells += ["reference", ""]
            else:
                lo, hi = c["difference_ci95"]
                cells += [
                    f"{100 * c['difference']:+.1f} pts [{100 * lo:+.1f}, {100 * hi:+.1f}]",
                    f"{c['p_value']:.3g}",
                ]
        table.add_row(*cells)
    out = Console()
    if not out.is_terminal:  # a log file or a pipe: keep one row per line
        out = Console(width=200)
    out.print(table)
