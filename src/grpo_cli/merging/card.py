"""The facts `grpo merge` puts in the model card, read from the run directory: its config,
environment, data report, evaluations and the step the merged adapter was trained to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from grpo_cli.model_source import ModelSource, read_json
from grpo_cli.modelcard import EXAMPLE_QUESTION, CardFacts


def card_facts(
    src: ModelSource,
    dtype: str,
    adapter_only: bool,
    repo_id: str | None,
    merger: str,
    quants: list[str],
) -> CardFacts:
    from grpo_cli.rewards.registry import registered

    run = src.run
    return CardFacts(
        base_model=src.base,
        dtype=dtype,
        adapter_only=adapter_only,
        config=src.config,
        env=src.env,
        data=read_json(run.data) if run else {},
        steps=src.steps(),
        evals=read_json(run.evals) if run else {},
        default_weights={name: info.weight for name, info in registered().items()},
        repo_id=repo_id,
        run_path=str(run.path) if run else None,
        merger=merger,
        gguf=quants,
        example_messages=_example_messages(src.config),
        lineage=src.lineage(),
    )


TRAINING_FIGURE = "training.png"


def training_figure(src: ModelSource, folder: Path) -> str | None:
    """The run's reward and accuracy figure written into FOLDER, by file name; None without a
    run or metrics. A figure that cannot be drawn leaves the card without it, never the merge
    undone."""
    from grpo_cli.reporting import card_figure, read_run

    if src.run is None:
        return None
    try:
        data = card_figure(read_run(src.run.path))
    except Exception:  # noqa: BLE001 (the merged weights matter, the picture does not)
        return None
    if data is None:
        return None
    (folder / TRAINING_FIGURE).write_bytes(data)
    return TRAINING_FIGURE


def _example_messages(config: dict[str, Any]) -> list[dict[str, str]]:
    """One question as the model saw questions in training: system prompt, format, example."""
    from pydantic import ValidationError

    from grpo_cli.config.schema import DataConfig
    from grpo_cli.data.prompts import PromptFormat

    try:
        data = DataConfig.model_validate(config.get("data") or {})
    except ValidationError:
        return []
    messages = PromptFormat.from_config(data).messages(EXAMPLE_QUESTION)
    return [m for m in messages if m.get("content")]
