"""`grpo report RUN [RUN ...]`: figures of one or more runs (overlaid) and one HTML page.

runs read -> figures drawn -> PNGs and report.html written -> where they are. The work is done
in `grpo_cli.reporting`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from rich.console import Console

from grpo_cli.config.yamlio import display_path
from grpo_cli.reporting import labels_for, read_run, write


def report(run_paths: list[Path], output: Path | None = None) -> Path:
    runs = [read_run(p, label) for p, label in zip(run_paths, labels_for(run_paths), strict=True)]
    if output is None:
        output = (
            run_paths[0] / "report"
            if len(run_paths) == 1
            else Path(f"report-{datetime.now():%Y%m%d-%H%M%S}")
        )
    page = write(runs, output)
    Console(highlight=False, soft_wrap=True).print(
        f"report: {display_path(page)} (figures: {display_path(output)}/*.png)", markup=False
    )
    return page


def report_into_run(run_path: Path, console: Console) -> None:
    """The run's own report, at the end of `grpo train` or on its Ctrl-C: a picture that cannot
    be drawn is said in one line and never fails the run it describes."""
    try:
        page = write([read_run(run_path)], run_path / "report")
    except Exception as exc:  # noqa: BLE001 (the run is saved; the report is a courtesy)
        console.print(
            f"note: no report drawn ({type(exc).__name__}: {exc}); "
            f"try again with: grpo report {display_path(run_path)}",
            markup=False,
        )
        return
    console.print(f"report: {display_path(page)}", markup=False)
