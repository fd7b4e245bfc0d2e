"""`grpo merge RUN_DIR|ADAPTER_DIR`: the LoRA adapter merged into a 16-bit copy of its base model,
with tokenizer, chat template and a model card; optionally GGUF files and a Hub upload.

resolve the source -> check every flag, the output folder and the token -> merge into a
temporary folder beside the output -> model card -> rename into place -> publish.
Nothing heavy is loaded until every check a user can fail has passed.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from grpo_cli.config.schema import is_hub_id, looks_like_path
from grpo_cli.config.yamlio import load_text
from grpo_cli.errors import GrpoError
from grpo_cli.hardware import installed
from grpo_cli.modelcard import CONFIG_FILE, EXAMPLE_QUESTION, CardFacts, model_card
from grpo_cli.training.models import DTYPES, quiet_progress_bars
from grpo_cli.training.rundir import RunDir, adapter_base, enclosing_run

# unsloth.save.ALLOWED_QUANTS less its aliases and the imatrix-only quants, written out so a
# typo is refused before any weights are loaded and without importing unsloth.
GGUF_QUANTS = (
    "q4_k_m", "q5_k_m", "q8_0", "f16", "bf16", "f32", "q2_k", "q2_k_l", "q3_k_s", "q3_k_m",
    "q3_k_l", "q4_0", "q4_1", "q4_k_s", "q5_0", "q5_1", "q5_k_s", "q6_k",
)  # fmt: skip
GPU_EXTRA = "pip install -e '.[gpu]'"
# The adapter folder holds the trainer's pickled arguments (no use to anyone loading the adapter,
# and unpickling it runs code) and PEFT's placeholder card, which ours replaces.
NOT_PUBLISHED = ("training_args.bin", "README.md")


@dataclass
class Source:
    """What is merged: the adapter, its base model, and the run that trained it (if known)."""

    adapter: Path
    base: str
    revision: str | None = None
    trust_remote_code: bool = False
    run: RunDir | None = None
    config: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)
    given: Path = Path(".")  # the path the user typed, for defaults and messages


@dataclass(frozen=True)
class PushPlan:
    """Exactly what goes to the Hub, decided before any network call."""

    repo_id: str
    private: bool
    revision: str | None
    folder: Path
    files: list[str]
    commit_message: str
    repo_type: str = "model"


def merge(
    source: Path,
    *,
    output: Path | None = None,
    dtype: str = "bf16",
    push_to_hub: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    adapter_only: bool = False,
    gguf: str | None = None,
    force: bool = False,
) -> Path:
    """Merge (or, with adapter_only, package) SOURCE into OUTPUT, in bf16, fp16 or fp32."""
    started = time.perf_counter()
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    if dtype not in DTYPES:
        raise GrpoError(f"--dtype {dtype!r} is not one of bf16, fp16, fp32", "use --dtype bf16")
    src = resolve_source(source)
    quants = parse_quants(gguf, adapter_only)
    repo_id = check_publish_flags(push_to_hub, private, revision)
    target = output if output is not None else default_output(src, adapter_only)
    check_output(target, src, force)
    token = hub_token() if repo_id else None
    if repo_id is None and src.config.get("output", {}).get("hub_repo"):
        console.print(f"note: to publish, add --push-to-hub {src.config['output']['hub_repo']}")
    merger = None if adapter_only else choose_merger(src, quants, console)
    if merger == "peft":
        check_base(src)
    elif merger == "unsloth":
        check_local_base(src)  # Unsloth maps a quantized Hub base to its 16-bit weights itself
    trained_on = src.config.get("model", {}).get("quantization", "none")
    if merger and trained_on != "none":
        console.print(f"note: training used {trained_on} base weights; merging into a 16-bit copy")

    quiet_progress_bars()
    with staging(target, force) as tmp:
        if adapter_only:
            copy_adapter(src.adapter, tmp)
        elif merger == "unsloth":
            merge_with_unsloth(src, tmp, dtype, quants)
        else:
            merge_with_peft(src, tmp, dtype)
        if src.run is not None and src.run.config.is_file():
            shutil.copyfile(src.run.config, tmp / CONFIG_FILE)
        facts = card_facts(src, dtype, adapter_only, repo_id, merger or "peft", quants)
        (tmp / "README.md").write_text(model_card(facts), encoding="utf-8")
    summary(console, target, src, dtype, adapter_only, merger, time.perf_counter() - started)

    if repo_id is not None:
        default_private = src.config.get("output", {}).get("private", True)
        plan = push_plan(
            target, repo_id, default_private if private is None else private, revision, adapter_only
        )
        url = publish(plan, token)
        console.print(f"Published {len(plan.files)} files to {url}")
    return target


# --- the source ------------------------------------------------------------------------------


def resolve_source(path: Path) -> Source:
    """A run directory (outputs/NAME), its adapter/ or a checkpoint, or any PEFT adapter."""
    hint = (
        "give a run directory (outputs/NAME from grpo train) or a folder with adapter_config.json"
    )
    if not path.exists():
        raise GrpoError(f"{path} not found", hint)
    if not path.is_dir():
        raise GrpoError(f"{path} is a file, not a run directory or an adapter folder", hint)
    if (path / "config.yaml").is_file() or (path / "adapter").is_dir():
        run = RunDir(path)
        if not (run.adapter / "adapter_config.json").is_file():
            checkpoint = run.latest_checkpoint()
            raise GrpoError(
                f"{path} has no adapter yet ({run.adapter}/adapter_config.json is missing)",
                f"the run has not finished: merge its latest checkpoint with `grpo merge "
                f"{checkpoint}`, or resume it with `grpo train {run.config} --resume`"
                if checkpoint
                else f"train it first: grpo train {run.config}",
            )
        return _with_run(_from_adapter(run.adapter, path), run)
    if (path / "adapter_config.json").is_file():
        src = _from_adapter(path, path)
        run = enclosing_run(path)  # the run still describes how it was trained
        return _with_run(src, run) if run is not None else src
    if (path / "config.json").is_file():
        raise GrpoError(
            f"{path} holds a full model, not a LoRA adapter",
            "there is nothing to merge: load it as it is, or give the run directory",
        )
    raise GrpoError(f"{path} is neither a run directory nor an adapter folder", hint)


def _from_adapter(adapter: Path, given: Path) -> Source:
    base, revision = adapter_base(adapter)
    return Source(adapter=adapter, base=base, revision=revision, given=given)


def _with_run(src: Source, run: RunDir) -> Source:
    config = _read_yaml(run.config)
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    src.run, src.config, src.env = run, config, _read_json(run.env)
    src.base = str(model.get("name") or src.base)
    src.revision = model.get("revision", src.revision)
    src.trust_remote_code = bool(model.get("trust_remote_code", False))
    return src


def default_output(src: Source, adapter_only: bool) -> Path:
    name = "adapter-release" if adapter_only else "merged"
    if src.run is not None and src.given == src.run.path:
        return src.run.path / name
    given = src.given.resolve()  # "." has no name to put a suffix on
    return given.with_name(f"{given.name}-{name.split('-')[-1]}")


# --- checks before anything is loaded ----------------------------------------------------------


def parse_quants(text: str | None, adapter_only: bool) -> list[str]:
    if text is None:
        return []
    names = list(dict.fromkeys(q.strip().lower() for q in text.split(",") if q.strip()))
    if not names:
        raise GrpoError("--gguf names no quantization", "e.g. --gguf q4_k_m,q8_0")
    for name in names:
        if name not in GGUF_QUANTS:
            close = difflib.get_close_matches(name, GGUF_QUANTS, n=1)
            raise GrpoError(
                f"--gguf: unknown quantization {name!r}"
                + (f". Did you mean {close[0]!r}?" if close else ""),
                f"choose from {', '.join(GGUF_QUANTS)}",
            )
    if adapter_only:
        raise GrpoError(
            "--gguf needs merged weights; it cannot go with --adapter-only",
            "drop --adapter-only to export GGUF",
        )
    return names


def check_publish_flags(
    repo_id: str | None, private: bool | None, revision: str | None
) -> str | None:
    if repo_id is None:
        if revision is not None or private is not None:
            flag = "--revision" if revision is not None else "--private/--public"
            raise GrpoError(
                f"{flag} applies only with --push-to-hub",
                "add --push-to-hub OWNER/NAME, or drop the flag",
            )
        return None
    if "/" not in repo_id or not is_hub_id(repo_id):
        raise GrpoError(
            f"--push-to-hub {repo_id!r} is not a Hub repo id",
            "use OWNER/NAME: letters, digits, '-', '_' and '.', e.g. me/qwen3b-gsm8k-grpo",
        )
    return repo_id


def check_output(target: Path, src: Source, force: bool) -> None:
    if target.exists() and not target.is_dir():
        raise GrpoError(f"--output {target} is a file", "give a folder for the merged model")
    resolved = target.resolve()
    keep = [src.adapter.resolve()] + ([src.run.path.resolve()] if src.run else [])
    if any(p == resolved or p.is_relative_to(resolved) for p in keep):
        raise GrpoError(
            f"--output {target} would replace the adapter or run being merged",
            "choose a folder outside them, e.g. the default (leave --output out)",
        )
    if target.is_dir() and any(target.iterdir()) and not force:
        raise GrpoError(
            f"output folder {target} is not empty",
            "pass --force to replace it, or choose another --output",
        )


def hub_token() -> str:
    """HF_TOKEN or the stored login; it is handed to HfApi and never printed or written."""
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise GrpoError(
            "--push-to-hub needs a Hugging Face token with write access, and none was found",
            "run `hf auth login` (stores one), or set HF_TOKEN in the environment",
        )
    return token


def unsloth_installed() -> bool:
    return installed("unsloth")


def choose_merger(src: Source, quants: list[str], console: Console) -> str:
    """unsloth when GGUF is asked for, or when the run trained with it and it imports; else peft.
    Unsloth is imported here, before transformers and peft, so its patches apply to them."""
    if quants and not unsloth_installed():
        raise GrpoError(
            "--gguf: GGUF export goes through Unsloth, which is not installed",
            f"{GPU_EXTRA} (unsloth); Unsloth then builds llama.cpp in ./llama.cpp on first use "
            "(needs git, cmake and a C compiler). Or drop --gguf and convert the merged folder "
            "with llama.cpp's convert_hf_to_gguf.py",
        )
    if not quants and not (src.env.get("backend") == "unsloth" and unsloth_installed()):
        return "peft"
    try:
        import unsloth  # noqa: F401
    except Exception as exc:  # unsloth raises plain exceptions when its GPU stack is off
        if quants:
            raise GrpoError(
                f"--gguf: importing unsloth failed: {type(exc).__name__}: {exc}",
                f"{GPU_EXTRA}, or drop --gguf",
            ) from exc
        console.print(f"note: unsloth does not import ({type(exc).__name__}); merging with PEFT")
        return "peft"
    return "unsloth"


def check_local_base(src: Source) -> None:
    if looks_like_path(src.base) and not Path(src.base).expanduser().is_dir():
        raise GrpoError(
            f"base model {src.base} not found (from {_base_origin(src)})",
            "run grpo merge from the folder you trained in, or point that key at the model",
        )


def check_base(src: Source) -> None:
    """The base loads in 16 bit: a local folder that exists, a Hub model stored unquantized."""
    check_local_base(src)
    config = _from_pretrained("AutoConfig", src)
    quantization = getattr(config, "quantization_config", None)
    if quantization:
        method = getattr(quantization, "quant_method", None) or quantization.get("quant_method")
        raise GrpoError(
            f"base model {src.base} is stored quantized ({method}); merging into quantized "
            "weights gives a broken model",
            f"point {_base_origin(src)} at the 16-bit original (e.g. without -bnb-4bit), or "
            f"{GPU_EXTRA} so Unsloth maps it to its 16-bit weights",
        )


def _base_origin(src: Source) -> str:
    if src.run is not None:
        return f"model.name in {src.run.config}"
    return f"base_model_name_or_path in {src.adapter}/adapter_config.json"


def _from_pretrained(kind: str, src: Source, **kwargs: Any) -> Any:
    """AutoConfig / AutoModelForCausalLM of the base, from the local cache when it is there:
    the weights the run trained on, offline, and without the Hub's retries when unreachable."""
    import transformers

    loader = getattr(transformers, kind).from_pretrained
    kwargs |= {"revision": src.revision, "trust_remote_code": src.trust_remote_code}
    if not looks_like_path(src.base):
        try:
            return loader(src.base, local_files_only=True, **kwargs)
        except OSError:
            pass  # not (completely) cached: download below
    try:
        return loader(src.base, **kwargs)
    except OSError as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GrpoError(
            f"cannot load base model {src.base} ({_base_origin(src)}): {text}",
            f"it must be in the local Hugging Face cache or downloadable: connect (HF_TOKEN for "
            f"gated models), or fetch it on a connected machine with `hf download {src.base}`",
        ) from exc


# --- merging --------------------------------------------------------------------------------


def merge_with_peft(src: Source, folder: Path, dtype: str) -> None:
    """Base in 16 bit (never the 4-bit or FP8 weights a run may have trained on) + adapter,
    merged with PEFT's merge_and_unload and saved as safetensors with tokenizer and
    generation config."""
    import torch
    from peft import PeftModel
    from transformers import GenerationConfig

    base = _from_pretrained("AutoModelForCausalLM", src, dtype=getattr(torch, DTYPES[dtype]))
    model = PeftModel.from_pretrained(base, str(src.adapter))
    merged = model.merge_and_unload(safe_merge=True)  # safe_merge refuses NaN/inf weights
    merged.save_pretrained(folder)  # transformers 5 writes safetensors only
    tokenizer = _tokenizer(src)
    tokenizer.save_pretrained(folder)
    if not (folder / "generation_config.json").is_file():
        GenerationConfig.from_model_config(merged.config).save_pretrained(folder)


def _tokenizer(src: Source) -> Any:
    """The tokenizer saved with the adapter (as trained, chat template included), else the
    base's."""
    from transformers import AutoTokenizer

    if (src.adapter / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(src.adapter)
    return _from_pretrained("AutoTokenizer", src)


def merge_with_unsloth(src: Source, folder: Path, dtype: str, quants: list[str]) -> None:
    import torch
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(src.adapter),
        dtype=getattr(torch, DTYPES[dtype]),
        load_in_4bit=False,  # a 16-bit base whatever the run trained on (load_in_fp8 is off
        load_in_8bit=False,  # by default; passing it breaks Unsloth's CPU fallback)
        max_seq_length=int(src.config.get("model", {}).get("max_seq_length", 2048)),
        trust_remote_code=src.trust_remote_code,
    )
    # safe_serialization=None: Unsloth's default falls back to pickles on hosts with two CPUs.
    model.save_pretrained_merged(
        str(folder), tokenizer, save_method="merged_16bit", safe_serialization=None
    )
    if quants:
        export_gguf(model, tokenizer, folder, quants)


def export_gguf(model: Any, tokenizer: Any, folder: Path, quants: list[str]) -> None:
    """GGUF files into FOLDER/gguf/. Unsloth writes them beside the directory it is given, so it
    gets a scratch directory inside the staging folder and its results are moved."""
    scratch = folder / "gguf-build"
    try:
        result = model.save_pretrained_gguf(str(scratch), tokenizer, quantization_method=quants)
    except Exception as exc:  # llama.cpp missing or failing to build is the usual cause
        raise GrpoError(
            f"--gguf: Unsloth's GGUF export failed: {type(exc).__name__}: {exc}",
            "Unsloth needs llama.cpp (it builds one in ./llama.cpp: git, cmake, a C compiler "
            "and network); or drop --gguf and convert with llama.cpp's convert_hf_to_gguf.py",
        ) from exc
    built = Path(result["gguf_directory"]) if isinstance(result, dict) else Path(f"{scratch}_gguf")
    (folder / "gguf").mkdir()
    for file in built.iterdir():
        if file.is_file():
            shutil.move(file, folder / "gguf" / file.name)
    shutil.rmtree(built, ignore_errors=True)
    shutil.rmtree(scratch, ignore_errors=True)


def copy_adapter(adapter: Path, folder: Path) -> None:
    for file in sorted(adapter.iterdir()):
        if file.is_file() and file.name not in NOT_PUBLISHED and not file.name.startswith("."):
            shutil.copy2(file, folder / file.name)


# --- the card -------------------------------------------------------------------------------


def card_facts(
    src: Source, dtype: str, adapter_only: bool, repo_id: str | None, merger: str, quants: list[str]
) -> CardFacts:
    from grpo_cli.rewards.registry import registered

    run = src.run
    return CardFacts(
        base_model=src.base,
        dtype=dtype,
        adapter_only=adapter_only,
        config=src.config,
        env=src.env,
        data=_read_json(run.data) if run else {},
        steps=trained_steps(src),
        evals=_read_json(run.evals) if run else {},
        default_weights={name: info.weight for name, info in registered().items()},
        repo_id=repo_id,
        run_path=str(run.path) if run else None,
        merger=merger,
        gguf=quants,
        example_messages=_example_messages(src.config),
    )


def trained_steps(src: Source) -> int | None:
    """The checkpoint's global step when a checkpoint is merged; else the run's last logged step,
    or its latest checkpoint's."""
    state = _read_json(src.adapter / "trainer_state.json")
    if "global_step" in state or src.run is None:
        return state.get("global_step")
    steps = []
    if src.run.metrics.is_file():
        for line in src.run.metrics.read_text(encoding="utf-8").splitlines():
            try:
                steps.append(int(json.loads(line)["step"]))
            except (ValueError, KeyError, TypeError):
                continue
    if steps:
        return max(steps)
    checkpoint = src.run.latest_checkpoint()
    return _read_json(checkpoint / "trainer_state.json").get("global_step") if checkpoint else None


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


# --- writing and publishing ------------------------------------------------------------------


@contextmanager
def staging(target: Path, force: bool) -> Iterator[Path]:
    """A temporary folder beside TARGET, renamed onto it when the block succeeds and deleted when
    it fails: a crash leaves no half-written model and keeps the folder it would replace."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700; a model folder is shared as usual
    try:
        yield tmp
        if target.is_dir() and any(target.iterdir()) and force:
            old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
            os.replace(target, old / "replaced")
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(old / "replaced", target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)  # onto a missing or an empty folder
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def push_plan(
    folder: Path, repo_id: str, private: bool, revision: str | None, adapter_only: bool
) -> PushPlan:
    files = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    what = "LoRA adapter" if adapter_only else "merged model"
    return PushPlan(repo_id, private, revision, folder, files, f"grpo merge: {what}")


def publish(plan: PushPlan, token: str) -> str:
    """create_repo (kept as it is when it exists) + create_branch for --revision +
    upload_folder of exactly the planned files."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        api.create_repo(plan.repo_id, repo_type=plan.repo_type, private=plan.private, exist_ok=True)
        if plan.revision:
            api.create_branch(
                plan.repo_id, branch=plan.revision, repo_type=plan.repo_type, exist_ok=True
            )
        api.upload_folder(
            repo_id=plan.repo_id,
            folder_path=str(plan.folder),
            repo_type=plan.repo_type,
            revision=plan.revision,
            commit_message=plan.commit_message,
            allow_patterns=plan.files,
        )
    except Exception as exc:
        error = hub_error(exc, plan)
        if error is None:
            raise
        raise error from None
    url = f"https://huggingface.co/{plan.repo_id}"
    return f"{url}/tree/{plan.revision}" if plan.revision else url


def hub_error(exc: Exception, plan: PushPlan) -> GrpoError | None:
    """A Hub failure as the user's next step; None for anything that is not a Hub failure."""
    import httpx
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    later = f"the model is saved in {plan.folder}; upload it later with `hf upload {plan.repo_id} "
    later += f"{plan.folder} .`" + (f" --revision {plan.revision}" if plan.revision else "")
    if isinstance(exc, OfflineModeIsEnabled):
        return GrpoError("--push-to-hub: HF_HUB_OFFLINE is set", f"unset it; {later}")
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if status == 401:
            return GrpoError(
                f"--push-to-hub {plan.repo_id}: the Hub refused the token (401)",
                f"run `hf auth login` or set HF_TOKEN to a valid token; {later}",
            )
        if status == 403:
            return GrpoError(
                f"--push-to-hub {plan.repo_id}: no write access (403)",
                f"use a token with write access to {plan.repo_id.split('/')[0]}; {later}",
            )
        if status == 409:
            return GrpoError(
                f"--push-to-hub {plan.repo_id}: name conflict (409): {first}",
                f"choose another OWNER/NAME; {later}",
            )
        return GrpoError(f"--push-to-hub {plan.repo_id}: the Hub answered {status}: {first}", later)
    if isinstance(exc, (httpx.TransportError, ConnectionError, TimeoutError)):
        return GrpoError(
            f"--push-to-hub {plan.repo_id}: cannot reach the Hub ({type(exc).__name__}: {exc})",
            f"check the network; {later}",
        )
    return None


def summary(
    console: Console,
    target: Path,
    src: Source,
    dtype: str,
    adapter_only: bool,
    merger: str | None,
    wall: float,
) -> None:
    files = sorted(p for p in target.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in files)
    table = Table(title="grpo merge: done", title_justify="left", show_header=False)
    table.add_column("")
    table.add_column("")
    table.add_row("adapter" if adapter_only else "merged model", str(target))
    table.add_row("base model", src.base)
    if not adapter_only:
        via = "Unsloth merged_16bit" if merger == "unsloth" else "PEFT merge_and_unload"
        table.add_row("weights", f"{dtype} safetensors ({via})")
    table.add_row("files", ", ".join(p.relative_to(target).as_posix() for p in files))
    table.add_row("size", f"{size / 2**20:.1f} MiB")
    table.add_row("wall time", f"{wall:.1f} s")
    console.print(table)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = load_text(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
