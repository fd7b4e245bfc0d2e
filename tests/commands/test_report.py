"""`grpo report`: what is drawn is what metrics.jsonl holds, several runs share the axes, and the
page carries the warnings and the samples, escaped and self-contained."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from grpo_cli import reporting
from grpo_cli.evaluation.metrics import wilson_interval

from ..conftest import smoke_args

STEPS = [1, 2, 3, 4, 5, 6]


def make_run(folder: Path, offset: float = 0.0, *, kl: bool = False) -> Path:
    """A run directory with known metrics: reward i/10 + offset, held-out accuracy every 2 steps
    on 20 rows, one health warning, two sampled steps."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("model: {name: x}\neval: {every_steps: 2, rows: 20}\n")
    (folder / "env.json").write_text("{}")
    records = []
    for i in STEPS:
        record = {
            "step": i,
            "reward": i / 10 + offset,
            "reward_std": 0.05,
            "rewards/correctness/mean": i / 20 + offset,
            "rewards/correctness/std": 0.1,
            "accuracy": i / 20,
            "completions/mean_length": 30.0 + i,
            "completions/clipped_ratio": 0.5,
            "frac_reward_zero_std": 1 - i / 10,
            "learning_rate": 1e-4,
            "step_time": 0.25,
        }
        if kl:
            record["kl"] = i / 100
        if i % 2 == 0:
            record["eval/strict_accuracy"] = i / 20
        records.append(record)
    text = "".join(json.dumps(r) + "\n" for r in records)
    (folder / "metrics.jsonl").write_text(text + '{"step": 7, "rew')  # a cut last line
    (folder / "health.jsonl").write_text(
        json.dumps({"code": "zero_spread", "step": 3, "message": "most groups <equal>", "fix": "x"})
        + "\n"
    )
    samples = [
        {
            "step": s,
            "prompt": [{"role": "user", "content": f"Q{s}?"}],
            "gold": "4",
            "completion": f"<answer>{s}</answer></script>",
            "rewards": {"correctness": 0.0},
        }
        for s in (2, 4, 6)
    ]
    (folder / "completions.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    return folder


def drawn_lines(drawn: list[reporting.Drawn], name: str) -> dict[str, tuple[list, list]]:
    [d] = [d for d in drawn if d.panel.name == name]
    return {
        line.get_label(): (list(line.get_xdata()), list(line.get_ydata()))
        for line in d.figure.axes[0].get_lines()
    }


def embedded_series(page: Path) -> dict:
    match = re.search(r"id='grpo-series'>(.*?)</script>", page.read_text(), re.S)
    assert match
    return json.loads(match.group(1).replace("<\\/", "</"))


def test_each_panel_draws_the_values_of_metrics_jsonl(tmp_path):
    run = reporting.read_run(make_run(tmp_path / "a"))
    drawn = reporting.draw([run])
    assert drawn_lines(drawn, "reward") == {"a": (STEPS, [i / 10 for i in STEPS])}
    assert drawn_lines(drawn, "reward-correctness") == {"a": (STEPS, [i / 20 for i in STEPS])}
    assert drawn_lines(drawn, "zero-spread")["a"][1] == [1 - i / 10 for i in STEPS]
    assert drawn_lines(drawn, "heldout-accuracy") == {"a": ([2, 4, 6], [0.1, 0.2, 0.3])}
    # The band around the total reward is +-reward_std; the held-out one is the 95% Wilson
    # interval on the run's 20 evaluation rows.
    [reward] = [d for d in drawn if d.panel.name == "reward"]
    ys = {
        round(float(y), 6)
        for y in reward.figure.axes[0].collections[0].get_paths()[0].vertices[:, 1]
    }
    assert {round(i / 10 - 0.05, 6) for i in STEPS} <= ys
    [held] = [d for d in drawn if d.panel.name == "heldout-accuracy"]
    ys = {
        round(float(y), 6) for y in held.figure.axes[0].collections[0].get_paths()[0].vertices[:, 1]
    }
    lo, hi = wilson_interval(4, 20)
    assert {round(lo, 6), round(hi, 6)} <= ys


def test_a_metric_never_logged_has_no_panel(tmp_path):
    names = [d.panel.name for d in reporting.draw([reporting.read_run(make_run(tmp_path / "a"))])]
    assert "kl" not in names and "reward" in names and "step-time" in names
    with_kl = reporting.draw([reporting.read_run(make_run(tmp_path / "b", kl=True))])
    assert drawn_lines(with_kl, "kl") == {"b": (STEPS, [i / 100 for i in STEPS])}


def test_three_runs_share_each_panel_in_their_own_colour(tmp_path):
    runs = [
        reporting.read_run(make_run(tmp_path / n, o)) for n, o in (("a", 0), ("b", 1), ("c", 2))
    ]
    drawn = reporting.draw(runs)
    for d in drawn:
        lines = d.figure.axes[0].get_lines()
        assert [line.get_label() for line in lines] == ["a", "b", "c"], d.panel.name
        assert len({line.get_color() for line in lines}) == 3
    assert drawn_lines(drawn, "reward")["c"][1] == [i / 10 + 2 for i in STEPS]


def test_grpo_report_writes_figures_and_a_self_contained_page(cli, tmp_path):
    run = make_run(tmp_path / "a")
    result = cli("report", run)
    assert result.code == 0, result.err
    page = run / "report" / "report.html"
    assert (run / "report" / "reward.png").read_bytes()[:4] == b"\x89PNG"
    text = page.read_text()
    assert "src='data:image/png;base64," in text and "http" not in text
    assert "most groups &lt;equal&gt;" in text  # the warning, escaped
    assert "&lt;answer&gt;2&lt;/answer&gt;&lt;/script&gt;" in text  # first sampled step
    assert "&lt;answer&gt;6&lt;/answer&gt;" in text and "&lt;answer&gt;4" not in text  # last
    series = embedded_series(page)
    assert series["reward"] == [{"label": "a", "x": STEPS, "y": [i / 10 for i in STEPS]}]


def test_several_runs_go_to_the_output_folder(cli, tmp_path):
    runs = [make_run(tmp_path / n, o) for n, o in (("a", 0), ("b", 1), ("c", 2))]
    result = cli("report", *runs, "-o", tmp_path / "cmp")
    assert result.code == 0, result.err
    series = embedded_series(tmp_path / "cmp" / "report.html")
    assert [s["label"] for s in series["train-accuracy"]] == ["a", "b", "c"]


def test_a_folder_that_is_not_a_run_is_named(cli, tmp_path):
    good = make_run(tmp_path / "a")
    result = cli("report", good, tmp_path, "-o", tmp_path / "out")
    assert result.code == 2
    assert f"Error: {tmp_path} is not a run directory" in result.err and "Hint:" in result.err
    assert not (tmp_path / "out").exists()


def test_a_run_without_metrics_yet_still_gets_a_page(cli, tmp_path):
    run = make_run(tmp_path / "a")
    (run / "metrics.jsonl").unlink()
    result = cli("report", run)
    assert result.code == 0, result.err
    assert "No metrics logged yet" in (run / "report" / "report.html").read_text()


def test_a_report_that_cannot_be_drawn_never_fails_the_run(tmp_path, monkeypatch, capsys):
    from grpo_cli.commands.report import report_into_run

    def broken(*args: object) -> Path:
        raise RuntimeError("no fonts")

    monkeypatch.setattr("grpo_cli.commands.report.write", broken)
    report_into_run(make_run(tmp_path / "a"), Console(file=None, stderr=False))
    out = capsys.readouterr().out
    assert "no report drawn (RuntimeError: no fonts)" in out and "grpo report" in out


@pytest.mark.slow
def test_grpo_train_draws_its_own_report_from_what_it_logged(cli, tiny_model, tmp_path):
    result = cli(*smoke_args(tiny_model, tmp_path))
    assert result.code == 0, result.err
    run = tmp_path / "outputs" / "smoke-cpu"
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    series = embedded_series(run / "report" / "report.html")
    trained = [m for m in metrics if m["step"]]  # step 0 holds the held-out figures alone
    assert series["reward"] == [
        {
            "label": "smoke-cpu",
            "x": [m["step"] for m in trained],
            "y": [m["reward"] for m in trained],
        }
    ]
    held = [m for m in metrics if "eval/strict_accuracy" in m]
    # the held-out curve starts at step 0: the model training started from
    assert series["heldout-accuracy"][0]["x"] == [0, 2, 4]
    assert series["heldout-accuracy"][0]["y"] == [m["eval/strict_accuracy"] for m in held]
    assert (run / "report" / "truncation.png").is_file()


def test_merge_puts_the_reward_and_accuracy_figure_beside_the_card(tmp_path):
    from types import SimpleNamespace

    from grpo_cli.merging.card import training_figure
    from grpo_cli.modelcard import CardFacts, model_card
    from grpo_cli.training.rundir import RunDir

    run = make_run(tmp_path / "a")
    src = SimpleNamespace(run=RunDir(run))
    name = training_figure(src, tmp_path)  # type: ignore[arg-type]
    assert name == "training.png" and (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    card = model_card(CardFacts(base_model="b", dtype="bf16", config={"training": {}}, figure=name))
    assert "![Reward and accuracy during training](training.png)" in card
    (run / "metrics.jsonl").unlink()  # nothing to draw: no figure, and the card says nothing
    assert training_figure(src, tmp_path / "none") is None  # type: ignore[arg-type]
    assert training_figure(SimpleNamespace(run=None), tmp_path) is None  # type: ignore[arg-type]


def test_grpo_eval_results_are_points_with_their_interval_after_the_last_step(tmp_path):
    run = make_run(tmp_path / "a")
    evals = {"test": {"strict_accuracy": 0.4, "strict_accuracy_ci95": [0.3, 0.5]}}
    (run / "eval.json").write_text(json.dumps(evals))
    drawn = reporting.draw([reporting.read_run(run)])
    assert drawn_lines(drawn, "heldout-accuracy")["a: grpo eval test"] == ([6], [0.4])
    [held] = [d for d in drawn if d.panel.name == "heldout-accuracy"]
    bars = [c for c in held.figure.axes[0].collections if hasattr(c, "get_segments")]
    assert [[tuple(p) for p in s] for s in bars[-1].get_segments()] == [[(6, 0.3), (6, 0.5)]]


def test_grpo_eval_results_alone_get_the_heldout_panel_and_sampled_ones_are_left_out(tmp_path):
    """A run evaluated with `grpo eval` but no eval.every_steps still shows its held-out
    accuracy; `--samples K` results (split@K) are not greedy, and a damaged entry is skipped."""
    run = make_run(tmp_path / "a")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    kept = [json.loads(line) for line in lines[:-1]]
    for record in kept:
        record.pop("eval/strict_accuracy", None)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    evals = {
        "test": {"strict_accuracy": 0.4, "strict_accuracy_ci95": [0.3, 0.5]},
        "test@8": {"strict_accuracy": 0.9},
        "broken": [1, 2],
    }
    (run / "eval.json").write_text(json.dumps(evals))
    drawn = reporting.draw([reporting.read_run(run)])
    lines = drawn_lines(drawn, "heldout-accuracy")
    assert lines["a: grpo eval test"] == ([6], [0.4])
    assert [label for label in lines if label.startswith("a:")] == ["a: grpo eval test"]
    assert reporting.card_figure(reporting.read_run(run)) is not None
