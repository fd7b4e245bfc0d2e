"""What a model argument names, for `grpo eval --model` and `grpo merge SOURCE` alike: the base
model of a config, a run directory, an adapter folder, a checkpoint, a merged-model folder or a
Hub id, with the run's config and the base model (and revision) its weights belong to.

    run directory   config.yaml and env.json (grpo train writes both before anything else);
                    its adapter/ is the model
    checkpoint      RUN/checkpoints/checkpoint-N: an adapter of an unfinished run
    adapter folder  adapter_config.json and adapter_model.* (PEFT)
    merged folder   config.json: full weights (grpo merge's output, or any saved model)
    sft run         a `grpo sft` run (env.json stage sft): its model/ (full fine-tuning) or its
                    adapter/ on the model it started from (LoRA). A config whose model.name
                    names one starts from it, and every later stage knows (`sft_run`, `lineage`)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from grpo_cli import unsloth_names
from grpo_cli.config.schema import is_hub_id, looks_like_path
from grpo_cli.config.yamlio import load_text
from grpo_cli.errors import GrpoError, first_line
from grpo_cli.files import read_jsonl
from grpo_cli.training.checkpoints import CHECKPOINT, refuse_unfinished
from grpo_cli.training.rundir import RunDir

if TYPE_CHECKING:
    from grpo_cli.config.schema import GrpoConfig

# grpo merge copies the run's config beside merged weights under this name
TRAINED_CONFIG = "grpo_config.yaml"
KIND_NAMES = {
    "base": "base model",
    "run": "run",
    "checkpoint": "checkpoint",
    "adapter": "adapter",
    "merged": "merged model",
    "hub": "Hub model",
    "sft": "sft run",
}
WHAT_TO_GIVE = (
    "give a run directory (outputs/<run>), its adapter/ or a checkpoint folder, an adapter folder "
    "(adapter_config.json) or a merged-model folder (config.json)"
)


@dataclass
class ModelSource:
    """One model as the user named it: what to load, and what is known about its training."""

    arg: str  # as the user wrote it
    kind: str  # a key of KIND_NAMES
    base: str  # the model to load: Hub id or folder (a merged folder is its own base)
    revision: str | None = None
    trust_remote_code: bool = False
    adapter: Path | None = None  # the LoRA adapter to apply on the base
    run: RunDir | None = None  # the run that trained it, when known
    config: dict[str, Any] = field(default_factory=dict)  # that run's config, as data
    config_file: Path | None = None
    env: dict[str, Any] = field(default_factory=dict)  # that run's env.json
    path: Path | None = None  # the folder given
    # the pre-quantized copy (bnb-4bit, FP8) the weights were trained on or the config names,
    # when `base` is its 16-bit original
    quantized_base: str | None = None
    sft: SftRun | None = None  # the grpo sft run these weights start from (or are)

    @property
    def label(self) -> str:
        """A short name: eval's folder and table row."""
        if self.kind == "base":
            return "base"
        if self.kind == "hub":
            return self.arg.replace("/", "__")
        if self.kind == "sft" and self.sft is not None:
            return self.sft.run.path.name
        folder = Path(self.base) if self.adapter is None else self.adapter
        if self.run is None:
            return folder.resolve().name
        if folder.resolve() == self.run.adapter.resolve():
            return self.run.path.name
        return f"{self.run.path.name}-{folder.resolve().name}"  # e.g. a checkpoint of the run

    def describe(self) -> str:
        """`base model Qwen/...`, `run outputs/x`, `checkpoint outputs/x/checkpoints/...`"""
        if self.kind in ("base", "sft") and self.sft is not None:
            return self.sft.describe()
        what = KIND_NAMES[self.kind]
        return f"{what} {self.base if self.kind == 'base' else self.arg}"

    def base_note(self, doing: str) -> str | None:
        """`base: Qwen/... (the run trained on unsloth/...-bnb-4bit; merging into the 16-bit
        original)` when the base was mapped back from a pre-quantized copy; DOING is what the
        command does with it."""
        if self.quantized_base is None:
            return None
        if self.kind == "base":
            why = f"model.name {self.quantized_base} is pre-quantized"
        else:
            why = f"the run trained on {self.quantized_base}"
        return f"base: {self.base} ({why}; {doing} the 16-bit original)"

    @property
    def base_origin(self) -> str:
        """Where the base model's name comes from, for messages that ask to change it."""
        if self.config_file is not None and self.kind != "merged":
            return f"model.name in {self.config_file}"
        if self.adapter is not None:
            return f"base_model_name_or_path in {self.adapter / 'adapter_config.json'}"
        return "model.name" if self.kind == "base" else self.arg

    def grpo_config(self, fallback: GrpoConfig) -> GrpoConfig:
        """The run's config, schema-checked only (the run was validated when it started, and its
        relative paths need not resolve from here); FALLBACK when no run is known."""
        if not self.config:
            return fallback
        from pydantic import ValidationError

        from grpo_cli.config.schema import GrpoConfig

        try:
            return GrpoConfig.model_validate(self.config)
        except ValidationError as exc:
            first = first_line(exc)
            raise GrpoError(
                f"{self.config_file}: not a readable run config ({first})",
                "the run directory was changed by hand or written by another version",
            ) from exc

    def lineage(self) -> list[dict[str, Any]]:
        """The stages these weights went through, oldest first: the base model, a grpo sft
        warm-up, the grpo run (with its steps) that made them."""
        if self.sft is not None and self.kind in ("base", "sft"):
            return lineage(str(self.sft.run.path))
        if self.run is None or not self.config:
            return [{"stage": "base", "model": self.base, "revision": self.revision}]
        model = self.config.get("model")
        model = model if isinstance(model, dict) else {}
        before = self.env.get("lineage")  # as grpo train recorded it when the run started
        if not isinstance(before, list):
            before = lineage(str(model.get("name") or self.base), model.get("revision"))
        stage = str(self.env.get("stage") or "grpo")
        return [*before, {"stage": stage, "run": str(self.run.path), "steps": self.steps()}]

    def steps(self) -> int | None:
        """The optimizer steps behind these weights: a checkpoint's own step, else its run's
        last logged step (or latest checkpoint's)."""
        folder = self.adapter or self.path
        state = read_json(folder / "trainer_state.json") if folder is not None else {}
        if isinstance(state.get("global_step"), int) or self.run is None:
            return state.get("global_step")
        return run_steps(self.run)

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the weights: eval reuses predictions only while it is unchanged."""
        if self.kind == "base" and self.sft is None:
            return {"model": self.base, "revision": self.revision}
        if self.kind == "hub":
            return {"model": self.base}
        folder = self.adapter if self.adapter is not None else Path(self.base)
        return weights_fingerprint(folder)


def resolve_model(arg: str, config: GrpoConfig | None = None, flag: str = "") -> ModelSource:
    """ARG as a model. With CONFIG (grpo eval), `base` is its model and Hub ids are accepted.
    FLAG prefixes messages (`--model`)."""
    name = f"{flag} {arg}" if flag else arg
    if config is not None and arg == "base":
        m = config.model
        refuse_missing_run(config)
        sft = sft_run(m.name, "model.name")
        if sft is not None:
            return _from_sft(ModelSource(arg, "base", m.name), sft)
        return with_16bit_base(ModelSource(arg, "base", m.name, m.revision, m.trust_remote_code))
    path = Path(arg).expanduser()
    if not path.exists():
        if config is not None and is_hub_id(arg) and not looks_like_path(arg):
            trust = config.model.trust_remote_code
            return ModelSource(arg, "hub", arg, trust_remote_code=trust)
        also = ", or a Hub id (owner/name)" if config is not None else ""
        raise GrpoError(f"{name}: no such folder", WHAT_TO_GIVE + also)
    if not path.is_dir():
        raise GrpoError(f"{name} is a file, not a model folder", WHAT_TO_GIVE)
    sft = sft_run(arg, name)
    if sft is not None:
        source = ModelSource(arg, "sft", sft.base, path=path, run=sft.run)
        source.config, source.config_file = read_run_config(sft.run.config), sft.run.config
        source.env = read_json(sft.run.env)
        return _from_sft(source, sft)
    if is_run_dir(path):
        return _run(arg, path, name)
    if (path / "adapter_config.json").is_file():
        return _adapter(arg, path, path, name)
    if (path / "config.json").is_file():
        return _merged(arg, path, config)
    inside = " (its adapter/ folder is not from a grpo run: give that folder)"
    raise GrpoError(
        f"{name}: neither a run directory, an adapter folder nor a model folder (no config.yaml "
        f"with env.json, adapter_config.json or config.json)"
        + (inside if (path / "adapter" / "adapter_config.json").is_file() else ""),
        WHAT_TO_GIVE,
    )


@dataclass
class SftRun:
    """A finished `grpo sft` run as the model a later stage starts from."""

    run: RunDir
    method: str  # full: RUN/model holds the whole model; lora: RUN/adapter on `base`
    base: str  # the model the warm-up started from, as the run's config names it
    revision: str | None = None
    trust_remote_code: bool = False
    steps: int | None = None
    rows: int | None = None

    @property
    def weights(self) -> str:
        """The model to load: the fine-tuned folder, or the base the adapter goes on."""
        return str(self.run.model) if self.method == "full" else self.base

    @property
    def adapter(self) -> Path | None:
        return self.run.adapter if self.method == "lora" else None

    @property
    def tokenizer(self) -> Path:
        """grpo sft saves the tokenizer it trained with beside the weights, in both methods."""
        return self.run.model if self.method == "full" else self.run.adapter

    def describe(self) -> str:
        """`sft run outputs/x (full fine-tuning of ./models/tiny)`"""
        how = "full fine-tuning" if self.method == "full" else "LoRA"
        return f"sft run {self.run.path} ({how} of {self.base})"


def sft_run(name: str, key: str = "model.name") -> SftRun | None:
    """The grpo sft run NAME points at (the run directory, its model/ or its adapter/), or None
    when NAME is anything else: a Hub id, a model folder, a grpo train run. An SFT run that has
    not finished (neither model/ nor adapter/ yet) is refused, naming KEY."""
    path = Path(name).expanduser()
    if not path.is_dir():
        return None
    if is_run_dir(path):
        folder = path
    elif path.name in ("model", "adapter") and is_run_dir(path.parent):
        folder = path.parent
    else:
        return None
    if read_json(folder / "env.json").get("stage") != "sft":
        return None
    run = RunDir(folder)
    if (run.model / "config.json").is_file():
        method = "full"
    elif (run.adapter / "adapter_config.json").is_file():
        method = "lora"
    else:
        raise GrpoError(
            f"{key}: {name} is a grpo sft run that has not finished (no model/ nor adapter/)",
            f"finish it with `grpo sft {run.config} --resume`, then run this again",
        )
    config = read_run_config(run.config)
    model = config.get("model")
    model = model if isinstance(model, dict) else {}
    base = str(model.get("name") or "")
    if method == "lora" and not base:
        base = adapter_base(run.adapter)[0]
    rows = read_json(run.data).get("trained_on")
    return SftRun(
        run,
        method,
        base or str(run.model),
        model.get("revision"),
        bool(model.get("trust_remote_code", False)),
        run_steps(run),
        rows if isinstance(rows, int) else None,
    )


def refuse_missing_run(config: GrpoConfig) -> None:
    """model.name `outputs/<run>` (under output.dir) that is not there: a run of this machine not
    made yet, e.g. the warm-up of a two-stage recipe, never a Hub repo to download."""
    name, runs = config.model.name, Path(config.output.dir).expanduser()
    path = Path(name).expanduser()
    if path.exists() or path.parent.resolve() != runs.resolve():
        return
    raise GrpoError(
        f"model.name: {name} does not exist; it names a run in output.dir {config.output.dir}",
        f"make that run first (a warm-up: `grpo sft CONFIG` with sft.run_name: {path.name}), "
        "or point model.name at a model folder or a Hub id",
    )


def start_weights(name: str, revision: str | None = None) -> tuple[str, str | None]:
    """(model folder or Hub id, revision) whose weights a config's model.name NAME loads: a grpo
    sft run's model/ or the base under its adapter; NAME itself otherwise."""
    sft = sft_run(name)
    if sft is None:
        return name, revision
    return sft.weights, sft.revision if sft.method == "lora" else None


def lineage(name: str, revision: str | None = None) -> list[dict[str, Any]]:
    """The stages behind the model a config's model.name names, oldest first:
    [{"stage": "base", "model": ...}, {"stage": "sft", "run": ..., "method": ..., ...}].
    grpo train records it in env.json; eval, merge and the model card read it from there."""
    sft = sft_run(name)
    if sft is None:
        return [{"stage": "base", "model": name, "revision": revision}]
    record: dict[str, Any] = {"stage": "sft", "run": str(sft.run.path), "method": sft.method}
    record |= {"steps": sft.steps, "rows": sft.rows}
    return [*lineage(sft.base, sft.revision), record]


def run_steps(run: RunDir) -> int | None:
    """The last step a run logged, or its latest checkpoint's."""
    # step 0 holds the held-out figures before the first step: not a step
    records = read_jsonl(run.metrics)
    steps = [r["step"] for r in records if isinstance(r.get("step"), int) and r["step"] > 0]
    if steps:
        return max(steps)
    checkpoint = run.latest_checkpoint()
    step = read_json(checkpoint / "trainer_state.json").get("global_step") if checkpoint else None
    return step if isinstance(step, int) else None


def is_run_dir(folder: Path) -> bool:
    return (folder / "config.yaml").is_file() and (folder / "env.json").is_file()


def enclosing_run(folder: Path) -> RunDir | None:
    """The run that holds an adapter folder: RUN/adapter or RUN/checkpoints/checkpoint-N."""
    for parent in list(folder.resolve().parents)[:2]:
        if is_run_dir(parent):
            return RunDir(parent)
    return None


def adapter_base(adapter: Path) -> tuple[str, str | None]:
    """(base model, revision) a PEFT adapter folder was trained on, from adapter_config.json."""
    meta = read_json(adapter / "adapter_config.json", strict=True)
    base = meta.get("base_model_name_or_path")
    if not base:
        raise GrpoError(
            f"{adapter}/adapter_config.json names no base model (base_model_name_or_path)",
            "set base_model_name_or_path to the Hub id or folder the adapter was trained on",
        )
    return str(base), meta.get("revision")


def weights_fingerprint(folder: Path) -> dict[str, Any]:
    """Weight files by name, size and modification time: retraining a run into the same
    folder changes them."""
    files = sorted(
        p
        for p in folder.iterdir()
        if p.suffix in (".safetensors", ".bin") and p.name != "training_args.bin"
    )
    weights = {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in files}
    return {"path": str(folder.resolve()), "weights": weights}


def _run(arg: str, path: Path, name: str) -> ModelSource:
    run = RunDir(path)
    if not (run.adapter / "adapter_config.json").is_file():
        checkpoint = run.latest_checkpoint()
        raise GrpoError(
            f"{name}: the run has no adapter/ yet (it did not finish)",
            f"resume it with `grpo train {run.config} --resume`, or use its latest checkpoint, "
            f"{checkpoint}"
            if checkpoint
            else f"it saved no checkpoint either: train it again with `grpo train {run.config}`",
        )
    return _adapter(arg, path, run.adapter, name, run)


def _adapter(
    arg: str, path: Path, adapter: Path, name: str, run: RunDir | None = None
) -> ModelSource:
    refuse_unfinished(adapter, name)
    if not any(adapter.glob("adapter_model.*")):
        raise GrpoError(
            f"{name}: {adapter} has adapter_config.json but no adapter_model weights",
            "the save was interrupted: train again (or resume), or use a complete checkpoint",
        )
    base, revision = adapter_base(adapter)
    kind = "run" if run is not None else "adapter"
    run = run or enclosing_run(adapter)  # the run still describes how it was trained
    if run is not None and adapter.resolve().parent == run.checkpoints.resolve():
        kind = "checkpoint" if CHECKPOINT.match(adapter.name) else kind
    source = ModelSource(arg, kind, base, revision, adapter=adapter, run=run, path=path)
    if run is not None:
        # The run's config names the base as the user asked for it (an adapter saved by Unsloth
        # records Unsloth's quantized copy instead).
        _with_config(source, run.config)
        source.env = read_json(run.env)
        sft = sft_run(source.base, source.base_origin)
        if sft is not None:  # a grpo run that started from a grpo sft run
            return _from_sft(source, sft, own_adapter=True)
    return with_16bit_base(source, recorded=base)


def _from_sft(source: ModelSource, sft: SftRun, *, own_adapter: bool = False) -> ModelSource:
    """SOURCE's weights start from SFT: a full fine-tuning's folder is the base; a LoRA warm-up
    puts its adapter on the model it started from, unless SOURCE has its own (OWN_ADAPTER: a
    grpo run continued the SFT adapter, so its adapter holds all of the LoRA weights)."""
    source.sft = sft
    source.trust_remote_code = sft.trust_remote_code
    if sft.method == "full":
        source.base, source.revision = sft.weights, None
        return source
    source.base, source.revision = sft.base, sft.revision
    if not own_adapter:
        source.adapter = sft.adapter
    return with_16bit_base(source)


def with_16bit_base(source: ModelSource, recorded: str | None = None) -> ModelSource:
    """SOURCE with its base mapped back to the 16-bit original when it names a pre-quantized
    copy, so that merge merges into 16-bit weights and eval measures the 16-bit base. RECORDED
    is the base an adapter's adapter_config.json names, for the note when the run's config named
    the original already.

    Unsloth loads `Qwen/Qwen2.5-3B-Instruct` with load_in_4bit as
    `unsloth/Qwen2.5-3B-Instruct-unsloth-bnb-4bit` (unsloth/models/loader_utils.py,
    get_model_name), and PEFT records the loaded model's name_or_path as the adapter's
    base_model_name_or_path (peft/mapping_func.py, get_peft_model); Unsloth's own rewrite of
    that name back to 16 bit is disabled (`if False:` in unsloth/models/llama.py)."""
    original = unsloth_names.sixteen_bit_original(source.base)
    if original is not None:
        source.quantized_base, source.base = source.base, original
        source.revision = None  # a revision of the quantized repo; Unsloth drops it too
    elif (
        recorded
        and recorded != source.base
        and unsloth_names.sixteen_bit_original(recorded) is not None
    ):
        source.quantized_base = recorded
    return source


def _merged(arg: str, path: Path, config: GrpoConfig | None) -> ModelSource:
    source = ModelSource(arg, "merged", str(path), path=path)
    if config is not None:
        source.trust_remote_code = config.model.trust_remote_code
    if (path / TRAINED_CONFIG).is_file():
        _with_config(source, path / TRAINED_CONFIG)
        source.revision = None  # the weights are in the folder, not at a revision of the base
        source.base = str(path)
    return source


def _with_config(source: ModelSource, path: Path) -> None:
    source.config, source.config_file = read_run_config(path), path
    model = source.config.get("model")
    model = model if isinstance(model, dict) else {}
    source.base = str(model.get("name") or source.base)
    source.revision = model.get("revision", source.revision)
    source.trust_remote_code = bool(model.get("trust_remote_code", False))


def read_run_config(path: Path) -> dict[str, Any]:
    """A run's config.yaml as data; a damaged one is a user error naming it."""
    try:
        data = load_text(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        first = first_line(exc)
        raise GrpoError(
            f"{path}: not a readable run config ({first})",
            "the run directory was changed by hand: restore the file from the run's "
            "grpo_config.yaml or its original config",
        ) from None
    if not isinstance(data, dict):
        raise GrpoError(f"{path}: not a readable run config (not a mapping)")
    return data


def read_json(path: Path, *, strict: bool = False) -> dict[str, Any]:
    """A JSON object from a run or adapter folder; {} when missing or damaged, unless STRICT."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if strict:
            raise GrpoError(f"{path} is missing", "the folder is incomplete") from None
        return {}
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or not UTF-8
        if strict:
            raise GrpoError(
                f"{path} cannot be read: {exc}",
                "the folder is damaged; take a checkpoint of the run instead",
            ) from None
        return {}
    return data if isinstance(data, dict) else {}
