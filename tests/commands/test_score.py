"""`grpo score`: every GSM8K gold solution written in the target format scores full marks, a
wrong final number scores none, and the command streams, summarises and fails cleanly."""

from __future__ import annotations

import json
import os
import re
import stat
import tracemalloc
from pathlib import Path

import pytest

from grpo_cli.commands.score import score
from grpo_cli.data.formatters import split_gsm8k_solution
from grpo_cli.data.prompts import PromptFormat

from ..conftest import REPO

SAMPLE = REPO / "tests" / "data" / "completions.jsonl"


def gsm8k_as_completions(gsm8k_dir: Path, wrong: bool = False) -> list[dict]:
    """Each test row's gold solution rewritten as an xml-format completion."""
    fmt = PromptFormat()
    rows = []
    for line in (gsm8k_dir / "test.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        reasoning, final = split_gsm8k_solution(row["answer"])
        if wrong:
            final = str(int(final.replace(",", "")) + 1)
        rows.append({**row, "completion": fmt.target(reasoning, final)})
    return rows


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_every_gsm8k_gold_solution_scores_full_correctness(gsm8k_dir, tmp_path, cli):
    source = write_rows(tmp_path / "gold.jsonl", gsm8k_as_completions(gsm8k_dir))
    out = tmp_path / "scored.jsonl"
    result = cli("score", source, "--output", out)
    assert result.code == 0, result.err
    rows = read_rows(out)
    assert len(rows) == 1319
    assert all(
        r["rewards"]["correctness"] == 2.0 and r["correct"] and r["correct_flexible"] for r in rows
    )
    assert all(r["reward"] == 4.0 for r in rows)  # four format rewards of 0.5, correctness 2.0
    assert re.search(r"accuracy \(strict: answer tag\)\s*│\s*100\.00%", result.out)


def test_the_same_with_a_wrong_final_number_scores_zero(gsm8k_dir, tmp_path, cli):
    source = write_rows(tmp_path / "wrong.jsonl", gsm8k_as_completions(gsm8k_dir, wrong=True))
    out = tmp_path / "scored.jsonl"
    assert cli("score", source, "-o", out).code == 0
    rows = read_rows(out)
    assert not any(
        r["rewards"]["correctness"] or r["correct"] or r["correct_flexible"] for r in rows
    )
    assert all(r["rewards"]["strict_format"] == 0.5 for r in rows)  # the format is still right


def test_output_rows_carry_rewards_and_both_gradings(tmp_path, cli):
    result = cli("score", SAMPLE)
    assert result.code == 0
    rows = [json.loads(line) for line in result.out.splitlines()]  # rows on stdout
    assert "grpo score" in result.err and "rows" in result.err  # summary on stderr
    assert [r["correct"] for r in rows] == [True, True, False, False, True]
    assert [r["correct_flexible"] for r in rows] == [True, True, True, False, True]
    assert [r["extracted"] for r in rows] == ["18", "18", None, "20", "1080"]
    first = rows[0]
    assert set(first["rewards"]) == {
        "xml_count",
        "soft_format",
        "strict_format",
        "integer_answer",
        "correctness",
    }
    assert first["question"].startswith("Janet")  # input columns kept
    assert first["reward"] == pytest.approx(sum(first["rewards"].values()))


def test_config_rewards_weights_and_tags_are_used(tmp_path, write, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = write(
        "c.yaml",
        "model: {name: gpt2}\ndata: {prompt_style: think, answer_tag: final}\n"
        "rewards:\n  - {name: correctness, weight: 0.5}\n  - {name: soft_format, weight: 0}\n",
    )
    source = write_rows(
        tmp_path / "in.jsonl",
        [{"completion": "<think>\n2+2\n</think>\n<final>\n4\n</final>", "answer": 4}],
    )
    result = cli("score", source, "--config", config)
    (row,) = [json.loads(line) for line in result.out.splitlines()]
    assert row["rewards"] == {"correctness": 2.0, "soft_format": 0.5}
    assert row["reward"] == 1.0  # weight 0: logged, not counted
    assert row["correct"] and row["extracted"] == "4"


def test_stdin_input(tmp_path, monkeypatch, capsys):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(SAMPLE.read_text()))
    summary = score("-")
    assert (summary.rows, summary.correct) == (5, 3)


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ('{"completion": "x", "answer": 1}\n{oops\n', "in.jsonl:2: not a JSON object"),
        ('{"completion": "x"}\n', "in.jsonl:1: row has no answer (its keys: completion)"),
        ("[1, 2]\n", "in.jsonl:1: expected a JSON object"),
        ('{"completion": 5, "answer": 1}\n', "completion must be text or a list of chat messages"),
        (
            '{"completion": "x", "answer": 1}\n{"completion": [{"role": "assistant", '
            '"content": 42}], "answer": 1}\n',
            "in.jsonl:2: completion[0].content must be text, found the number 42",
        ),
        (
            '{"completion": [{"role": "assistant", "content": [{"type": "text", "text": 7}]}], '
            '"answer": 1}\n',
            'in.jsonl:1: completion[0].content[0] must be a text part {"type": "text"',
        ),
        (
            '{"completion": [{"role": "assistant", "content": [42, "x"]}], "answer": 1}\n',
            "in.jsonl:1: completion[0].content[0] must be a text part",
        ),
        (
            '{"completion": [{"role": "assistant", "content": {"text": "x"}}], "answer": 1}\n',
            "in.jsonl:1: completion[0].content must be text, found an object",
        ),
        ('{"completion": ["x"], "answer": 1}\n', "in.jsonl:1: completion[0] must be a chat"),
        (
            '{"completion": "x", "answer": 1}\n{"completion": "caf\udce9", "answer": 1}\n',
            "in.jsonl:2: not UTF-8 text (byte 0xe9 at column 20)",
        ),
    ],
)
def test_bad_input_rows_are_user_errors_and_keep_an_existing_output(
    tmp_path, cli, monkeypatch, line, needle
):
    monkeypatch.chdir(tmp_path)
    Path("in.jsonl").write_bytes(line.encode("utf-8", "surrogateescape"))
    Path("out.jsonl").write_text("previous scores\n")
    result = cli("score", "in.jsonl", "-o", "out.jsonl")
    assert result.code == 2 and needle in result.err, result.err
    assert Path("out.jsonl").read_text() == "previous scores\n"
    assert not list(tmp_path.glob(".out.jsonl*"))  # no temporary file left behind


def test_numbers_and_chat_parts_are_scored(tmp_path, cli):
    rows = [
        {"completion": "<answer>42</answer>", "answer": 42},
        {"completion": "<answer>7.5</answer>", "answer": 7.5},
        {"completion": [{"role": "assistant", "content": None}], "answer": 1},
        {
            "completion": [
                {"role": "assistant", "content": [{"type": "text", "text": "<answer>3</answer>"}]}
            ],
            "answer": "#### 3",
        },
    ]
    result = cli("score", write_rows(tmp_path / "in.jsonl", rows))
    assert result.code == 0, result.err
    assert [json.loads(line)["correct"] for line in result.out.splitlines()] == [
        True,
        True,
        False,
        True,
    ]


def test_a_failing_reward_names_itself_and_the_input_line(tmp_path, write, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(
        "r.py",
        "def picky(completions, answer, **kwargs):\n    return [1 / int(a) for a in answer]\n",
    )
    config = write("c.yaml", "model: {name: gpt2}\nrewards: [r.py:picky]\n")
    rows = [{"completion": "x", "answer": a} for a in ("1", "2", "0", "4")]
    write_rows(tmp_path / "in.jsonl", rows)
    result = cli("score", "in.jsonl", "--config", config, "-o", "out.jsonl")
    assert result.code == 2
    assert (
        "reward 'picky' failed on row 3 of in.jsonl: ZeroDivisionError: division by zero"
        in result.err
    )
    assert not Path("out.jsonl").exists()


def test_missing_input_and_output_onto_input_are_refused(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "nope.jsonl not found" in cli("score", "nope.jsonl").err
    Path("in.jsonl").write_text(SAMPLE.read_text())
    result = cli("score", "in.jsonl", "-o", "in.jsonl")
    assert result.code == 2 and "is the input file" in result.err
    assert "--set needs --config" in cli("score", "in.jsonl", "--set", "a.b=1").err


def test_scoring_streams_in_constant_memory(tmp_path):
    line = SAMPLE.read_text().splitlines()[0] + "\n"
    small, large = tmp_path / "small.jsonl", tmp_path / "large.jsonl"
    small.write_text(line * 1_200)
    large.write_text(line * 6_000)

    def peak(path: Path) -> int:
        tracemalloc.start()
        score(str(path), output_path=tmp_path / "out.jsonl")
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    peak(small)  # warm caches and imports
    assert peak(large) < 1.5 * peak(small)


def test_the_output_file_gets_the_mode_of_any_new_file(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("in.jsonl").write_text(SAMPLE.read_text())
    saved = os.umask(0o022)
    try:
        assert cli("score", "in.jsonl", "-o", "out.jsonl").code == 0
    finally:
        os.umask(saved)
    assert stat.S_IMODE(Path("out.jsonl").stat().st_mode) == 0o644  # mkstemp alone gives 0600
