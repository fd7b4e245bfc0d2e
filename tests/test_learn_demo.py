"""The learning demo (scripts/learn_cpu.py): its four stages run through the real commands and
fit together (CI's short version; the demo itself is a benchmark, not a test), and its verdict
on the target is the one the figures give."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest

from tests.conftest import CONFIGS

ROOT = CONFIGS.parent
SCRIPT = ROOT / "scripts" / "learn_cpu.py"


def load_script():
    spec = importlib.util.spec_from_file_location("learn_cpu", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_demo_runs_every_stage_through_the_commands(tmp_path: Path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--outputs",
            str(tmp_path / "outputs"),
            "--models",
            str(tmp_path / "models"),
            "--threads",
            "1",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for stage in ("build", "warm-up", "GRPO", "eval", "report"):
        assert f"== {stage}: " in out
    assert " sft configs/learn_cpu_sft.yaml " in out
    assert " train configs/learn_cpu.yaml " in out
    # The warm-up is a full fine-tuning; GRPO starts from it, and eval's base is that model.
    warm = tmp_path / "outputs" / "learn-cpu-quick-sft"
    grpo = tmp_path / "outputs" / "learn-cpu-quick"
    assert (warm / "model" / "config.json").is_file()
    assert (grpo / "adapter" / "adapter_config.json").is_file()
    adapter = json.loads((grpo / "adapter" / "adapter_config.json").read_text())
    assert Path(adapter["base_model_name_or_path"]).resolve() == (warm / "model").resolve()
    comparison = json.loads((grpo / "heldout-eval" / "comparison.json").read_text())
    assert [m["model"] for m in comparison["models"]] == ["base", "learn-cpu-quick"]
    assert comparison["comparisons"][0]["rows"] == 8
    assert "held-out rows          8" in out
    assert (grpo / "report" / "report.html").is_file()
    # the held-out curve the report draws: the shipped config evaluates during GRPO
    logged = [json.loads(line) for line in (grpo / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "eval/strict_accuracy" in r] == [0, 1, 2]
    assert "total" in out


@pytest.mark.parametrize(
    ("gain", "p", "rows", "seconds", "verdict"),
    [
        (0.12, 0.004, 200, 800, "met"),
        (0.09, 0.004, 200, 800, "NOT met"),  # too small a gain
        (0.12, 0.02, 200, 800, "NOT met"),  # not significant at 1%
        (0.12, 0.004, 150, 800, "NOT met"),  # too few rows
        (0.12, 0.004, 200, 950, "NOT met"),  # over 15 minutes
    ],
)
def test_verdict_follows_the_target(gain, p, rows, seconds, verdict):
    demo = load_script()
    summary = {
        "before": {"strict_accuracy": 0.2},
        "after": {"strict_accuracy": 0.2 + gain},
        "comparison": {
            "difference": gain,
            "p_value": p,
            "rows": rows,
            "test": "exact McNemar",
            "better": 30,
            "worse": 6,
        },
    }
    times = {"build": 5.0, "warm-up": seconds / 2 - 5, "GRPO": seconds / 2 - 60, "eval": 60.0}
    args = Namespace(seed=demo.DEFAULT_SEED, quick=False)
    text = demo.render(summary, times, args)
    assert text.rstrip().endswith(f": {verdict}")
    assert f"{gain * 100:+.1f} points" in text


def test_the_default_seed_runs_the_commands_the_configs_document():
    demo = load_script()
    args = Namespace(
        seed=demo.DEFAULT_SEED,
        quick=False,
        outputs="outputs",
        models="models",
        threads=None,
        rows=200,
    )
    stages = dict(demo.plan(args))
    build = stages["build"]
    assert build[1:] == [
        "scripts/make_tiny_model.py",
        "./models/tiny-qwen2-learn",
        "--size",
        "learn",
        "--seed",
        "0",
        "--overwrite",
    ]
    assert (
        "python scripts/make_tiny_model.py models/tiny-qwen2-learn --size learn"
        in (CONFIGS / "learn_cpu_sft.yaml").read_text()
    )
    assert "model.name=./outputs/learn-cpu-sft" in stages["GRPO"]
    assert not any("random_state" in part for part in stages["GRPO"])


def test_other_seeds_get_runs_of_their_own():
    demo = load_script()
    args = Namespace(
        seed=7, quick=False, outputs="outputs", models="models", threads=None, rows=200
    )
    stages = dict(demo.plan(args))
    assert "--seed" in stages["build"] and "7" in stages["build"]
    assert "models/tiny-qwen2-learn-seed7" in " ".join(stages["build"])
    assert "output.run_name=learn-cpu-seed7" in stages["GRPO"]
    assert "model.name=./outputs/learn-cpu-seed7-sft" in stages["GRPO"]
    assert "training.seed=7" in stages["warm-up"]
    assert "lora.random_state=7" in stages["GRPO"]
    assert "outputs/learn-cpu-seed7" in stages["eval"]


@pytest.mark.parametrize("rows", [340, 250])
def test_the_held_out_curve_grades_the_rows_the_closing_comparison_grades(rows, tiny_model):
    """The curve's last point and the closing table are one measurement: with fewer rows the
    curve was a different mix of problems from the table's (a third `a - b + c` against half)."""
    from grpo_cli.config.loader import load_config

    demo = load_script()
    args = Namespace(
        seed=demo.DEFAULT_SEED, quick=False, outputs="o", models="m", threads=None, rows=rows
    )
    stages = dict(demo.plan(args))
    grpo = stages["GRPO"]
    overrides = [grpo[i + 1] for i, part in enumerate(grpo) if part == "--set"]
    # the warm-up run GRPO starts from is not made here: any model folder will do
    overrides = [o for o in overrides if not o.startswith("model.name=")]
    overrides.append(f"model.name={tiny_model}")
    config = load_config(CONFIGS / "learn_cpu.yaml", overrides).config
    assert config.eval.rows == rows == int(stages["eval"][stages["eval"].index("-n") + 1])
