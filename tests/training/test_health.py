"""Training health: each way a run learns nothing is named once, early, with its fix, and a
healthy run is left alone."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from grpo_cli.training import health
from grpo_cli.training.health import HEALTH_FILE, WINDOW, HealthWatch, new_warnings
from tests.conftest import smoke_args


def healthy(steps: int = 60, seed: int = 0) -> list[dict[str, Any]]:
    """What a run that learns logs (the keys of a real smoke run's metrics.jsonl): reward and
    accuracy rising with noise, groups mostly spread, few truncated, a small loss and KL."""
    rng = random.Random(seed)
    history = []
    for step in range(1, steps + 1):
        progress = step / steps
        history.append(
            {
                "step": step,
                "loss": rng.uniform(-0.05, 0.08),
                "kl": rng.uniform(0.0, 0.05) * progress,
                "learning_rate": 3e-4,
                "reward": 0.5 + progress + rng.uniform(-0.2, 0.2),
                "frac_reward_zero_std": rng.choice([0.25, 0.375, 0.5, 0.625]),
                "accuracy": max(0.0, 0.1 + 0.2 * progress + rng.uniform(-0.05, 0.05)),
                "rewards/correctness/mean": 0.3 + rng.uniform(0, 0.3),
                "rewards/strict_format/mean": rng.uniform(0.05, 0.2),
                "rewards/soft_format/mean": rng.uniform(0.2, 0.4),
                "rewards/length_penalty/mean": -rng.uniform(0.0, 0.3),
                "completions/clipped_ratio": rng.uniform(0.0, 0.3),
            }
        )
    return history


def replay(history: list[dict[str, Any]]) -> list[health.HealthWarning]:
    """Feed the history one log at a time, as RunRecorder does; every warning raised."""
    raised: set[str] = set()
    out = []
    for end in range(1, len(history) + 1):
        for warning in new_warnings(history[:end], raised):
            raised.add(warning.code)
            out.append(warning)
    return out


def with_values(history: list[dict[str, Any]], start: int, **values: Any) -> list[dict[str, Any]]:
    """HISTORY with VALUES set from the record of step START on."""
    return [{**r, **values} if r["step"] >= start else r for r in history]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_healthy_run_gets_no_warning(seed):
    assert replay(healthy(seed=seed)) == []


def test_zero_spread_is_named_once_after_a_window_with_its_fix():
    warnings = replay(with_values(healthy(), 21, frac_reward_zero_std=0.875))
    assert [w.code for w in warnings] == ["zero_spread"]
    step = warnings[0].step
    assert 20 < step <= 20 + WINDOW  # once the window's mean share is above most groups
    line = warnings[0].line()
    assert line.startswith(f"warning (step {step}): ")
    assert "% of groups had all rewards equal" in line
    assert "prompts_per_step" in line and "grpo sft" in line


def test_zero_spread_below_most_groups_is_not_a_warning():
    assert replay(with_values(healthy(), 21, frac_reward_zero_std=0.75)) == []


def test_a_short_burst_of_zero_spread_is_noise():
    # 4 steps at 1.0 among healthy shares (at most 0.625) keep the window's mean under 0.8
    spike = [{**r, "frac_reward_zero_std": 1.0} if 21 <= r["step"] < 25 else r for r in healthy()]
    assert replay(spike) == []


def test_no_correct_answer_after_a_window():
    history = with_values(healthy(), 1, accuracy=0.0)
    assert [(w.code, w.step) for w in replay(history)] == [("no_correct_answer", WINDOW)]
    assert "--dry-run" in replay(history)[0].fix and "grpo score" in replay(history)[0].fix


def test_the_correctness_reward_stands_in_for_a_missing_accuracy_probe():
    history = [
        {k: v for k, v in r.items() if k != "accuracy"}
        for r in with_values(healthy(), 1, **{"rewards/correctness/mean": 0.0})
    ]
    assert [w.code for w in replay(history)] == ["no_correct_answer"]


def test_one_correct_answer_in_the_window_is_enough():
    history = with_values(healthy(), 1, accuracy=0.0)
    history[WINDOW - 1]["accuracy"] = 0.125
    assert [w.step for w in replay(history)] == [2 * WINDOW]  # steps 11-20, none right


def test_format_rewards_that_all_pay_nothing_are_named():
    zero = {"rewards/strict_format/mean": 0.0, "rewards/soft_format/mean": 0.0}
    warnings = replay(with_values(healthy(), 5, **zero))
    assert [(w.code, w.step) for w in warnings] == [("no_format_reward", 4 + WINDOW)]
    assert "strict_format" in warnings[0].message and "soft_format" in warnings[0].message


def test_a_strict_format_reward_at_zero_while_a_soft_one_pays_is_healthy():
    # GSM8K runs: strict_format stays at 0 long after soft_format pays; the template is fine
    history = with_values(healthy(), 5, **{"rewards/strict_format/mean": 0.0})
    assert [w.code for w in replay(history)] == []


def test_most_completions_truncated():
    warnings = replay(with_values(healthy(), 11, **{"completions/clipped_ratio": 0.75}))
    assert [w.code for w in warnings] == ["truncated"] and 10 < warnings[0].step <= 10 + WINDOW
    assert "training.max_completion_length" in warnings[0].fix


def test_a_non_finite_loss_is_named_at_once():
    # RunRecorder writes NaN as null
    warnings = replay(with_values(healthy(), 33, loss=None))
    assert [(w.code, w.step) for w in warnings] == [("exploding", 33)]
    assert "learning_rate" in warnings[0].fix and "beta" in warnings[0].fix


def test_a_kl_far_above_its_median_is_exploding_when_it_stays():
    warnings = replay(with_values(healthy(), 31, kl=5.0))
    assert [(w.code, w.step) for w in warnings] == [("exploding", 33)]
    assert warnings[0].message.startswith("kl stayed above")


def test_a_single_loss_spike_is_not_exploding():
    history = healthy()
    history[30]["loss"] = 5.0
    history[31]["loss"] = 5.0
    assert replay(history) == []


def test_a_reward_that_rises_then_collapses_blames_the_learning_rate():
    rng = random.Random(0)
    history = healthy(steps=90)
    for r in history:  # 0.2 -> 1.4 over 40 steps, then back to 0.2, with noise
        s = r["step"]
        fall = 0.04 * (s - 50) if s > 50 else 0
        r["reward"] = 0.2 + 0.03 * min(s, 40) - fall + rng.gauss(0, 0.2)
    warnings = replay(history)
    assert [w.code for w in warnings] == ["reward_collapse"]
    assert "training.learning_rate" in warnings[0].fix
    # the fall is reported once the last window has lost three quarters of the gain
    assert 60 < warnings[0].step < 90


def test_a_reward_that_rises_then_plateaus_is_healthy():
    history = healthy(steps=90)
    for r in history:
        r["reward"] = 0.2 + 0.03 * min(r["step"], 40)
    assert replay(history) == []


def test_the_watch_prints_each_warning_once_and_a_resumed_run_remembers(tmp_path, capsys):
    history = with_values(healthy(), 1, frac_reward_zero_std=1.0)
    watch = HealthWatch(tmp_path)
    for end in range(1, len(history) + 1):
        watch.observe(history[:end])
    err = capsys.readouterr().err
    assert err.count("warning (step") == 1 and "groups had all rewards equal" in err
    assert [w.code for w in health.read(tmp_path)] == ["zero_spread"]

    HealthWatch(tmp_path).observe(history)
    assert capsys.readouterr().err == ""
    assert len((tmp_path / HEALTH_FILE).read_text().splitlines()) == 1


def test_a_run_whose_reward_never_varies_says_so_once_and_keeps_it(cli, tiny_model, tmp_path):
    steps = WINDOW + 2
    result = cli(
        *smoke_args(tiny_model, tmp_path),
        "--set",
        "rewards=[correctness]",  # a random model is never right: every group's rewards equal
        "--set",
        f"training.max_steps={steps}",
        "--set",
        "training.save_steps=100",
        "--set",
        "eval.every_steps=100",
    )
    assert result.code == 0, result.err
    line = f"warning (step {WINDOW}): 100% of groups had all rewards equal"
    assert result.err.count(line) == 1
    run = tmp_path / "outputs" / "smoke-cpu"
    records = [json.loads(x) for x in (run / HEALTH_FILE).read_text().splitlines()]
    assert [r["step"] for r in records if r["code"] == "zero_spread"] == [WINDOW]
    table = result.err.split("grpo train: done", 1)[1]  # the closing table repeats it
    assert f"warning (step {WINDOW})" in table and "all rewards equal" in table


def test_every_rule_reports_under_its_own_code():
    broken = with_values(
        healthy(),
        1,
        frac_reward_zero_std=1.0,
        accuracy=0.0,
        loss=None,
        **{
            "completions/clipped_ratio": 1.0,
            "rewards/soft_format/mean": 0.0,
            "rewards/strict_format/mean": 0.0,
        },
    )
    codes = {w.code for w in replay(broken)}
    assert codes == set(health.RULES) - {"reward_collapse"}


@pytest.mark.parametrize("seed", range(5))
def test_a_flat_noisy_reward_is_no_collapse(seed):
    rng = random.Random(seed)
    history = healthy(steps=200, seed=seed)
    for r in history:
        r["reward"] = rng.gauss(0.5, 0.5)
    assert [w.code for w in replay(history)] == []


def test_a_rise_within_the_noise_then_a_fall_is_no_collapse():
    rng = random.Random(0)
    history = healthy(steps=90, seed=0)
    for r in history:  # the same shape as the collapse above, at a tenth of the height, noisy
        s = r["step"]
        r["reward"] = 0.003 * min(s, 40) - (0.004 * (s - 50) if s > 50 else 0) + rng.gauss(0, 0.3)
    assert [w.code for w in replay(history)] == []


def test_warnings_past_a_resumed_checkpoint_are_dropped_and_a_cut_line_is_skipped(tmp_path):
    """--resume redoes the steps past its checkpoint, so their warnings go with them; a line a
    hard stop cut short does not stop the run, the closing table or the report."""
    from grpo_cli.training.checkpoints import trim_records

    path = tmp_path / health.HEALTH_FILE
    records = [
        {"code": "truncated", "step": 10, "message": "m", "fix": "f"},
        {"code": "zero_spread", "step": 30, "message": "m", "fix": "f"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"code": "expl')
    assert [w.code for w in health.read(tmp_path)] == ["truncated", "zero_spread"]
    assert trim_records(path, 20) == (1, 1)
    assert [w.code for w in health.read(tmp_path)] == ["truncated"]
