"""`grpo rewards list`: names, default weights, parameters and descriptions, plugins included."""

from __future__ import annotations

from ..conftest import REPO


def test_lists_built_ins_plugins_and_formatters(cli, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("COLUMNS", "200")
    result = cli("rewards", "list")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    row = next(line for line in lines if line.startswith("│ correctness "))
    assert "1.0" in row and "value: 2.0" in row and "answer tag states the gold number" in row
    for name in (
        "integer_answer",
        "strict_format",
        "soft_format",
        "xml_count",
        "think_format",
        "length_penalty",
    ):
        assert any(line.startswith(f"│ {name} ") for line in lines), name
    plugin = next(line for line in lines if line.startswith("│ reasoning_steps "))
    assert "0.0" in plugin and "rewards/reasoning_steps.py" in plugin
    assert "math_boxed" in result.out and "question, answer" in result.out


def test_config_plugin_folders_are_listed_too(cli, write, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    write(
        "extra/mine.py",
        "from grpo_cli.rewards import reward\n@reward('mine')\n"
        "def mine(completions, **kwargs):\n    return [0.0] * len(completions)\n",
    )
    config = write("c.yaml", "model: {name: gpt2}\nreward_plugins: [extra]\nrewards: [mine]\n")
    assert "│ mine " not in cli("rewards", "list").out
    assert "│ mine " in cli("rewards", "list", "--config", config).out
    missing = write("d.yaml", "model: {name: gpt2}\nreward_plugins: [gone]\nrewards: [mine]\n")
    result = cli("rewards", "list", "--config", missing)
    assert result.code == 2 and "reward plugin folder gone does not exist" in result.err
