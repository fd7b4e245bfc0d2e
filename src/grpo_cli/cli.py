"""The `grpo` command line: parses arguments and calls one function per command, nothing more.

Command modules are imported inside each command so `grpo --help` stays instant, and the error
funnel in `main()` turns every user error into `Error:` / `Hint:` lines and exit code 2.
"""

from __future__ import annotations

import os
import sys
import traceback
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from grpo_cli.errors import USER_ERROR_EXIT, GrpoError

app = typer.Typer(
    name="grpo",
    help="Teach small instruct LLMs to reason with GRPO on verifiable rewards.\n\n"
    "Examples:\n\n"
    "  grpo config validate configs/*.yaml\n\n"
    "  grpo config show configs/qwen3b_gsm8k.yaml --set training.learning_rate=1e-5\n\n"
    "  grpo score completions.jsonl --config configs/qwen3b_gsm8k.yaml --output scored.jsonl\n\n"
    "  grpo rewards list",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(
    help="Check configs, print them resolved, and list every key.", no_args_is_help=True
)
app.add_typer(config_app, name="config")
rewards_app = typer.Typer(
    help="The reward functions a config can name (built-ins and plugins).", no_args_is_help=True
)
app.add_typer(rewards_app, name="rewards")

SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        metavar="KEY=VALUE",
        help="Override a key, e.g. --set training.learning_rate=1e-5 (repeatable; values are "
        "read as in YAML: numbers, true/false, \\[a, b], null).",
    ),
]


def _version(value: bool) -> None:
    if value:
        from grpo_cli import __version__

        print(f"grpo-cli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks (also GRPO_DEBUG=1).")
    ] = False,
) -> None:
    """Teach small instruct LLMs to reason with GRPO on verifiable rewards."""


@config_app.command("validate")
def config_validate(
    configs: Annotated[list[Path], typer.Argument(metavar="CONFIG...", help="YAML config files.")],
    overrides: SetOpt = None,
) -> None:
    """Check configs; prints one OK line per valid file, exits 2 on any problem.

    Example: grpo config validate configs/*.yaml
    """
    from grpo_cli.commands import config

    config.validate(configs, overrides or [])


@config_app.command("show")
def config_show(
    config_path: Annotated[Path, typer.Argument(metavar="CONFIG", help="YAML config file.")],
    overrides: SetOpt = None,
) -> None:
    """Print the fully resolved config (extends, overrides and defaults applied) as YAML.

    Example: grpo config show configs/qwen3b_gsm8k.yaml --set training.learning_rate=1e-5
    """
    from grpo_cli.commands import config

    config.show(config_path, overrides or [])


class SchemaFormat(StrEnum):
    table = "table"
    markdown = "markdown"
    json = "json"


@config_app.command("schema")
def config_schema(
    fmt: Annotated[
        SchemaFormat,
        typer.Option("--format", "-f", help="table, markdown (README) or json (JSON Schema)."),
    ] = SchemaFormat.table,
) -> None:
    """List every config key with its type, default and description.

    Example: grpo config schema --format json > grpo.schema.json  (for editor completion)
    """
    from grpo_cli.commands import config

    config.schema(fmt.value)


@app.command("train")
def train(
    config_path: Annotated[Path, typer.Argument(metavar="CONFIG", help="YAML config file.")],
    overrides: SetOpt = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run from its latest checkpoint.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing run directory.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Check config, tokenizer, data and rewards, print one rendered prompt; load no "
            "weights.",
        ),
    ] = False,
) -> None:
    """Train a LoRA adapter with GRPO; the run directory holds config, metrics, checkpoints and
    the adapter. Ctrl-C saves a checkpoint; --resume continues from it.

    Example: grpo train configs/smoke_cpu.yaml
    """
    from grpo_cli.commands import train as train_command

    code = train_command.train(
        config_path, overrides or [], resume=resume, overwrite=overwrite, dry_run=dry_run
    )
    if code:
        raise typer.Exit(code)


@rewards_app.command("list")
def rewards_list(
    config_path: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Also load the config's reward_plugins folders."),
    ] = None,
    overrides: SetOpt = None,
) -> None:
    """List every reward with its default weight, parameters and description, and the dataset
    formatters. Plugins in ./rewards/ are included.

    Example: grpo rewards list --config configs/qwen3b_gsm8k.yaml
    """
    from grpo_cli.commands import rewards

    rewards.list_rewards(config_path, overrides or [])


@app.command("score")
def score(
    input_path: Annotated[
        str,
        typer.Argument(
            metavar="INPUT.jsonl",
            help="Rows with completion (text or chat messages) and answer (gold: '... #### N' or "
            "a number); '-' reads stdin.",
        ),
    ],
    config_path: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Score with this config's rewards, weights and answer tags (default: the GSM8K "
            "reward set with <reasoning>/<answer> tags).",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write scored rows here (default: stdout)."),
    ] = None,
    overrides: SetOpt = None,
) -> None:
    """Grade completions: adds rewards, reward (weighted total), extracted, correct and
    correct_flexible to every row, and prints a summary (to stderr when rows go to stdout).

    Example: grpo score samples.jsonl --config configs/qwen3b_gsm8k.yaml -o scored.jsonl
    """
    from grpo_cli.commands import score as score_command

    score_command.score(input_path, config_path, overrides or [], output)


class Engine(StrEnum):
    auto = "auto"
    vllm = "vllm"
    transformers = "transformers"


@app.command("eval")
def evaluate(
    config_path: Annotated[Path, typer.Argument(metavar="CONFIG", help="YAML config file.")],
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            metavar="MODEL",
            help="base, a run directory, an adapter or merged-model directory, or a Hub id "
            "(repeatable: one comparison table). Default: the config's base model.",
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            "--split",
            help="test (default: data.eval_split), heldout (the run's held-out rows) or a "
            ".jsonl file.",
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, help="Evaluate the first N rows.")
    ] = None,
    samples: Annotated[
        int, typer.Option("--samples", "-k", min=1, help="Completions per question (pass@k).")
    ] = 1,
    temperature: Annotated[
        float | None,
        typer.Option(
            "--temperature",
            "-t",
            min=0.0,
            help="Sampling temperature; default 0 (greedy) for one sample, 1.0 for several.",
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", "-b", min=1, help="Prompts generated together.")
    ] = 32,
    max_new_tokens: Annotated[
        int | None,
        typer.Option(
            "--max-new-tokens",
            min=1,
            help="Longest completion (default: the config's training.max_completion_length).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed.")] = 0,
    engine: Annotated[
        Engine,
        typer.Option(
            "--engine",
            help="Generation: auto (vLLM on a CUDA GPU when installed), vllm or "
            "transformers (any device).",
        ),
    ] = Engine.auto,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Folder for <model>/predictions.jsonl and metrics.json (default: eval/<split>, "
            "eval/<split>-k<K>-t<T> when sampling).",
        ),
    ] = None,
    overrides: SetOpt = None,
) -> None:
    """Held-out accuracy with 95% confidence intervals; several --model give one comparison
    table with paired tests. Finished predictions are reused when run again.

    Example: grpo eval configs/qwen3b_gsm8k.yaml --model base --model outputs/RUN --limit 200
    """
    from grpo_cli.commands import evaluate as eval_command

    eval_command.evaluate(
        config_path,
        models or [],
        overrides or [],
        split=split,
        limit=limit,
        samples=samples,
        temperature=temperature,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        seed=seed,
        output=output,
        engine=engine.value,
    )


class MergeDtype(StrEnum):
    bf16 = "bf16"
    fp16 = "fp16"
    fp32 = "fp32"


@app.command("merge")
def merge(
    source: Annotated[
        Path, typer.Argument(metavar="RUN_DIR|ADAPTER_DIR", help="A run directory or an adapter.")
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Merged model folder (default: RUN_DIR/merged)."),
    ] = None,
    dtype: Annotated[
        MergeDtype,
        typer.Option(
            "--dtype",
            help="Weights of the merged model: bf16 or fp16 to ship; fp32 (twice the size) "
            "reproduces the adapter's logits exactly, e.g. to check a merge on CPU.",
        ),
    ] = MergeDtype.bf16,
    push_to_hub: Annotated[
        str | None,
        typer.Option("--push-to-hub", metavar="OWNER/NAME", help="Publish to this Hub repo."),
    ] = None,
    private: Annotated[
        bool | None,
        typer.Option(
            "--private/--public", help="Visibility of a new Hub repo (default: output.private)."
        ),
    ] = None,
    revision: Annotated[
        str | None, typer.Option("--revision", help="Hub branch to push to.")
    ] = None,
    adapter_only: Annotated[
        bool,
        typer.Option("--adapter-only", help="Publish the LoRA adapter, not merged weights."),
    ] = False,
    gguf: Annotated[
        str | None,
        typer.Option(
            "--gguf", metavar="q4_k_m,q8_0,...", help="Also export GGUF files (needs unsloth)."
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a non-empty output folder.")
    ] = False,
) -> None:
    """Merge the LoRA adapter into a 16-bit copy of the base model, write a model card, and
    optionally publish to the Hub or export GGUF.

    Example: grpo merge outputs/RUN --push-to-hub me/qwen3b-gsm8k-grpo
    """
    from grpo_cli.commands import merge as merge_command

    merge_command.merge(
        source,
        output=output,
        dtype=dtype.value,
        push_to_hub=push_to_hub,
        private=private,
        revision=revision,
        adapter_only=adapter_only,
        gguf=gguf,
        force=force,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `grpo` script; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    # --debug is honoured wherever it is written (`grpo config validate x.yaml --debug` too).
    debug = "--debug" in args or os.environ.get("GRPO_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    try:
        app(args=args, prog_name="grpo")
    except SystemExit as exc:
        # Typer turns a KeyboardInterrupt into a silent exit 130, keeping it down the exception
        # chain; `grpo train` catches its own and says what it kept.
        cause = exc.__context__
        while cause is not None and not isinstance(cause, KeyboardInterrupt):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            print("Interrupted by Ctrl-C; stopped.", file=sys.stderr)
            return 130
        if exc.code is None:
            return 0
        return exc.code if isinstance(exc.code, int) else 1
    except GrpoError as exc:
        if debug:
            traceback.print_exc()
        print(exc.render(), file=sys.stderr)
        return USER_ERROR_EXIT
    except KeyboardInterrupt:
        print("Interrupted by Ctrl-C; stopped.", file=sys.stderr)
        return 130
    except PermissionError as exc:
        if debug:
            traceback.print_exc()
        print(
            f"Error: permission denied: {exc.filename or exc}\n"
            "Hint: choose a folder you can write (output.dir, or --output), or check the "
            "file's permissions",
            file=sys.stderr,
        )
        return USER_ERROR_EXIT
    except Exception as exc:
        if debug:
            traceback.print_exc()
            return 1
        print(
            f"Error: unexpected {type(exc).__name__}: {exc}\n"
            "Hint: run again with --debug for the traceback, and report it.",
            file=sys.stderr,
        )
        return 1
    return 0
