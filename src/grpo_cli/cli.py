"""The `grpo` command line: parses arguments and calls one function per command, nothing more.

Command modules are imported inside each command so `grpo --help` stays instant, and the error
funnel in `main()` turns every user error into `Error:` / `Hint:` lines and exit code 2.
"""

from __future__ import annotations

import inspect
import os
import sys
import traceback
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from grpo_cli import errors
from grpo_cli.errors import INTERRUPTED_EXIT, USER_ERROR_EXIT, GrpoError, causes


def _without_type_labels(params: list[Any]) -> list[Any]:
    """Typer 0.29 labels every parameter with its Python type in help: `<bool>` beside flags,
    which take no value, and `<list[Path]>` beside arguments whose metavar already says what
    they take. Help shows neither; options that take a value keep their label (`<path>`)."""
    for param in params:
        if getattr(param, "is_flag", False) or (
            param.param_type_name == "argument" and param.metavar
        ):
            # setattr: a per-parameter override of the label, which Typer has no setting for.
            setattr(param, "display_type_rich", _no_type_label)  # noqa: B010
    return params


def _no_type_label(ctx: object) -> None:
    return None


def _reflowed(help_text: str | None) -> str | None:
    """Help text with each paragraph on one line, for the terminal to wrap: Typer 0.29 keeps a
    docstring's line breaks in help, which breaks sentences where the source did."""
    if help_text is None:
        return None
    paragraphs = inspect.cleandoc(help_text).split("\n\n")
    return "\n\n".join(" ".join(p.split("\n")) for p in paragraphs)


class _Command(TyperCommand):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = _reflowed(self.help)

    def get_params(self, ctx: Any) -> list[Any]:
        return _without_type_labels(super().get_params(ctx))


class _Group(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return _without_type_labels(super().get_params(ctx))


app = typer.Typer(
    name="grpo",
    cls=_Group,
    help="Teach small instruct LLMs to reason with GRPO on verifiable rewards.\n\n"
    "Examples:\n\n"
    "  grpo config validate configs/*.yaml\n\n"
    "  grpo config show configs/qwen3b_gsm8k.yaml --set lora.r=32\n\n"
    "  grpo train configs/smoke_cpu.yaml\n\n"
    "  grpo doctor configs/qwen3b_gsm8k.yaml\n\n"
    "  grpo score samples.jsonl --config configs/qwen3b_gsm8k.yaml\n\n"
    "  grpo report outputs/smoke-cpu\n\n"
    "  grpo rewards list",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(
    cls=_Group, help="Check configs, print them resolved, and list every key.", no_args_is_help=True
)
app.add_typer(config_app, name="config")
rewards_app = typer.Typer(
    cls=_Group,
    help="The reward functions a config can name (built-ins and plugins).",
    no_args_is_help=True,
)
app.add_typer(rewards_app, name="rewards")

SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        metavar="KEY=VALUE",
        help="Override a config key, e.g. --set training.learning_rate=1e-5 (repeatable; values "
        "are read as in YAML: numbers, true/false, \\[a, b], null).",
    ),
]
# The run-directory options grpo train and grpo sft share.
ResumeOpt = Annotated[
    bool, typer.Option("--resume", help="Continue the run from its latest checkpoint.")
]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="Replace an existing run directory.")
]
TensorParallelOpt = Annotated[
    int,
    typer.Option(
        "--tensor-parallel-size",
        min=1,
        metavar="N",
        help="vLLM: split each model over N GPUs, for models one GPU cannot hold.",
    ),
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        metavar="N",
        help="CPU threads for torch (default: GRPO_THREADS, else torch's own: the number of "
        "cores). On a machine others share, 1 can be several times faster than 2.",
    ),
]
# score and rewards list read a config only with --config; their --set changes that config.
ScoreSetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        metavar="KEY=VALUE",
        help="Override a key of the --config file, e.g. --set rewards.0.weight=2 (repeatable).",
    ),
]
RewardsSetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        metavar="KEY=VALUE",
        help="Override a key of the --config file, e.g. --set reward_plugins=\\[my_rewards] "
        "(repeatable).",
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


@config_app.command("validate", cls=_Command)
def config_validate(
    configs: Annotated[
        list[Path], typer.Argument(metavar="CONFIG", help="YAML config files, one or more.")
    ],
    overrides: SetOpt = None,
) -> None:
    """Check configs: one OK line per valid file, every problem of the others, exit code 2.

    Example: grpo config validate configs/*.yaml
    """
    from grpo_cli.commands import config

    config.validate(configs, overrides or [])


@config_app.command("show", cls=_Command)
def config_show(
    config_path: Annotated[Path, typer.Argument(metavar="CONFIG", help="YAML config file.")],
    overrides: SetOpt = None,
) -> None:
    """Print the resolved config as YAML: extends, overrides and defaults applied.

    Example: grpo config show configs/qwen3b_gsm8k.yaml --set lora.r=32
    """
    from grpo_cli.commands import config

    config.show(config_path, overrides or [])


class SchemaFormat(StrEnum):
    table = "table"
    markdown = "markdown"
    json = "json"


@config_app.command("schema", cls=_Command)
def config_schema(
    fmt: Annotated[
        SchemaFormat,
        typer.Option("--format", "-f", help="table, markdown (README) or json (JSON Schema)."),
    ] = SchemaFormat.table,
) -> None:
    """List every config key with its type, default and description.

    --format json writes a JSON Schema, for completion in an editor.

    Example: grpo config schema --format json > grpo.schema.json
    """
    from grpo_cli.commands import config

    config.schema(fmt.value)


@app.command("train", cls=_Command)
def train(
    config_path: Annotated[Path, typer.Argument(metavar="CONFIG", help="YAML config file.")],
    overrides: SetOpt = None,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Check config, tokenizer, data and rewards, print one rendered prompt; load no "
            "weights.",
        ),
    ] = False,
    threads: ThreadsOpt = None,
    processes: Annotated[
        int | None,
        typer.Option(
            "--processes",
            min=1,
            metavar="N",
            help="Train on N processes (one per GPU), started through `accelerate launch`; N "
            "counts them over all machines. prompts_per_step stays per optimizer step over all.",
        ),
    ] = None,
    distributed: Annotated[
        str,
        typer.Option(
            "--distributed",
            metavar="MODE",
            help="With --processes: ddp (default), zero2, zero3 (DeepSpeed) or fsdp (FSDP2); "
            "the accelerate configs in configs/accelerate/.",
        ),
    ] = "ddp",
    machines: Annotated[
        int, typer.Option("--machines", min=1, metavar="M", help="With --processes: machines.")
    ] = 1,
    machine_rank: Annotated[
        int,
        typer.Option("--machine-rank", min=0, metavar="R", help="This machine's rank (0: main)."),
    ] = 0,
    main_process_ip: Annotated[
        str | None,
        typer.Option("--main-process-ip", metavar="IP", help="The machine of rank 0's address."),
    ] = None,
    main_process_port: Annotated[
        int | None,
        typer.Option("--main-process-port", metavar="PORT", help="Its port (default 29500)."),
    ] = None,
) -> None:
    """Train a LoRA adapter with GRPO.

    The run directory holds the resolved config, metrics, samples, checkpoints and the adapter.
    Ctrl-C saves a checkpoint; --resume continues from it.

    Example: grpo train configs/smoke_cpu.yaml

    Several GPUs: grpo train CONFIG --processes 4 (or accelerate launch -m grpo_cli train CONFIG)
    """
    from grpo_cli.commands import train as train_command
    from grpo_cli.distributed import Launch

    launch = None
    if processes is not None:
        launch = Launch(
            processes, distributed, machines, machine_rank, main_process_ip, main_process_port
        )
    code = train_command.train(
        config_path,
        overrides or [],
        resume=resume,
        overwrite=overwrite,
        dry_run=dry_run,
        threads=threads,
        launch=launch,
    )
    if code:
        raise typer.Exit(code)


@app.command("serve", cls=_Command)
def serve(
    config_path: Annotated[Path, typer.Argument(metavar="CONFIG", help="YAML config file.")],
    overrides: SetOpt = None,
    tensor_parallel_size: TensorParallelOpt = 1,
    data_parallel_size: Annotated[
        int,
        typer.Option(
            "--data-parallel-size",
            min=1,
            metavar="N",
            help="Model copies; vLLM takes more than 1 for mixture-of-experts models only.",
        ),
    ] = 1,
    gpus: Annotated[
        str | None,
        typer.Option(
            "--gpus",
            metavar="0,1",
            help="The server's GPUs (default: the first of CUDA_VISIBLE_DEVICES, else of the "
            "machine).",
        ),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            metavar="HOST",
            help="Address to listen on (default: vllm.server_host; 0.0.0.0: every interface).",
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", metavar="PORT", help="Port (default: vllm.server_port)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the commands; start nothing.")
    ] = False,
) -> None:
    """Start the vLLM server that `vllm.mode: server` trains against, on GPUs of its own.

    Prints the `grpo train` command that uses it (on the machine's other GPUs), then runs TRL's
    vLLM server for the config's model until Ctrl-C.

    Example: grpo serve configs/qwen3b_gsm8k.yaml --gpus 0
    """
    from grpo_cli.commands import serve as serve_command

    serve_command.serve(
        config_path,
        overrides or [],
        tensor_parallel_size=tensor_parallel_size,
        data_parallel_size=data_parallel_size,
        gpus=gpus,
        host=host,
        port=port,
        dry_run=dry_run,
    )


@app.command("sft", cls=_Command)
def sft(
    config_path: Annotated[Path, typer.Argument(metavar="CONFIG", help="YAML config file.")],
    overrides: SetOpt = None,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Check config, tokenizer and data, print one prompt and worked solution; load "
            "no weights.",
        ),
    ] = False,
    threads: ThreadsOpt = None,
) -> None:
    """Warm a model up with supervised fine-tuning on worked solutions, before GRPO.

    Trains on worked solutions in the config's prompt style, the loss on the solution only:
    a LoRA adapter (RUN/adapter) or every weight (RUN/model), as the sft section says.

    Ctrl-C saves a checkpoint; --resume continues from it. Then train with GRPO from the run:
    grpo train CONFIG --set model.name=./outputs/RUN

    Example: grpo sft configs/smoke_cpu.yaml
    """
    from grpo_cli.commands import sft as sft_command

    code = sft_command.sft(
        config_path,
        overrides or [],
        resume=resume,
        overwrite=overwrite,
        dry_run=dry_run,
        threads=threads,
    )
    if code:
        raise typer.Exit(code)


@rewards_app.command("list", cls=_Command)
def rewards_list(
    config_path: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Also load the config's reward_plugins folders."),
    ] = None,
    overrides: RewardsSetOpt = None,
) -> None:
    """List every reward and dataset formatter a config can name.

    Each reward with its default weight, parameters and description: the built-ins, plugins in
    ./rewards/ and, with --config, the config's reward_plugins.

    Example: grpo rewards list --config configs/qwen3b_gsm8k.yaml
    """
    from grpo_cli.commands import rewards

    rewards.list_rewards(config_path, overrides or [])


@app.command("score", cls=_Command)
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
    overrides: ScoreSetOpt = None,
) -> None:
    """Grade completions with the rewards, and print a summary.

    Adds rewards, reward (the weighted total), extracted, correct and correct_flexible to every
    row; the summary goes to stderr when the rows go to stdout.

    Example: grpo score samples.jsonl -c configs/qwen3b_gsm8k.yaml -o scored.jsonl
    """
    from grpo_cli.commands import score as score_command

    score_command.score(input_path, config_path, overrides or [], output)


class Engine(StrEnum):
    auto = "auto"
    vllm = "vllm"
    transformers = "transformers"


@app.command("eval", cls=_Command)
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
            metavar="SPLIT",
            help="test (default: data.eval_split), heldout (the run's held-out rows) or a "
            ".jsonl file.",
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", "-n", min=1, metavar="N", help="Evaluate the first N rows."),
    ] = None,
    samples: Annotated[
        int,
        typer.Option(
            "--samples", "-k", min=1, metavar="K", help="Completions per question (pass@k)."
        ),
    ] = 1,
    temperature: Annotated[
        float | None,
        typer.Option(
            "--temperature",
            "-t",
            min=0.0,
            metavar="T",
            help="Sampling temperature; default 0 (greedy) for one sample, the config's "
            "training.temperature (as training samples) for several.",
        ),
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option("--batch-size", "-b", min=1, metavar="N", help="Prompts generated together."),
    ] = 32,
    max_new_tokens: Annotated[
        int | None,
        typer.Option(
            "--max-new-tokens",
            min=1,
            metavar="N",
            help="Longest completion in tokens (default: training.max_completion_length).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Sampling seed.")] = 0,
    engine: Annotated[
        Engine,
        typer.Option(
            "--engine",
            metavar="ENGINE",
            help="Generation: auto (vLLM on a CUDA GPU when installed), vllm or "
            "transformers (any device).",
        ),
    ] = Engine.auto,
    tensor_parallel_size: TensorParallelOpt = 1,
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
    threads: ThreadsOpt = None,
) -> None:
    """Accuracy on held-out questions, with 95% confidence intervals.

    Several --model give one comparison table with paired tests. Finished predictions are reused
    when the command runs again.

    Example: grpo eval configs/qwen3b_gsm8k.yaml -m base -m outputs/RUN -n 200
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
        threads=threads,
        tensor_parallel_size=tensor_parallel_size,
    )


class MergeDtype(StrEnum):
    bf16 = "bf16"
    fp16 = "fp16"
    fp32 = "fp32"


@app.command("merge", cls=_Command)
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
    """Merge the LoRA adapter into its base model, with a model card.

    The base model is loaded in 16 bit; the result can be published to the Hub or exported to
    GGUF.

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


@app.command("report", cls=_Command)
def report(
    runs: Annotated[
        list[Path], typer.Argument(metavar="RUN", help="Run directories, one or more.")
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Folder for the figures and report.html (default: RUN/report for one run, "
            "./report-<date>-<time> for several).",
        ),
    ] = None,
) -> None:
    """Draw a run's metrics: PNG figures and one self-contained HTML page.

    Reward (total and each reward, with its spread), train and held-out accuracy with 95%
    intervals, completion length, truncation, zero-spread groups, KL, learning rate, step time.

    Several runs are overlaid on the same axes. The page also lists the health warnings and the
    first and last sampled completions.

    Examples:

      grpo report outputs/smoke-cpu

      grpo report outputs/a outputs/b outputs/c -o compare
    """
    from grpo_cli.commands import report as report_command

    report_command.report(runs, output)


@app.command("doctor", cls=_Command)
def doctor(
    config_path: Annotated[
        Path | None,
        typer.Argument(metavar="CONFIG", help="Also check this config against the machine."),
    ] = None,
    overrides: SetOpt = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Also run 2 GRPO steps of a tiny local model on each training path this GPU "
            "supports (up to 10 minutes, no download).",
        ),
    ] = False,
) -> None:
    """Check this machine (and a config) before any download.

    The GPU and its driver, the library versions, the Hub and the local cache; with CONFIG, every
    setting this machine cannot run and an estimate of peak GPU memory on the common GPUs. Exit
    code 1 when a problem is listed, or with --check when a path failed or the check's time ran
    out before it.

    Example: grpo doctor configs/qwen3b_gsm8k.yaml
    """
    from grpo_cli.commands import doctor as doctor_command

    code = doctor_command.doctor(config_path, overrides or [], check=check)
    if code:
        raise typer.Exit(code)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `grpo` script; returns the exit code."""
    from grpo_cli.distributed import record_exit

    code = _main(argv)
    return record_exit(code, "\n".join(_SAID))


def _main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    # --debug is honoured wherever it is written (`grpo config validate x.yaml --debug` too).
    debug = "--debug" in args or os.environ.get("GRPO_DEBUG", "") not in ("", "0")
    errors.DEBUG = debug
    _SAID.clear()
    args = [a for a in args if a != "--debug"]
    try:
        app(args=args, prog_name="grpo")
    except SystemExit as exc:
        # Typer turns a KeyboardInterrupt into a silent exit 130, keeping it down the exception
        # chain; `grpo train` catches its own and says what it kept.
        chain = causes(exc.__context__) if exc.__context__ is not None else []
        if any(isinstance(cause, KeyboardInterrupt) for cause in chain):
            _say("Interrupted by Ctrl-C; stopped.")
            return INTERRUPTED_EXIT
        if exc.code is None:
            return 0
        return exc.code if isinstance(exc.code, int) else 1
    except GrpoError as exc:
        if debug:
            traceback.print_exc()
        _say(exc.render())
        return USER_ERROR_EXIT
    except KeyboardInterrupt:
        _say("Interrupted by Ctrl-C; stopped.")
        return INTERRUPTED_EXIT
    except OSError as exc:
        # Faults of the machine the user can fix, whichever command meets them: a folder they
        # cannot write, a full disk or quota, a read-only file system. Anything else is a bug.
        from grpo_cli.files import storage_error

        error = storage_error(exc)
        if error is None:
            return _unexpected(exc, debug)
        if debug:
            traceback.print_exc()
        _say(error.render())
        return USER_ERROR_EXIT
    except Exception as exc:
        return _unexpected(exc, debug)
    return 0


# What this process said, or left to the main one to say: `grpo train --processes` says it when
# the failure of a process other than the main one ended the run (distributed.ending).
_SAID: list[str] = []


def _say(text: str) -> None:
    """A user error or a stop, on stderr; under several processes every one of them meets it
    and exits with the same code, and the main one says it once."""
    from grpo_cli.distributed import is_main

    _SAID.append(text)
    if is_main():
        print(text, file=sys.stderr)


def _unexpected(exc: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exc()
        return 1
    print(
        f"Error: unexpected {type(exc).__name__}: {exc}\n"
        "Hint: run again with --debug for the traceback, and report it.",
        file=sys.stderr,
    )
    return 1
