"""`grpo eval` through the CLI on the tiny model and real GSM8K test rows: the files, the metric
arithmetic (with a scripted generator whose answers are known), resume after a crash, the
comparison table, held-out rows of a run, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grpo_cli.evaluation.generate import Completion, Sampling
from grpo_cli.evaluation.metrics import wilson_interval

from ..conftest import smoke_args

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture
def gsm8k_config(write, tiny_model, gsm8k_dir) -> Path:
    return write(
        "eval.yaml",
        f"""\
        model:
          name: {tiny_model}
        data:
          source: {gsm8k_dir}
        rewards:
          - correctness
        training:
          max_completion_length: 12
        """,
    )


def gsm8k_test_rows(gsm8k_dir: Path, n: int) -> list[dict]:
    lines = (gsm8k_dir / "test.jsonl").read_text().splitlines()[:n]
    return [json.loads(line) for line in lines]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class Scripted:
    """A generator whose answers are known: right on the rows `right(row_id)` says, a wrong
    number elsewhere; it records which questions it was asked and can crash on a call."""

    name = "scripted"

    def __init__(self, right, crash_on_call: int | None = None):
        self.right, self.crash_on_call = right, crash_on_call
        self.asked: list[str] = []
        self.golds: dict[str, str] = {}

    def generate(self, prompts, sampling):
        if self.crash_on_call is not None and len(self.asked) // 2 + 1 == self.crash_on_call:
            raise RuntimeError("CUDA error: simulated crash")
        out = []
        for prompt in prompts:
            question = prompt[-1]["content"]
            self.asked.append(question)
            gold = self.golds[question]
            samples = []
            for i in range(sampling.samples):
                answer = gold if self.right(question, i) else str(int(gold) + 1)
                text = f"<reasoning>\nworked\n</reasoning>\n<answer>\n{answer}\n</answer>\n"
                samples.append(Completion(text, 12, False))
            out.append(samples)
        return out


@pytest.fixture
def scripted(monkeypatch, gsm8k_dir):
    """install(engine_for_label) replaces model loading and generation by scripted answers."""
    from grpo_cli.commands import evaluate

    golds = {
        r["question"]: r["answer"].rsplit("####", 1)[1].strip().replace(",", "")
        for r in gsm8k_test_rows(gsm8k_dir, 200)
    }

    def install(engines: dict[str, Scripted]):
        for engine in engines.values():
            engine.golds = golds
        monkeypatch.setattr(evaluate, "load_engine", lambda source, *a: engines[source.label])

    return install


def test_eval_writes_predictions_and_metrics_on_gsm8k_test_rows(
    cli, gsm8k_config, gsm8k_dir, tmp_path
):
    out = tmp_path / "eval"
    result = cli("eval", gsm8k_config, "--limit", "5", "--batch-size", "2", "--output", out)
    assert result.code == 0, result.err
    predictions = read_jsonl(out / "base" / "predictions.jsonl")
    gsm8k = gsm8k_test_rows(gsm8k_dir, 5)
    assert [p["question"] for p in predictions] == [r["question"] for r in gsm8k]
    assert predictions[0]["gold"] == "18"  # Janet's ducks
    for p in predictions:
        assert {
            "completions",
            "extracted",
            "extracted_flexible",
            "correct",
            "correct_flexible",
            "formatted",
            "truncated",
            "tokens",
        } <= set(p)
        assert len(p["completions"]) == 1 and 1 <= p["tokens"][0] <= 12
    metrics = json.loads((out / "base" / "metrics.json").read_text())
    for key in (
        "strict_accuracy",
        "strict_accuracy_ci95",
        "flexible_accuracy",
        "flexible_accuracy_ci95",
        "format_rate",
        "truncation_rate",
        "mean_completion_tokens",
        "median_completion_tokens",
    ):
        assert key in metrics, key
    assert metrics["rows"] == 5 and metrics["split"] == "test"
    assert metrics["engine"] == "transformers"
    assert "strict acc" in result.out and "base" in result.out
    assert "generating with transformers on CPU" in result.err


def test_metrics_are_the_arithmetic_of_the_predictions(cli, gsm8k_config, scripted, tmp_path):
    even = Scripted(lambda q, i: len(q) % 2 == 0)
    scripted({"base": even})
    result = cli("eval", gsm8k_config, "--limit", "40", "--output", tmp_path / "eval")
    assert result.code == 0, result.err
    predictions = read_jsonl(tmp_path / "eval/base/predictions.jsonl")
    right = sum(p["correct"][0] for p in predictions)
    assert right == sum(len(q) % 2 == 0 for q in even.asked) and 0 < right < 40
    metrics = json.loads((tmp_path / "eval/base/metrics.json").read_text())
    assert metrics["strict_accuracy"] == right / 40
    assert metrics["strict_accuracy_ci95"] == pytest.approx(list(wilson_interval(right, 40)))
    assert metrics["format_rate"] == 1.0 and metrics["truncation_rate"] == 0.0
    assert f"{100 * right / 40:.1f}%" in result.out


def test_several_samples_report_pass_at_k_and_majority(cli, gsm8k_config, scripted, tmp_path):
    scripted({"base": Scripted(lambda q, i: i == 0)})  # one right sample of 4 on every row
    args = ("--limit", "6", "--samples", "4", "--output", tmp_path / "eval")
    result = cli("eval", gsm8k_config, *args)
    assert result.code == 0, result.err
    m = json.loads((tmp_path / "eval/base/metrics.json").read_text())
    assert m["samples"] == 4 and m["temperature"] == 1.0
    assert m["pass@1"] == pytest.approx(0.25) and m["pass@2"] == pytest.approx(0.5)
    assert m["pass@4"] == 1.0 and m["maj@4"] == 0.0  # the 3 wrong samples agree
    assert m["mean@4"] == pytest.approx(0.25)
    assert "pass@4" in result.out and "maj@4" in result.out


def test_eval_says_how_it_decodes_and_with_how_many_threads(
    cli, gsm8k_config, scripted, tmp_path, monkeypatch
):
    import torch

    monkeypatch.delenv("GRPO_THREADS", raising=False)
    scripted({"base": Scripted(lambda q, i: True)})
    before = torch.get_num_threads()
    try:
        args = ("-n", "2", "--output", tmp_path / "greedy", "--threads", "1")
        result = cli("eval", gsm8k_config, *args)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert result.code == 0, result.err
    assert "torch threads: 1 (from --threads)" in result.err
    assert "decoding: greedy, max 12 new tokens" in result.err
    assert "nothing from the model's generation_config.json" in result.err


def test_several_samples_are_drawn_at_the_configs_training_temperature(
    cli, gsm8k_config, scripted, tmp_path
):
    seen: list[Sampling] = []
    engine = Scripted(lambda q, i: True)
    generate = engine.generate
    engine.generate = lambda prompts, sampling: seen.append(sampling) or generate(prompts, sampling)
    scripted({"base": engine})
    args = ("-n", "2", "-k", "3", "--output", tmp_path / "eval")
    result = cli("eval", gsm8k_config, *args, "--set", "training.temperature=0.8")
    assert result.code == 0, result.err
    assert {(s.temperature, s.top_p, s.samples) for s in seen} == {(0.8, 1.0, 3)}
    assert "decoding: sampling at temperature 0.8, top_p 1, k=3" in result.err


def test_a_crashed_evaluation_resumes_without_redoing_finished_rows(
    cli, gsm8k_config, scripted, tmp_path
):
    out = tmp_path / "eval"
    args = ("eval", gsm8k_config, "--limit", "10", "--batch-size", "2", "--output", out)
    crashing = Scripted(lambda q, i: True, crash_on_call=4)  # dies in the 4th batch
    scripted({"base": crashing})
    crashed = cli(*args)
    assert crashed.code == 1 and "6 of 10 rows are saved" in crashed.err
    assert len(read_jsonl(out / "base/predictions.jsonl")) == 6
    with (out / "base/predictions.jsonl").open("a") as f:
        f.write('{"row_id": 6, "question": "cut sh')  # the crash cut a line short
    again = Scripted(lambda q, i: True)
    scripted({"base": again})
    result = cli(*args)
    assert result.code == 0, result.err
    assert len(again.asked) == 4 and "6 rows reused" in result.err
    predictions = read_jsonl(out / "base/predictions.jsonl")
    assert [p["row_id"] for p in predictions] == list(range(10))
    assert json.loads((out / "base/metrics.json").read_text())["strict_accuracy"] == 1.0
    # a third run reuses everything and loads no model at all
    scripted({})
    assert cli(*args).code == 0


def test_other_settings_never_mix_with_finished_predictions(cli, gsm8k_config, scripted, tmp_path):
    scripted({"base": Scripted(lambda q, i: True)})
    out = tmp_path / "eval"
    assert cli("eval", gsm8k_config, "--limit", "2", "--output", out).code == 0
    before = (out / "base/predictions.jsonl").read_text()
    result = cli("eval", gsm8k_config, "--limit", "2", "--output", out, "--max-new-tokens", "64")
    assert result.code == 2 and "max_new_tokens: 12 -> 64" in result.err
    assert "another --output folder" in result.err
    assert (out / "base/predictions.jsonl").read_text() == before


def test_predictions_of_a_retrained_run_are_not_reused(
    cli, gsm8k_config, smoke_run, scripted, tmp_path
):
    import os

    scripted({"smoke-cpu": Scripted(lambda q, i: True)})
    args = ("eval", gsm8k_config, "--model", smoke_run, "--limit", "2", "--output", tmp_path / "e")
    assert cli(*args).code == 0
    weights = smoke_run / "adapter" / "adapter_model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    result = cli(*args)
    assert result.code == 2 and "the model's weights changed (retrained?)" in result.err


@pytest.fixture
def smoke_run(cli, tiny_model, tmp_path) -> Path:
    assert cli(*smoke_args(tiny_model, tmp_path)).code == 0
    return tmp_path / "outputs" / "smoke-cpu"


def test_base_and_a_run_side_by_side_with_a_paired_test(cli, gsm8k_config, smoke_run, tmp_path):
    out = tmp_path / "eval"
    args = ("--model", "base", "--model", smoke_run, "--limit", "4", "--output", out)
    result = cli("eval", gsm8k_config, *args)
    assert result.code == 0, result.err
    base = read_jsonl(out / "base/predictions.jsonl")
    run = read_jsonl(out / "smoke-cpu/predictions.jsonl")
    assert [p["row_id"] for p in base] == [p["row_id"] for p in run] == [0, 1, 2, 3]
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["reference"] == "base"
    assert comparison["comparisons"][0]["model"] == "smoke-cpu"
    assert comparison["comparisons"][0]["test"] == "exact McNemar"
    assert "vs first (strict)" in result.out and "reference" in result.out
    evals = json.loads((smoke_run / "eval.json").read_text())  # for grpo merge's model card
    assert evals["test"]["rows"] == 4 and evals["test"]["model"] == "smoke-cpu"


def test_a_run_is_evaluated_with_its_adapter_applied(gsm8k_config, smoke_run):
    import torch

    from grpo_cli.config import load_config
    from grpo_cli.evaluation.generate import load_transformers_model
    from grpo_cli.hardware import Hardware
    from grpo_cli.model_source import resolve_model

    cfg = load_config(gsm8k_config).config
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    logits = {}
    for arg in ("base", str(smoke_run)):
        model = load_transformers_model(resolve_model(arg, cfg), Hardware("cpu"))
        with torch.no_grad():
            logits[arg] = model(ids).logits
    assert (logits["base"] - logits[str(smoke_run)]).abs().max() > 1e-4


def test_the_comparison_says_which_model_is_better(
    cli, gsm8k_config, smoke_run, scripted, tmp_path
):
    scripted({"base": Scripted(lambda q, i: False), "smoke-cpu": Scripted(lambda q, i: True)})
    args = ("--model", "base", "--model", smoke_run, "--limit", "8", "--output", tmp_path / "e")
    result = cli("eval", gsm8k_config, *args)
    assert result.code == 0, result.err
    c = json.loads((tmp_path / "e/comparison.json").read_text())["comparisons"][0]
    assert c["difference"] == 1.0 and c["better"] == 8 and c["p_value"] == pytest.approx(2 / 256)
    assert "+100.0 pts" in result.out


def test_heldout_rows_of_a_run_are_the_ones_it_never_trained_on(cli, smoke_run, tmp_path):
    out = tmp_path / "eval"
    config = smoke_run / "config.yaml"
    result = cli("eval", config, "--model", smoke_run, "--split", "heldout", "--output", out)
    assert result.code == 0, result.err
    heldout = json.loads((smoke_run / "heldout.json").read_text())["row_ids"]
    assert [p["row_id"] for p in read_jsonl(out / "smoke-cpu/predictions.jsonl")] == heldout
    assert json.loads((smoke_run / "eval.json").read_text())["heldout"]["rows"] == 8


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--model", "./no/such/run"), "--model ./no/such/run: no such folder"),
        (("--samples", "4", "--temperature", "0"), "4 identical greedy answers"),
        (("--split", "heldout"), "data.heldout_size is 0"),
        (("--split", "no_such_split"), "no_such_split"),
    ],
)
def test_mistakes_are_refused_with_a_hint(cli, gsm8k_config, tmp_path, args, needle):
    result = cli("eval", gsm8k_config, *args, "--output", tmp_path / "eval")
    assert result.code == 2 and needle in result.err, result.err
    assert "Hint:" in result.err and "Traceback" not in result.err


def test_an_unfinished_run_is_refused_with_the_resume_command(
    cli, gsm8k_config, smoke_run, tmp_path
):
    import shutil

    shutil.rmtree(smoke_run / "adapter")
    result = cli("eval", gsm8k_config, "--model", smoke_run, "--output", tmp_path / "eval")
    assert result.code == 2 and "has no adapter/ yet" in result.err
    assert "--resume" in result.err and "checkpoint-4" in result.err
    checkpoint = smoke_run / "checkpoints" / "checkpoint-4"
    args = ("--model", checkpoint, "--limit", "2", "--output", tmp_path / "eval")
    result = cli("eval", gsm8k_config, *args)
    assert result.code == 0, result.err
    assert (tmp_path / "eval/smoke-cpu-checkpoint-4/metrics.json").is_file()
    (checkpoint / "checkpoint_complete.json").unlink()  # as if the run stopped while saving it
    result = cli("eval", gsm8k_config, *args)
    assert result.code == 2 and "did not finish writing" in result.err, result.err
    assert "use the newest complete one:" in result.err and "checkpoint-2" in result.err


def test_a_merged_model_answers_like_its_run(cli, gsm8k_config, smoke_run, tmp_path):
    """grpo merge's folder is evaluated in the run's prompt format (its grpo_config.yaml) and,
    merged in fp32, gives the run's greedy completions."""
    from grpo_cli.commands.merge import merge

    merged = merge(smoke_run, output=tmp_path / "merged", dtype="fp32")
    out = tmp_path / "eval"
    args = ("--model", smoke_run, "--model", merged, "--limit", "3", "--output", out)
    result = cli("eval", gsm8k_config, *args, "--set", "data.prompt_style=think")
    assert result.code == 0, result.err
    run = read_jsonl(out / "smoke-cpu/predictions.jsonl")
    folded = read_jsonl(out / "merged/predictions.jsonl")
    assert [p["completions"] for p in run] == [p["completions"] for p in folded]
    settings = json.loads((out / "merged/settings.json").read_text())
    assert settings["prompt"]["style"] == "xml" and "(merged " in result.err


def test_each_split_and_sampling_gets_its_own_default_folder(cli, smoke_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = smoke_run / "config.yaml"
    for extra in (
        ("--split", "heldout"),
        ("--split", "test", "--limit", "4"),
        ("--split", "test", "--limit", "4", "--samples", "2"),
    ):
        result = cli("eval", config, "--model", smoke_run, *extra, "--engine", "transformers")
        assert result.code == 0, result.err
    for folder in ("heldout", "test", "test-k2-t1"):
        assert (tmp_path / "eval" / folder / "smoke-cpu" / "metrics.json").is_file(), folder
    assert set(json.loads((smoke_run / "eval.json").read_text())) == {"heldout", "test", "test@2"}


# --- saved predictions are never lost or misread, and the output says what happened ----------


def test_a_last_record_without_its_newline_is_not_glued_to_the_next(
    cli, gsm8k_config, scripted, tmp_path
):
    out = tmp_path / "eval"
    scripted({"base": Scripted(lambda q, i: True)})
    assert cli("eval", gsm8k_config, "--limit", "2", "--output", out).code == 0
    saved = out / "base/predictions.jsonl"
    saved.write_text(saved.read_text().rstrip("\n"))  # complete record, newline never written
    result = cli("eval", gsm8k_config, "--limit", "4", "--output", out)
    assert result.code == 0, result.err
    assert [p["row_id"] for p in read_jsonl(saved)] == [0, 1, 2, 3]
    scripted({})  # all four read back: no model is needed
    assert cli("eval", gsm8k_config, "--limit", "4", "--output", out).code == 0


def test_a_split_file_rewritten_in_place_gets_new_predictions(
    cli, gsm8k_config, gsm8k_dir, scripted, tmp_path
):
    rows = gsm8k_test_rows(gsm8k_dir, 4)
    split = tmp_path / "mine.jsonl"
    split.write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    args = ("eval", gsm8k_config, "--split", split, "--output", tmp_path / "eval")
    scripted({"base": Scripted(lambda q, i: True)})
    first = cli(*args)
    assert first.code == 0, first.err
    assert "Generating train split" not in first.err  # datasets' bars are off before any read
    split.write_text("".join(json.dumps(r) + "\n" for r in [rows[0], rows[3], rows[2]]))
    again = Scripted(lambda q, i: True)
    scripted({"base": again})
    result = cli(*args)
    assert result.code == 0, result.err
    assert again.asked == [rows[3]["question"]]
    assert "1 saved rows are generated again" in result.err and "2 rows reused" in result.err
    latest = {p["row_id"]: p for p in read_jsonl(tmp_path / "eval/base/predictions.jsonl")}
    assert [latest[i]["question"] for i in range(3)] == [rows[i]["question"] for i in (0, 3, 2)]


@pytest.mark.parametrize("name", ["predictions.jsonl", "settings.json", "metrics.json"])
def test_a_damaged_saved_file_is_named(cli, gsm8k_config, scripted, tmp_path, name):
    out = tmp_path / "eval"
    scripted({"base": Scripted(lambda q, i: True)})
    assert cli("eval", gsm8k_config, "--limit", "2", "--output", out).code == 0
    (out / "base" / name).write_bytes(b'{"row_id": 0, "question": "caf\xe9"}\n')  # Latin-1
    result = cli("eval", gsm8k_config, "--limit", "2", "--output", out)
    assert result.code == 2, result.err
    assert f"{out / 'base' / name} is not UTF-8" in result.err
    assert "Hint:" in result.err and "Traceback" not in result.err


def test_the_output_names_the_model_and_the_real_folders(
    cli, gsm8k_config, scripted, tmp_path, tiny_model
):
    scripted({"base": Scripted(lambda q, i: True)})
    result = cli("eval", gsm8k_config, "--limit", "2", "--output", tmp_path / "eval")
    assert result.code == 0, result.err
    assert f"(base model {tiny_model})" in result.err and "(base base)" not in result.err
    assert f"predictions and metrics: {tmp_path / 'eval' / 'base'}/" in result.err
    assert "<model>" not in result.err


def test_a_damaged_adapter_is_named_in_the_hint(cli, gsm8k_config, smoke_run, tmp_path):
    weights = smoke_run / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a copy cut short
    result = cli(
        "eval",
        gsm8k_config,
        "--model",
        smoke_run,
        "--limit",
        "1",
        "--engine",
        "transformers",
        "--output",
        tmp_path / "eval",
    )
    assert result.code == 2, result.err
    assert f"Hint: {weights} is damaged" in result.err and "network" not in result.err
