"""The `grpo` command line: exit codes, the error funnel, the config commands, start-up cost."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from grpo_cli import __version__
from grpo_cli.config import load_config
from tests.conftest import CONFIGS, MINIMAL, REPO, smoke_args

GRPO = Path(sys.executable).parent / "grpo"
HEAVY = (
    "torch",
    "transformers",
    "trl",
    "peft",
    "unsloth",
    "vllm",
    "datasets",
    "accelerate",
    "matplotlib",
)


def run_script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GRPO), *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=60
    )


def test_console_script_is_installed():
    assert GRPO.exists(), "pip install -e . should put the grpo script beside python"


def test_version(cli):
    result = cli("--version")
    assert result.code == 0
    assert result.out.strip() == f"grpo-cli {__version__}"


def test_unknown_command_exits_2(cli):
    result = cli("trian", "x.yaml")
    assert result.code == 2


def test_validate_prints_one_ok_line_per_file(cli, demo_folder):
    paths = sorted(CONFIGS.glob("*.yaml"))
    result = cli("config", "validate", *paths)
    assert result.code == 0, result.err
    lines = result.out.strip().splitlines()
    assert len(lines) == len(paths)
    assert all(line.startswith("OK ") for line in lines)
    assert "Qwen/Qwen2.5-3B-Instruct (4bit" in result.out


def test_validate_misspelled_section_through_the_real_script(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINIMAL + "trainig:\n  learning_rate: 1.0e-5\n")
    result = run_script("config", "validate", str(bad))
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Did you mean 'training'?" in result.stderr
    assert f"{bad}:5: trainig" in result.stderr
    assert result.stderr.startswith("Error: ")
    assert "\nHint: " in result.stderr
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(write, cli):
    bad = write("bad.yaml", MINIMAL + "trainig: {}\n")
    assert "Traceback" not in cli("config", "validate", bad).err
    result = cli("config", "validate", bad, "--debug")
    assert result.code == 2
    assert "Traceback" in result.err and "Did you mean 'training'?" in result.err


def test_validate_several_files_reports_each_and_exits_2(write, cli):
    good = write("good.yaml", MINIMAL)
    bad = write("bad.yaml", MINIMAL + "training: {num_generations: 8, generation_batch_size: 6}\n")
    result = cli("config", "validate", good, bad)
    assert result.code == 2
    assert result.out.startswith("OK ")
    assert "num_generations 8" in result.err
    assert "1 of 2 configs have problems" in result.err


def test_show_applies_overrides(cli):
    result = cli(
        "config", "show", CONFIGS / "qwen3b_gsm8k.yaml", "--set", "training.learning_rate=1e-5"
    )
    assert result.code == 0, result.err
    data = yaml.safe_load(result.out)
    assert data["training"]["learning_rate"] == pytest.approx(1e-5)
    assert "learning_rate: 1.0e-05" in result.out


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_show_output_loads_back_to_the_same_config(path, cli, demo_folder):
    result = cli("config", "show", path)
    assert result.code == 0, result.err
    shown = demo_folder / "shown.yaml"
    shown.write_text(result.out)
    assert load_config(shown).config == load_config(path).config
    assert "extends" not in yaml.safe_load(result.out)


def test_show_bad_override_exits_2(cli):
    result = cli("config", "show", CONFIGS / "qwen3b_gsm8k.yaml", "--set", "training.lr=1")
    assert result.code == 2
    assert "--set training.lr=1: training.lr: unknown key 'lr'. Did you mean 'learning_rate'?" in (
        result.err
    )


def test_schema_table_lists_every_key(cli, monkeypatch):
    from grpo_cli.config.reference import key_docs

    monkeypatch.setenv("COLUMNS", "200")  # no key cell wraps
    result = cli("config", "schema")
    assert result.code == 0
    shown, section = set(), ""
    for line in result.out.splitlines():
        if line.strip() and line.strip()[0].isalpha():  # a section title above its table
            section = line.strip()
        elif line.startswith("│") and (key := line.split("│")[1].strip()):
            shown.add(key if key == section else f"{section}.{key}")
    assert shown == {doc.key for doc in key_docs()}


def test_schema_markdown_and_json(cli):
    markdown = cli("config", "schema", "--format", "markdown")
    assert markdown.code == 0
    assert "| `training.num_generations` | integer | `8` |" in markdown.out
    schema = json.loads(cli("config", "schema", "--format", "json").out)
    assert set(schema["properties"]) >= {"model", "rewards", "training", "vllm", "output"}


def test_unexpected_errors_are_short_without_debug(cli, monkeypatch):
    from grpo_cli.commands import config

    def boom(*_args, **_kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(config, "schema", boom)
    result = cli("config", "schema")
    assert result.code == 1
    assert "Error: unexpected RuntimeError: disk on fire" in result.err
    assert "--debug" in result.err and "Traceback" not in result.err


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["config", "validate", "configs/qwen3b_gsm8k.yaml", "configs/llama1b_fp8_gsm8k.yaml"],
        ["config", "show", "configs/llama1b_fp8_gsm8k.yaml", "--set", "lora.r=8"],
        ["config", "schema"],
        ["rewards", "list"],
        ["score", "tests/data/completions.jsonl"],
    ],
)
def test_config_reward_and_score_commands_import_no_ml_library(argv):
    code = (
        "import sys\n"
        "from grpo_cli.cli import main\n"
        f"rc = main({argv!r})\n"
        f"loaded = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print('HEAVY', loaded, rc, file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert "HEAVY [] 0" in result.stderr, result.stderr


def test_ctrl_c_in_any_command_exits_130_with_a_message(cli, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("grpo_cli.commands.config.validate", interrupted)
    result = cli("config", "validate", "x.yaml")
    assert result.code == 130
    assert "Interrupted by Ctrl-C" in result.err


def test_a_folder_the_user_cannot_write_is_a_user_error_in_every_command(
    cli, tmp_path, monkeypatch
):
    def denied(path, suffix=""):
        raise PermissionError(13, "Permission denied", str(path.parent))

    monkeypatch.setattr("grpo_cli.commands.score.open_temporary", denied)
    result = cli("score", REPO / "tests/data/completions.jsonl", "-o", tmp_path / "ro/out.jsonl")
    assert result.code == 2, result.err
    assert f"Error: permission denied: {tmp_path / 'ro'}" in result.err
    assert "Hint:" in result.err and "unexpected" not in result.err


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (errno.ENOSPC, "Error: the disk is full: writing {path} failed ("),
        (errno.EDQUOT, "Error: the disk is full: writing {path} failed ("),
        (errno.EROFS, "Error: read-only file system: {path}"),
        (errno.ECONNRESET, "Error: unexpected ConnectionResetError"),  # not the user's to fix
    ],
)
def test_a_full_or_read_only_disk_is_a_user_error_in_every_command(
    cli, tmp_path, monkeypatch, code, expected
):
    path = tmp_path / "out.jsonl"

    def failing(target, suffix=""):
        raise OSError(code, os.strerror(code), str(target))

    monkeypatch.setattr("grpo_cli.commands.score.open_temporary", failing)
    result = cli("score", REPO / "tests/data/completions.jsonl", "-o", path)
    assert result.code == (1 if code == errno.ECONNRESET else 2), result.err
    assert expected.format(path=path) in result.err
    assert not path.exists()


# --- help, as a new user reads it in an 80-column terminal ---------------------------------------


def click_command(path: list[str]):
    from typer.main import get_command

    from grpo_cli.cli import app

    command = get_command(app)
    for name in path:
        command = command.commands[name]
    return command


def every_command() -> list[list[str]]:
    """The root, each group and each command, found in the app so that a new one is covered."""

    def walk(path):
        yield path
        for name in sorted(getattr(click_command(path), "commands", {})):
            yield from walk([*path, name])

    return list(walk([]))


def help_lines(cli, monkeypatch, command: list[str], columns: int) -> list[str]:
    monkeypatch.setenv("COLUMNS", str(columns))
    result = cli(*command, "--help")
    assert result.code == 0, result.err
    return result.out.splitlines()


def words(text: str) -> str:
    return " ".join(text.strip("│ ").split())


def paragraphs(command: list[str]) -> list[str]:
    """The help text a command is given, paragraph by paragraph, as one line each."""
    return [words(p) for p in (click_command(command).help or "").split("\n\n") if p.strip()]


@pytest.mark.parametrize("command", every_command(), ids=lambda c: " ".join(c) or "grpo")
def test_help_at_80_columns_fits_and_shows_no_python_types(command, cli, monkeypatch):
    lines = help_lines(cli, monkeypatch, command, 80)
    for line in lines:
        assert len(line) <= 80, line
        assert "…" not in line, f"cut off at 80 columns: {line}"
        # Flags take no value, and arguments say what they take in their own name.
        assert "<bool>" not in line and "<list[" not in line, line
    for example in (p for p in paragraphs(command) if p.startswith(("Example", "grpo "))):
        assert example in map(words, lines), f"example wrapped at 80 columns: {example}"


@pytest.mark.parametrize("command", every_command(), ids=lambda c: " ".join(c) or "grpo")
def test_help_breaks_no_sentence_where_the_source_did(command, cli, monkeypatch):
    """In a wide terminal each paragraph of a command's help, and each command's summary in its
    group's list, is one line: a line break kept from the docstring cuts a sentence in two."""
    lines = [words(line) for line in help_lines(cli, monkeypatch, command, 300)]
    for paragraph in paragraphs(command):
        assert paragraph in lines, paragraph
    for name in getattr(click_command(command), "commands", {}):
        summary = paragraphs([*command, name])[0]
        assert f"{name} {summary}" in lines, summary


def test_flags_take_no_value(cli):
    assert cli("train", "configs/smoke_cpu.yaml", "--dry-run", "true").code == 2
    assert re.search(r"--dry-run\s+Check config", cli("train", "--help").out)


@pytest.mark.parametrize("command", [["score"], ["rewards", "list"]])
def test_set_on_commands_without_a_training_config_shows_no_training_key(command, cli):
    out = cli(*command, "--help").out
    assert "--set" in out and "--config file" in out
    assert "training." not in out


def test_doctor_help_says_what_it_checks_and_how_it_exits(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    out = words(cli("doctor", "--help").out)
    assert "Usage: grpo doctor [OPTIONS] [CONFIG]" in out
    for flag in ("--check", "--set"):
        assert flag in out
    assert (
        "Exit code 1 when a problem is listed, or with --check when a path failed or the "
        "check's time ran out before it." in out
    )
    assert "grpo doctor configs/qwen3b_gsm8k.yaml" in cli("--help").out


@pytest.mark.parametrize("value", ["0", "-2", "1.5"])
@pytest.mark.parametrize("command", ["train", "eval"])
def test_a_bad_thread_count_is_refused_naming_the_flag(cli, command, value):
    result = cli(command, CONFIGS / "smoke_cpu.yaml", "--threads", value)
    assert result.code == 2
    assert "--threads" in result.err and "Traceback" not in result.err


def test_a_bad_grpo_threads_is_refused_naming_the_variable(cli, tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("GRPO_THREADS", "lots")
    result = cli(*smoke_args(tiny_model, tmp_path, "--dry-run"))
    assert result.code == 2
    assert "Error: GRPO_THREADS='lots'" in result.err and "Hint:" in result.err
    assert "Traceback" not in result.err


def test_train_uses_and_says_the_thread_count(cli, tiny_model, tmp_path, monkeypatch):
    import torch

    monkeypatch.delenv("GRPO_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        result = cli(*smoke_args(tiny_model, tmp_path, "--dry-run", "--threads", "1"))
        assert result.code == 0, result.err
        assert "torch threads: 1 (from --threads)" in result.err
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
