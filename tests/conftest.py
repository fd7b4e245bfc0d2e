"""Shared test helpers: write configs, run the CLI in-process."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from grpo_cli.cli import main
from grpo_cli.config import load_config
from grpo_cli.errors import ConfigError, Problem

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

MINIMAL = """\
model:
  name: Qwen/Qwen2.5-0.5B-Instruct
rewards:
  - correctness
"""


def config_problems(path: Path, overrides: tuple[str, ...] | list[str] = ()) -> list[Problem]:
    """The problems `load_config` reports for a config that must fail."""
    with pytest.raises(ConfigError) as err:
        load_config(path, list(overrides))
    return err.value.problems


def smoke_args(tiny_model: Path, tmp_path: Path, *extra: str) -> list[str]:
    """`grpo train` of configs/smoke_cpu.yaml on the tiny model, into TMP_PATH/outputs."""
    return [
        "train",
        str(CONFIGS / "smoke_cpu.yaml"),
        "--set",
        f"model.name={tiny_model}",
        "--set",
        f"output.dir={tmp_path / 'outputs'}",
        *extra,
    ]


@pytest.fixture(autouse=True)
def _restore_registries():
    """Plugins a test loads register rewards and formatters; forget them after the test."""
    from grpo_cli import plugins
    from grpo_cli.data import formatters
    from grpo_cli.rewards import registry

    saved = registry.snapshot(), formatters.snapshot(), dict(plugins._loaded)
    yield
    registry.restore(saved[0])
    formatters.restore(saved[1])
    plugins._loaded.clear()
    plugins._loaded.update(saved[2])


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """write("name.yaml", text) -> path, with the text dedented."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return _write


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """cli("config", "validate", path) runs `grpo` in this process and captures its output."""

    def _run(*args: str | Path) -> CliResult:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return _run


@pytest.fixture(scope="session")
def gsm8k_dir() -> Path:
    """The real GSM8K files: $GSM8K_DIR, or ../shared/data/gsm8k beside the checkout. Under CI a
    missing file fails the test instead of skipping it."""
    import os

    path = Path(os.environ.get("GSM8K_DIR") or REPO.parent / "shared" / "data" / "gsm8k")
    missing = [n for n in ("train.jsonl", "test.jsonl") if not (path / n).is_file()]
    if missing:
        message = f"GSM8K files {missing} not found in {path} (set GSM8K_DIR)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random Qwen2 model with a locally trained ChatML tokenizer, built once a session."""
    from grpo_cli.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"), seed=0)


@pytest.fixture
def shipped_models(tiny_model, tmp_path, monkeypatch) -> Path:
    """A working folder where configs/smoke_cpu.yaml finds its model (./models/tiny-qwen2), as it
    does after the README's `python scripts/make_tiny_model.py models/tiny-qwen2`."""
    (tmp_path / "models").mkdir(exist_ok=True)
    (tmp_path / "models" / "tiny-qwen2").symlink_to(tiny_model, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def demo_folder(shipped_models, tiny_model) -> Path:
    """A working folder as the learning demo leaves it (configs/learn_cpu*.yaml): its model
    built, its warm-up run done."""
    from tests.sft_runs import full_sft_run

    (shipped_models / "models" / "tiny-qwen2-learn").symlink_to(tiny_model)
    full_sft_run(tiny_model, shipped_models / "outputs", "learn-cpu-sft")
    return shipped_models


HOLD_RUN = """
import sys, time
from pathlib import Path
from grpo_cli.training import rundir

rundir.prepare(Path(sys.argv[1]), resume=True, overwrite=False, note=print)
print("holding", flush=True)
time.sleep(120)
"""


@pytest.fixture
def run_in_use(tmp_path: Path):
    """A run directory with one logged step, owned by another live process: (path, process)."""
    import subprocess
    import sys

    run = tmp_path / "outputs" / "busy"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("model: {name: x}\n")
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_RUN, str(run)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
        yield run, proc
    finally:
        proc.kill()
        proc.wait()
