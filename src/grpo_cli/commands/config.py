"""`grpo config validate | show | schema`: check, print resolved, document every key."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from grpo_cli.config import dump_config, load_config
from grpo_cli.config.reference import as_markdown, key_docs
from grpo_cli.config.schema import GrpoConfig
from grpo_cli.config.yamlio import display_path
from grpo_cli.errors import GrpoError
from grpo_cli.geometry import batch_geometry


def validate(paths: list[Path], overrides: list[str]) -> None:
    """Print one OK line per valid file; report every problem of every invalid file."""
    failed = []
    for path in paths:
        try:
            loaded = load_config(path, overrides)
        except GrpoError as exc:
            if len(paths) == 1:
                raise
            print(exc.render(), file=sys.stderr)
            failed.append(path)
            continue
        print(f"OK {display_path(path)}: {summary(loaded.config)}")
    if failed:
        raise GrpoError(f"{len(failed)} of {len(paths)} configs have problems (listed above)")


def summary(cfg: GrpoConfig) -> str:
    geometry = batch_geometry(cfg.training)
    steps = (
        f"{cfg.training.max_steps} steps"
        if cfg.training.max_steps
        else (f"{cfg.training.num_train_epochs:g} epoch(s)")
    )
    rewards = ", ".join(r.name for r in cfg.rewards)
    return (
        f"{cfg.model.name} ({cfg.model.quantization}, backend {cfg.model.backend}), "
        f"{geometry.prompts_per_step} prompt(s) x {geometry.num_generations} generations per "
        f"step, {steps}, rewards: {rewards}"
    )


def show(path: Path, overrides: list[str]) -> None:
    """Print the resolved config as YAML that loads back to the same config."""
    loaded = load_config(path, overrides)
    chain = " <- ".join(loaded.files)
    header = f"# grpo config show: {chain}"
    if overrides:
        header += "\n# overrides: " + " ".join(overrides)
    body = yaml.safe_dump(dump_config(loaded.config), sort_keys=False, allow_unicode=True)
    sys.stdout.write(f"{header}\n{body}")


def schema(fmt: str) -> None:
    """Every key with its type, default and description."""
    if fmt == "markdown":
        print(as_markdown())
    elif fmt == "json":
        print(json.dumps(GrpoConfig.model_json_schema(), indent=2))
    else:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        console = Console()
        sections: dict[str, list] = {}
        for doc in key_docs():
            section, _, key = doc.key.rpartition(".")
            sections.setdefault(section or doc.key, []).append((key, doc))
        for section, rows in sections.items():
            table = Table(title=Text(section, style="bold"), title_justify="left", expand=True)
            table.add_column("key", no_wrap=True)
            table.add_column("type", ratio=2, overflow="fold")
            table.add_column("default", ratio=2, overflow="fold")
            table.add_column("description", ratio=5)
            for key, doc in rows:
                table.add_row(*(Text(c) for c in (key, doc.type, doc.default, doc.description)))
            console.print(table)
