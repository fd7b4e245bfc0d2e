"""What we write down by hand to keep start-up fast is checked against the libraries it mirrors,
and the README against the code."""

from __future__ import annotations

import dataclasses
import re

import pytest

from grpo_cli.config.reference import README_BEGIN, README_END, as_markdown
from grpo_cli.config.schema import LOSS_TYPES, OPTIMIZERS, SCHEDULERS, is_hub_id
from tests.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


def test_readme_config_reference_matches_the_schema():
    start, end = README.index(README_BEGIN), README.index(README_END)
    in_readme = README[start + len(README_BEGIN) : end].strip()
    assert in_readme == as_markdown(), (
        "README config reference is stale: run `python scripts/sync_readme.py`"
    )


def shell_commands(text: str) -> list[str]:
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_ci_runs_exactly_the_readme_test_command():
    match = re.search(r"<!-- test-command -->\s*```bash\n(.*?)```", README, re.S)
    assert match, "README must keep its test command under <!-- test-command -->"
    ci = shell_commands((REPO / ".ci" / "run").read_text())
    assert ci[:2] == ["set -euo pipefail", 'cd "$(dirname "$0")/.."'], ci
    assert ci[2:] == shell_commands(match.group(1)), "README test command and .ci/run differ"


STOP_AT_VENV = """#!/bin/sh
# python3 -m venv DIR: make DIR as venv would, then fail, so that test.sh stops there
mkdir -p "$3" && touch "$3/pyvenv.cfg"
exit 1
"""


@pytest.mark.parametrize("given", [False, True])
def test_the_test_command_removes_its_own_venv_and_keeps_one_it_was_given(tmp_path, given):
    """scripts/test.sh's own virtual environment (1.9 GB) is removed however it ends; each CI
    run used to leave one in /tmp."""
    import os
    import subprocess

    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "python3").write_text(STOP_AT_VENV)
    (stub / "python3").chmod(0o755)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    mine = tmp_path / "mine" / "venv"
    env = {**os.environ, "PATH": f"{stub}{os.pathsep}{os.environ['PATH']}", "TMPDIR": str(scratch)}
    args = ["bash", str(REPO / "scripts" / "test.sh"), *([str(mine)] if given else [])]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "== virtual environment:" in done.stdout
    assert list(scratch.iterdir()) == []  # nothing of its own left behind
    assert (mine / "pyvenv.cfg").exists() is given  # the caller's folder is the caller's


def test_scheduler_and_optimizer_lists_match_transformers():
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    assert set(SCHEDULERS) == {s.value for s in SchedulerType}
    assert set(OPTIMIZERS) == {o.value for o in OptimizerNames}


def test_loss_types_match_trl():
    from trl import GRPOConfig

    help_text = next(f for f in dataclasses.fields(GRPOConfig) if f.name == "loss_type").metadata[
        "help"
    ]
    supported = help_text.split("Supported values are")[1].split(".")[0]
    assert set(LOSS_TYPES) == set(re.findall(r"'(\w+)'", supported))


def test_owned_trl_fields_exist_in_grpo_config():
    from trl import GRPOConfig

    from grpo_cli.config.checks import OWNED_TRL_FIELDS

    fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    # warmup_ratio left transformers 5, max_prompt_length left TRL 1.x; both are still refused so
    # that a config written for older versions gets pointed at our key.
    assert set(OWNED_TRL_FIELDS) - fields == {"warmup_ratio", "max_prompt_length"}


@pytest.mark.parametrize(
    "repo_id",
    [
        "Qwen/Qwen2.5-3B-Instruct",
        "gpt2",
        "openai/gsm8k",
        "a/b",
        "a--b",
        "a..b",
        "-a/b",
        "a/b-",
        "a/b/c",
        "/abs",
        "x" * 96,
        "x" * 97,
        "own er/name",
        "owner/na.me_1",
        "",
        "a/",
        ".a",
    ],
)
def test_hub_id_rule_matches_huggingface_hub(repo_id):
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
        valid = True
    except HFValidationError:
        valid = False
    assert is_hub_id(repo_id) == valid
