"""From dataset rows to prompts and gold answers: GSM8K, local files and folders, the synthetic
generator, prompt styles, dropped rows, the held-out slice, and the errors a user can meet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grpo_cli.answers import gold_answer
from grpo_cli.config import load_config
from grpo_cli.data.formatters import formatter, get_formatter, registered
from grpo_cli.data.loading import (
    ROW_ID,
    load_eval_data,
    load_sft_data,
    load_training_data,
    read_heldout,
    write_heldout,
)
from grpo_cli.data.prompts import PromptFormat
from grpo_cli.errors import GrpoError
from grpo_cli.plugins import load_plugins
from grpo_cli.rewards.builtin import correctness, strict_format

from ..conftest import config_problems


def config(write, data: str, extra: str = ""):
    text = f"model: {{name: gpt2}}\nrewards: [correctness]\ndata:\n{data}{extra}"
    return load_config(write("c.yaml", text)).config


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_real_gsm8k_train_split_formats_every_row(write, gsm8k_dir):
    cfg = config(write, f"  source: {gsm8k_dir}\n  split: train\n")
    data = load_training_data(cfg)
    assert (len(data.train), data.report.dropped) == (7473, 0)
    row = data.train[0]
    assert row["prompt"][0]["role"] == "system" and "<reasoning>" in row["prompt"][0]["content"]
    assert row["prompt"][-1] == {"role": "user", "content": row["question"]}
    assert row["answer"] == "72"  # the normalized gold number; question column kept
    assert data.train[ROW_ID][:3] == [0, 1, 2]
    # every gold answer is a canonical integer string, thousands separators gone
    assert all(a.lstrip("-").isdigit() for a in data.train["answer"])


def test_test_split_is_the_file_beside_the_training_file(write, gsm8k_dir):
    cfg = config(write, f"  source: {gsm8k_dir / 'train.jsonl'}\n")
    ds, report = load_eval_data(cfg)
    assert (len(ds), report.split) == (1319, "test")
    assert gold_answer("#### 1,080") == "1080"
    ds, _ = load_eval_data(cfg, split=str(gsm8k_dir / "test.jsonl"))
    assert len(ds) == 1319


def test_heldout_rows_are_seeded_disjoint_and_recorded(write, gsm8k_dir, tmp_path):
    cfg = config(write, f"  source: {gsm8k_dir}\n  limit: 500\n  heldout_size: 50\n")
    first, second = load_training_data(cfg), load_training_data(cfg)
    assert first.heldout_ids == second.heldout_ids and len(first.heldout_ids) == 50
    assert len(first.train) == 450 and len(first.heldout) == 50
    assert not set(first.train[ROW_ID]) & set(first.heldout[ROW_ID])
    assert sorted(first.heldout[ROW_ID]) == first.heldout_ids
    other = load_training_data(
        config(
            write,
            f"  source: {gsm8k_dir}\n  limit: 500\n  heldout_size: 50\n",
            "training: {seed: 1}\n",
        )
    )
    assert other.heldout_ids != first.heldout_ids
    write_heldout(tmp_path / "run", cfg, first.heldout_ids)
    record = read_heldout(tmp_path / "run")
    assert record["row_ids"] == first.heldout_ids and record["seed"] == cfg.training.seed
    with pytest.raises(GrpoError, match="held no rows out"):
        read_heldout(tmp_path)


def test_heldout_larger_than_the_data_is_refused(write):
    cfg = config(write, "  source: synthetic\n  limit: 10\n  heldout_size: 10\n")
    with pytest.raises(GrpoError, match="heldout_size 10 leaves no training rows"):
        load_training_data(cfg)


def test_synthetic_source_is_offline_seeded_and_split_aware(write):
    cfg = config(write, "  source: synthetic\n  limit: 64\n")
    train = load_training_data(cfg).train
    assert len(train) == 64
    assert train["question"] == load_training_data(cfg).train["question"]
    test, _ = load_eval_data(cfg)
    assert not set(test["question"][:64]) & set(train["question"])
    # the gold solutions of the generator score full marks once written in the target format
    fmt = PromptFormat()
    completions = [fmt.target("...", a) for a in train["answer"]]
    assert correctness(completions, answer=train["answer"]) == [2.0] * 64


@pytest.mark.parametrize(
    ("style", "needle"),
    [("xml", "<reasoning>"), ("think", "<think>")],
)
def test_prompt_styles_and_tags(style, needle):
    fmt = PromptFormat(style=style, reasoning_tag="reasoning" if style == "xml" else "think")
    assert needle in fmt.system() and "<answer>" in fmt.system()
    target = fmt.target("two steps", "16")
    assert strict_format([target], reasoning_tag=fmt.reasoning_tag) == [0.5]


def test_custom_tags_and_prompt_reach_the_prompt(write):
    cfg = config(
        write,
        "  source: synthetic\n  limit: 2\n  prompt_style: custom\n"
        "  system_prompt: Solve it. End with <final>N</final>.\n  answer_tag: final\n",
    )
    row = load_training_data(cfg).train[0]
    assert row["prompt"][0]["content"] == "Solve it. End with <final>N</final>."
    xml = PromptFormat.from_config(
        config(write, "  answer_tag: final\n  reasoning_tag: why\n").data
    )
    assert "<why>" in xml.system() and "</final>" in xml.system()


def test_one_shot_adds_a_worked_example_in_the_target_format(write):
    cfg = config(write, "  source: synthetic\n  limit: 2\n  one_shot: true\n")
    roles = [m["role"] for m in load_training_data(cfg).train[0]["prompt"]]
    assert roles == ["system", "user", "assistant", "user"]
    example = load_training_data(cfg).train[0]["prompt"][2]["content"]
    assert strict_format([example]) == [0.5]
    assert correctness([example], answer=["16"]) == [2.0]


def test_rows_with_unreadable_gold_are_dropped_and_counted(write, tmp_path):
    rows = [
        {"question": "q1", "answer": "a\n#### 5"},
        {"question": "q2", "answer": "a\n#### unknown"},
        {"question": "q3", "answer": "a\n#### 1,080"},
    ]
    path = write_jsonl(tmp_path / "d" / "train.jsonl", rows)
    data = load_training_data(config(write, f"  source: {path}\n"))
    assert data.train["answer"] == ["5", "1080"]
    assert data.train[ROW_ID] == [0, 2]
    assert data.report.dropped == 1
    assert "dropped 1 of 3 rows" in data.report.warning() and "row 1" in data.report.warning()


def test_a_dataset_without_the_formatter_columns_names_the_columns_it_has(write, tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [{"problem": "p", "solution": "\\boxed{3}"}])
    with pytest.raises(GrpoError) as err:
        load_training_data(config(write, f"  source: {path}\n"))
    assert "has columns problem, solution" in err.value.message
    assert "gsm8k formatter needs question, answer" in err.value.message
    ds = load_training_data(config(write, f"  source: {path}\n  formatter: math_boxed\n")).train
    assert ds["answer"] == ["3"]


@pytest.mark.parametrize("suffix", [".json", ".csv", ".parquet"])
def test_other_local_file_types(write, tmp_path, suffix):
    import datasets

    rows = [{"question": "q", "answer": "#### 7"}] * 3
    path = tmp_path / f"train{suffix}"
    ds = datasets.Dataset.from_list(rows)
    {".json": ds.to_json, ".csv": ds.to_csv, ".parquet": ds.to_parquet}[suffix](str(path))
    assert load_training_data(config(write, f"  source: {path}\n")).train["answer"] == ["7"] * 3


def test_a_folder_without_the_split_is_a_config_error(write, tmp_path):
    write_jsonl(tmp_path / "data" / "train.jsonl", [{"question": "q", "answer": "#### 1"}])
    path = write(
        "c.yaml",
        "model: {name: gpt2}\nrewards: [correctness]\n"
        f"data:\n  source: {tmp_path / 'data'}\n  split: validation\n",
    )
    (problem,) = config_problems(path)
    assert problem.key == "data.split" and "holds train.jsonl" in problem.message


def test_a_missing_eval_file_says_where_it_looked(write, tmp_path):
    path = write_jsonl(tmp_path / "mine.jsonl", [{"question": "q", "answer": "#### 1"}])
    with pytest.raises(GrpoError, match=r"test.jsonl not found"):
        load_eval_data(config(write, f"  source: {path}\n"))


def test_a_broken_local_file_is_a_user_error(write, tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"question": "q", "answer": "#### 1"}\n{not json\n')
    with pytest.raises(GrpoError, match=r"train.jsonl:2: not a JSON object"):
        load_training_data(config(write, f"  source: {path}\n"))


GOOD = b'{"question": "q", "answer": "#### 1"}\n'


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("train.jsonl", b"", r"train.jsonl is empty"),
        ("train.jsonl", b"\n  \n", r"train.jsonl is empty"),
        ("train.csv", b"", r"train.csv is empty"),
        ("train.json", b"", r"train.json is empty"),
        ("train.parquet", b"", r"train.parquet is empty"),
        ("train.json", b"[]", r"train.json has no rows"),
        ("train.csv", b"question,answer\n", r"train.csv has no rows"),
        (
            "train.jsonl",
            GOOD * 2 + b'{"question": "caf\xe9", "answer": "#### 2"}\n',
            r"train.jsonl:3: not UTF-8 text \(byte 0xe9 at column 18\)",
        ),
        (
            "train.csv",
            b"question,answer\nq,#### 1\ncaf\xe9,#### 2\n",
            r"train.csv:3: not UTF-8 text \(byte 0xe9 at column 4\)",
        ),
        ("train.json", b'[{"question": "caf\xe9", "answer": 1}]', r"train.json:1: not UTF-8"),
        (
            "train.jsonl",
            GOOD * 3 + b'{"question": "q" "answer": 1}\n' + GOOD,
            r"train.jsonl:4: not a JSON object \(Expecting ',' delimiter at column 18\)",
        ),
        ("train.jsonl", GOOD + b"[1, 2]\n", r"train.jsonl:2: expected a JSON object, found a list"),
        (
            "train.json",
            b'[{"question": "q", "answer": 1},\n {"question" "q"}]',
            r"train.json:2: not valid JSON",
        ),
    ],
)
def test_a_broken_data_file_names_the_file_and_line(write, tmp_path, name, content, needle):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(GrpoError, match=needle):
        load_training_data(config(write, f"  source: {path}\n"))


@pytest.mark.parametrize(
    ("formatter", "rows", "golds"),
    [
        (
            "gsm8k",
            [{"question": "a", "answer": 42}, {"question": "b", "answer": 7.5}],
            ["42", "7.5"],
        ),
        (
            "gsm8k",
            [{"question": "a", "answer": 42}, {"question": "b", "answer": "#### 1,080"}],
            ["42", "1080"],
        ),
        (
            "math_boxed",
            [{"problem": "a", "solution": 3}, {"problem": "b", "solution": "\\boxed{.5}"}],
            ["3", "0.5"],
        ),
    ],
)
def test_numbers_are_gold_answers(write, tmp_path, formatter, rows, golds):
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    data = load_training_data(config(write, f"  source: {path}\n  formatter: {formatter}\n"))
    assert data.train["answer"] == golds and data.report.dropped == 0
    assert correctness([f"<answer>{g}</answer>" for g in golds], answer=data.train["answer"]) == [
        2.0,
        2.0,
    ]


@pytest.mark.parametrize(
    ("formatter", "prompt_key", "gold_key", "gold"),
    [
        ("gsm8k", "question", "answer", "#### 4"),
        ("math_boxed", "problem", "solution", "\\boxed{4}"),
    ],
)
def test_rows_without_a_question_are_dropped_and_counted(
    write, tmp_path, formatter, prompt_key, gold_key, gold
):
    rows = [
        {prompt_key: "How many?", gold_key: gold},
        {prompt_key: None, gold_key: gold},
        {gold_key: gold},
        {prompt_key: "  ", gold_key: gold},
        {prompt_key: "Which?", gold_key: "no number"},
    ]
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    data = load_training_data(config(write, f"  source: {path}\n  formatter: {formatter}\n"))
    assert len(data.train) == 1 and data.train[0]["prompt"][-1]["content"] == "How many?"
    assert data.report.dropped == 4
    warning = data.report.warning()
    assert "dropped 4 of 5 rows" in warning
    assert f"3 with no {prompt_key} (e.g. row 1: " in warning and "null" in warning
    assert "1 whose gold answer cannot be read as a number (e.g. row 4" in warning


def test_hub_download_failure_is_a_clear_error(write, monkeypatch):
    import datasets
    import huggingface_hub.constants

    # No network here: offline mode makes the download fail at once instead of after retries
    # (the flags are read when the libraries are imported, hence the attributes).
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    cfg = config(write, "  source: someone/not-a-cached-dataset\n")
    with pytest.raises(GrpoError) as err:
        load_training_data(cfg)
    assert "data.source: someone/not-a-cached-dataset is not (completely) in the local cache" in (
        err.value.message
    )
    assert "unset HF_HUB_OFFLINE" in err.value.hint and "local .jsonl" in err.value.hint


def test_a_formatter_registered_by_a_plugin_is_one_function_and_a_name(
    write, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    write(
        "rewards/qa.py",
        "from grpo_cli.data.formatters import formatter\n"
        "@formatter('qa', columns=('q', 'a'))\n"
        "def qa(row, prompt):\n"
        "    return {'prompt': prompt.messages(row['q']), 'answer': str(row['a'])}\n",
    )
    data_file = write_jsonl(tmp_path / "qa.jsonl", [{"q": "1+1?", "a": 2}])
    cfg = config(write, f"  source: {data_file}\n  formatter: qa\n")
    assert load_training_data(cfg).train["answer"] == ["2"]
    assert "qa" in registered()


def test_an_unknown_formatter_is_a_config_error_with_a_did_you_mean(write):
    path = write(
        "c.yaml", "model: {name: gpt2}\nrewards: [correctness]\ndata: {formatter: gsm8kk}\n"
    )
    (problem,) = config_problems(path)
    assert problem.key == "data.formatter" and "did you mean 'gsm8k'?" in problem.message


def test_math_boxed_keeps_numeric_answers_only():
    fmt = get_formatter("math_boxed")
    prompt = PromptFormat()
    keep = {"\\frac{3}{4}": "0.75", "-2": "-2", "\\$18.90": "18.9", "1,000": "1000"}
    for boxed, gold in keep.items():
        assert (
            fmt.fn({"problem": "p", "solution": f"so \\boxed{{{boxed}}}"}, prompt)["answer"] == gold
        )
    for boxed in ("\\frac{\\pi}{2}", "5\\sqrt{2}", "(1,2)", "x^2"):
        assert fmt.fn({"problem": "p", "solution": f"\\boxed{{{boxed}}}"}, prompt) is None
    assert formatter  # the decorator is the public way to add one
    load_plugins([], include_project=False)


# --- the rows grpo sft trains on -------------------------------------------------------------


def test_formatters_yield_the_worked_solution_without_calculator_marks():
    prompt = PromptFormat()
    row = {"question": "q", "answer": "16 - 3 - 4 = <<16-3-4=9>>9 eggs.\nShe sells 9.\n#### 9"}
    assert (
        get_formatter("gsm8k").fn(row, prompt)["reasoning"] == "16 - 3 - 4 = 9 eggs.\nShe sells 9."
    )
    boxed = get_formatter("math_boxed").fn(
        {"problem": "p", "solution": " 2+2 is \\boxed{4}. "}, prompt
    )
    assert boxed["reasoning"] == "2+2 is \\boxed{4}." and boxed["answer"] == "4"


def test_grpo_trains_on_the_same_rows_and_columns_as_before_worked_solutions(write, gsm8k_dir):
    cfg = config(write, f"  source: {gsm8k_dir}\n  limit: 20\n")
    assert "reasoning" not in load_training_data(cfg).train.column_names  # rewards never see it
    assert "reasoning" not in load_eval_data(cfg)[0].column_names


def test_sft_never_trains_on_held_out_or_eval_rows_of_a_dataset(write, gsm8k_dir):
    cfg = config(write, f"  source: {gsm8k_dir}\n  limit: 200\n  heldout_size: 40\n")
    sft, grpo = load_sft_data(cfg), load_training_data(cfg)
    assert sft.report.split == "train" and len(sft.train) == 160
    assert set(sft.train[ROW_ID]) == set(grpo.train[ROW_ID])
    assert not set(sft.train[ROW_ID]) & set(grpo.heldout[ROW_ID])
    assert not set(sft.train["question"]) & set(load_eval_data(cfg)[0]["question"])
    assert all(r.strip() and "<<" not in r for r in sft.train["reasoning"])
    # sft.limit takes fewer rows for the warm-up; the held-out slice stays grpo train's
    fewer = load_sft_data(
        config(
            write,
            f"  source: {gsm8k_dir}\n  limit: 200\n  heldout_size: 40\n",
            "sft: {limit: 100}\n",
        )
    )
    assert set(fewer.train[ROW_ID]) == set(grpo.train[ROW_ID]) & set(range(100))


def test_synthetic_warm_up_rows_are_a_split_of_their_own(write):
    cfg = config(
        write, "  source: synthetic\n  difficulty: simple\n  limit: 300\n  heldout_size: 50\n"
    )
    sft, grpo = load_sft_data(cfg), load_training_data(cfg)
    assert sft.report.split == "sft" and len(sft.train) == 300
    test = load_eval_data(cfg)[0]
    others = set(grpo.train["question"]) | set(grpo.heldout["question"]) | set(test["question"])
    assert not set(sft.train["question"]) & others
    assert sft.train["question"] == load_sft_data(cfg).train["question"]  # seeded
