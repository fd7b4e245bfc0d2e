"""`grpo doctor --check`: a short real GRPO run per training path this machine supports, on a
tiny model built locally, so no path touches the Hub."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from grpo_cli.errors import first_line

if TYPE_CHECKING:
    from rich.console import Console

    from grpo_cli.hardware import Hardware

_CONFIG = """\
model: {{name: {model}, backend: trl, quantization: none, max_seq_length: 256}}
lora: {{r: 4, alpha: 8, gradient_checkpointing: false}}
data: {{source: synthetic, limit: 8, heldout_size: 0}}
rewards: [correctness]
training:
  optim: adamw_torch
  prompts_per_step: 2
  num_generations: 2
  max_prompt_length: 128
  max_completion_length: 8
  max_steps: 2
  save_steps: 2
logging: {{report_to: none}}
output: {{dir: {outputs}, run_name: check}}
"""


@dataclass(frozen=True)
class CheckRow:
    path: str
    status: str  # passed, failed or skipped
    detail: str  # the error's first line, or why the path was skipped
    seconds: float | None


def run_checks(console: Console, workdir: Path, hw: Hardware) -> list[CheckRow]:
    from grpo_cli.commands import train as train_command
    from grpo_cli.tiny_model import build_tiny_model

    model = build_tiny_model(workdir / "tiny-model", seed=0)
    config = workdir / "check.yaml"
    config.write_text(_CONFIG.format(model=model, outputs=workdir / "outputs"), encoding="utf-8")
    name = f"trl backend, {'fp32 on CPU' if hw.device != 'cuda' else 'native precision'}"
    console.print(f"checking: {name}")
    started = time.perf_counter()
    try:
        code = train_command.train(config, [], overwrite=True)
        row = CheckRow(name, "passed" if code == 0 else "failed", "", None)
    except Exception as exc:  # the table reports any failure; the next path still runs
        row = CheckRow(name, "failed", first_line(exc), None)
    rows = [CheckRow(row.path, row.status, row.detail, time.perf_counter() - started)]
    if hw.device != "cuda":
        rows += [
            CheckRow(path, "skipped", "needs a CUDA GPU", None)
            for path in ("trl backend, 4-bit", "unsloth backend, 16-bit and 4-bit")
        ]
    return rows
