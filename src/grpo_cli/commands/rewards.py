"""`grpo rewards list`: every reward a config can name, with its default weight and parameters,
and the dataset formatters."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from grpo_cli.config import load_config
from grpo_cli.data.formatters import registered as registered_formatters
from grpo_cli.plugins import load_plugins
from grpo_cli.rewards.registry import registered


def list_rewards(config_path: Path | None, overrides: list[str]) -> None:
    """Print the registered rewards (built-ins, ./rewards/ and the config's reward_plugins)."""
    folders: list[str] = []
    if config_path is not None:
        folders = load_config(config_path, overrides).config.reward_plugins
    load_plugins(folders)
    console = Console(soft_wrap=False)
    table = Table(title="Rewards (rewards: - name: ...)", title_justify="left", show_lines=False)
    for column in ("name", "weight", "parameters (params:)", "description", "from"):
        table.add_column(column, overflow="fold")
    for name, info in registered().items():
        table.add_row(
            name,
            str(info.weight),
            info.describe_params() or "-",
            info.description,
            info.source,
            end_section=True,
        )
    console.print(table)
    formats = Table(title="Dataset formatters (data.formatter)", title_justify="left")
    for column in ("name", "columns", "description"):
        formats.add_column(column, overflow="fold")
    for name, fmt in registered_formatters().items():
        formats.add_row(name, ", ".join(fmt.columns), fmt.description)
    console.print(formats)
    console.print(
        "A parameter shown as (data.answer_tag) is filled from that config key; params: in a "
        "reward entry overrides it."
    )
