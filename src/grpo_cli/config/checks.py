"""Checks that involve several fields, run before anything heavy is imported.

Each check yields (dotted key, message) pairs; the loader adds the file and line. A check declares
the sections it reads, so it still runs when some other section of the file is invalid and every
problem of a file is reported in one pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from grpo_cli.config.schema import DATA_SUFFIXES, GrpoConfig, looks_like_path
from grpo_cli.distributed import current
from grpo_cli.geometry import geometry_problems

# GRPOConfig fields that grpo sets from its own keys: setting them under training.trl would
# fight the value grpo computes, so the message names the key to use instead.
OWNED_TRL_FIELDS = {
    "output_dir": "output.dir",
    "run_name": "logging.run_name",
    "report_to": "logging.report_to",
    "learning_rate": "training.learning_rate",
    "adam_beta1": "training.adam_beta1",
    "adam_beta2": "training.adam_beta2",
    "weight_decay": "training.weight_decay",
    "warmup_ratio": "training.warmup_ratio",
    "warmup_steps": "training.warmup_steps",
    "lr_scheduler_type": "training.lr_scheduler_type",
    "optim": "training.optim",
    "max_grad_norm": "training.max_grad_norm",
    "num_train_epochs": "training.num_train_epochs",
    "max_steps": "training.max_steps",
    "save_steps": "training.save_steps",
    "save_total_limit": "training.save_total_limit",
    "logging_steps": "training.logging_steps",
    "seed": "training.seed",
    "beta": "training.beta",
    "epsilon": "training.epsilon",
    "epsilon_high": "training.epsilon_high",
    "mask_truncated_completions": "training.mask_truncated_completions",
    "loss_type": "training.loss_type",
    "temperature": "training.temperature",
    "top_p": "training.top_p",
    "max_prompt_length": "training.max_prompt_length",
    "max_completion_length": "training.max_completion_length",
    "num_generations": "training.num_generations",
    "per_device_train_batch_size": "training.prompts_per_step (grpo derives the per-device "
    "batch from prompts_per_step x num_generations / gradient_accumulation_steps)",
    "gradient_accumulation_steps": "training.gradient_accumulation_steps",
    "generation_batch_size": "training.generation_batch_size",
    "steps_per_generation": "training.generation_batch_size (a multiple of num_generations)",
    "reward_weights": "rewards[N].weight",
    "gradient_checkpointing": "lora.gradient_checkpointing",
    "bf16": "model.dtype",
    "fp16": "model.dtype",
    "use_cpu": "nothing: grpo picks the device from the hardware",
    "trust_remote_code": "model.trust_remote_code",
    "model_init_kwargs": "the model section",
    "use_vllm": "vllm.use",
    "vllm_mode": "vllm.mode",
    "vllm_gpu_memory_utilization": "vllm.gpu_memory_utilization",
    "vllm_server_host": "vllm.server_host",
    "vllm_server_port": "vllm.server_port",
    "push_to_hub": "`grpo merge --push-to-hub`",
    "hub_model_id": "output.hub_repo",
    "hub_private_repo": "output.private",
}


Check = Callable[[GrpoConfig], Iterable[tuple[str, str]]]
_CHECKS: list[tuple[frozenset[str], Check]] = []


def _reads(*sections: str) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        _CHECKS.append((frozenset(sections), check))
        return check

    return register


def cross_field_problems(
    cfg: GrpoConfig, valid_sections: Iterable[str] | None = None
) -> list[tuple[str, str]]:
    """Every cross-field problem; with `valid_sections`, only checks that read nothing else."""
    usable = None if valid_sections is None else frozenset(valid_sections)
    problems: list[tuple[str, str]] = []
    for sections, check in _CHECKS:
        if usable is None or sections <= usable:
            problems += check(cfg)
    return problems


@_reads("training")
def _geometry_problems(cfg: GrpoConfig) -> list[tuple[str, str]]:
    # prompts_per_step counts over every process a launcher started (distributed.current)
    return geometry_problems(cfg.training, current().world_size)


@_reads("model", "training")
def _length_problems(cfg: GrpoConfig) -> Iterator[tuple[str, str]]:
    t, m = cfg.training, cfg.model
    total = t.max_prompt_length + t.max_completion_length
    if total > m.max_seq_length:
        yield (
            "training.max_completion_length",
            f"max_prompt_length {t.max_prompt_length} + max_completion_length "
            f"{t.max_completion_length} = {total} tokens exceed model.max_seq_length "
            f"{m.max_seq_length}: raise model.max_seq_length to {total} or shorten one of them",
        )


@_reads("model", "lora", "vllm")
def _backend_problems(cfg: GrpoConfig) -> Iterator[tuple[str, str]]:
    m, lora, vllm = cfg.model, cfg.lora, cfg.vllm
    if m.quantization == "fp8" and m.backend != "unsloth":
        yield (
            "model.quantization",
            f"fp8 weights need the unsloth backend (model.backend is {m.backend}): set "
            "model.backend: unsloth, or quantization: 4bit / none",
        )
    if m.fast_inference and m.backend == "trl":
        yield (
            "model.fast_inference",
            "fast_inference is Unsloth's colocated vLLM; on the trl backend use vllm.use: true",
        )
    if m.fast_inference and lora.r > m.max_lora_rank:
        yield (
            "lora.r",
            f"LoRA rank {lora.r} is above model.max_lora_rank {m.max_lora_rank}, the largest "
            f"rank vLLM is prepared for: set model.max_lora_rank to at least {lora.r} or lower "
            "lora.r",
        )
    if vllm.use and m.backend == "unsloth":
        yield (
            "vllm.use",
            "the unsloth backend generates with vLLM through model.fast_inference: set "
            "model.fast_inference: true and vllm.use: false",
        )
    if vllm.use and m.fast_inference:
        yield (
            "vllm.use",
            "model.fast_inference and vllm.use both start a vLLM engine: keep one "
            "(fast_inference for unsloth, vllm.use for trl)",
        )


@_reads("model", "sft", "output")
def _sft_problems(cfg: GrpoConfig) -> Iterator[tuple[str, str]]:
    if cfg.sft.method == "full" and cfg.model.quantization != "none":
        yield (
            "sft.method",
            f"full fine-tuning trains every weight, which {cfg.model.quantization} weights "
            "cannot hold: set sft.method: lora, or model.quantization: none",
        )
    if cfg.sft.run_name is not None and cfg.sft.run_name == cfg.output.run_name:
        yield (
            "sft.run_name",
            f"{cfg.sft.run_name} is output.run_name too: grpo train would write into the "
            "warm-up it starts from; leave sft.run_name null (<output.run_name>-sft)",
        )


@_reads("model")
def _fast_inference_problems(cfg: GrpoConfig) -> Iterator[tuple[str, str]]:
    """What Unsloth refuses or drops with fast_inference only once the model is downloaded."""
    m = cfg.model
    if not m.fast_inference:
        return
    if m.trust_remote_code:
        # unsloth/models/llama.py, FastLlamaModel.from_pretrained: NotImplementedError "Fast
        # inference does not support `trust_remote_code` yet."
        yield (
            "model.trust_remote_code",
            "Unsloth's fast_inference (vLLM) cannot run a model's own code: set "
            "model.fast_inference: false, or use a model that needs no trust_remote_code",
        )
    if m.quantization == "8bit":
        # unsloth/models/loader_utils.py, refuse_fast_inference_load_in_8bit: vLLM has no
        # bitsandbytes 8-bit path (NotImplementedError from the vLLM branch of the loader).
        yield (
            "model.quantization",
            "Unsloth's fast_inference (vLLM) has no 8-bit weights: use quantization: 4bit or "
            "none, or set model.fast_inference: false to keep 8bit",
        )
    if m.revision is not None:
        # unsloth/models/loader.py, FastLanguageModel.from_pretrained: "Ignoring revision ...
        # since vLLM loads weights from the default branch" (a warning; the run would train
        # on other weights than the config names).
        why = "Unsloth's fast_inference loads the default branch"
        yield (
            "model.revision",
            ignored_revision(m.name, m.revision, why, "model.fast_inference: false"),
        )


def ignored_revision(name: str, revision: str, why: str, instead: str) -> str:
    """The refusal of a model.revision that Unsloth would drop (WHY says how), with the fix that
    keeps the revision, or the setting INSTEAD that lets the revision load. The config's check
    (fast_inference) and the machine's (hardware.py: Unsloth's own copy) say it alike."""
    return (
        f"{why} and ignores the revision: download it (`hf download {name} --revision "
        f"{revision} --local-dir DIR`) and set model.name: DIR with no revision, or set {instead}"
    )


@_reads("model", "vllm", "training")
def _trl_vllm_problems(cfg: GrpoConfig) -> Iterator[tuple[str, str]]:
    """What TRL's GRPOTrainer refuses in its constructor, after the model has loaded."""
    m, vllm, t = cfg.model, cfg.vllm, cfg.training
    if not vllm.use:
        return
    if vllm.mode == "colocate" and m.quantization == "8bit":
        # trl/generation/vllm_generation.py, colocate: ValueError "vLLM does not support
        # in-flight 8-bit quantization." for a bnb Linear8bitLt model.
        yield (
            "model.quantization",
            "vLLM cannot generate from 8-bit weights: use quantization: 4bit or none, or set "
            "vllm.use: false",
        )
    mode = t.trl.get("vllm_importance_sampling_mode", "sequence_mask")
    corrected = t.trl.get("vllm_importance_sampling_correction", True)
    if t.loss_type == "vespo" and corrected and mode not in ("token_truncate", "token_mask"):
        # trl/trainer/grpo_trainer.py, GRPOTrainer.__init__: vespo with vLLM's importance
        # sampling correction (on by default) needs a token-level mode; GRPOConfig's default
        # vllm_importance_sampling_mode is sequence_mask (trl/trainer/grpo_config.py).
        yield (
            "training.loss_type",
            f"vespo with vllm.use needs a token-level importance sampling mode (TRL's is {mode}): "
            "set training.trl.vllm_importance_sampling_mode: token_truncate, or another "
            "loss_type",
        )


@_reads("data")
def _prompt_problems(cfg: GrpoConfig) -> Iterator[tuple[str, str]]:
    d = cfg.data
    if d.prompt_style == "custom" and not (d.system_prompt and d.system_prompt.strip()):
        yield ("data.system_prompt", "prompt_style custom needs a system_prompt")
    if d.prompt_style != "custom" and d.system_prompt is not None:
        yield (
            "data.system_prompt",
            f"is only used with prompt_style: custom (prompt_style is {d.prompt_style}, which "
            "has its own system prompt): set prompt_style: custom or remove system_prompt",
        )
    if d.reasoning_tag is not None and d.reasoning_tag == d.answer_tag:
        yield ("data.answer_tag", f"reasoning_tag and answer_tag are both '{d.answer_tag}'")
    if d.difficulty != "gsm8k_like" and d.source != "synthetic":
        yield (
            "data.difficulty",
            f"{d.difficulty} is a level of the synthetic problems, not of {d.source}: set "
            "data.source: synthetic or remove data.difficulty",
        )


@_reads("rewards")
def _reward_problems(cfg: GrpoConfig) -> Iterator[tuple[str, str]]:
    first_seen: dict[str, int] = {}
    for index, spec in enumerate(cfg.rewards):
        if spec.name in first_seen:
            yield (
                f"rewards[{index}].name",
                f"{spec.name} is already listed as rewards[{first_seen[spec.name]}]: list each "
                "reward once and set its weight there",
            )
        first_seen.setdefault(spec.name, index)


@_reads("rewards", "reward_plugins")
def _reward_reference_problems(cfg: GrpoConfig) -> list[tuple[str, str]]:
    """Each reward resolves (registered, or an importable reference) and its params fit it.
    Loads the plugins, as training would, so a broken plugin is reported here first."""
    from grpo_cli.rewards.runner import reward_config_problems

    return reward_config_problems(cfg.rewards, cfg.reward_plugins)


@_reads("data", "reward_plugins")
def _formatter_problems(cfg: GrpoConfig) -> Iterator[tuple[str, str]]:
    from grpo_cli.data.formatters import get_formatter
    from grpo_cli.errors import GrpoError
    from grpo_cli.plugins import PluginError, load_plugins

    try:
        load_plugins(cfg.reward_plugins)
    except PluginError:  # reported once, by the reward check
        return
    try:
        get_formatter(cfg.data.formatter)
    except GrpoError as exc:
        yield ("data.formatter", exc.message)


@_reads("training")
def _trl_problems(cfg: GrpoConfig) -> Iterator[tuple[str, str]]:
    for key in cfg.training.trl:
        if key in OWNED_TRL_FIELDS:
            yield (f"training.trl.{key}", f"is set by grpo: use {OWNED_TRL_FIELDS[key]} instead")


@_reads("model", "lora")
def _model_path_problems(cfg: GrpoConfig) -> Iterator[tuple[str, str]]:
    """A local model folder must exist (relative paths: from the current folder); a grpo sft
    run must have finished, and a LoRA one is continued with its own adapter's shape."""
    from grpo_cli.errors import GrpoError
    from grpo_cli.model_source import enclosing_run, is_run_dir, sft_run
    from grpo_cli.training.rundir import RunDir

    name = cfg.model.name
    try:
        sft = sft_run(name)  # outputs/<run> is a path even though it reads like a Hub id
    except GrpoError as exc:
        yield ("model.name", f"{exc.message.removeprefix('model.name: ')}; {exc.hint}")
        return
    if sft is not None:
        if cfg.model.revision is not None:
            yield ("model.revision", f"{name} is a grpo sft run, a local folder: set it to null")
        if sft.adapter is not None:
            yield from continued_adapter_problems(cfg, sft.adapter)
        return
    path = Path(name).expanduser()
    adapter = (path / "adapter_config.json").is_file()  # a run's adapter/ or a checkpoint
    run = RunDir(path) if is_run_dir(path) else enclosing_run(path) if adapter else None
    if run is not None:
        # A grpo train run's adapter sits on a base of its own: merged, it is a model like any
        # other, and the lineage of what it was trained from goes with it (grpo_config.yaml).
        yield (
            "model.name",
            f"{name} is a grpo train run, not a model to start from: merge it first "
            f"(`grpo merge {run.path}`) and set model.name: {run.path / 'merged'}",
        )
        return
    if not looks_like_path(name):
        return
    if not path.is_dir():
        yield (
            "model.name",
            f"{name} is not a folder (looked in {path.resolve()}); give a model directory or a "
            "Hub id such as Qwen/Qwen2.5-3B-Instruct",
        )
    elif adapter:  # an adapter of no grpo run: its base is in adapter_config.json
        yield (
            "model.name",
            f"{name} is a LoRA adapter, not a model to start from: merge it into its base first "
            f"(`grpo merge {name} -o {name}-merged`) and set model.name to that folder",
        )
    elif not (path / "config.json").is_file():
        yield ("model.name", f"{name} has no config.json, so it is not a transformers model")


# The adapter settings a continued adapter keeps: PEFT loads the saved adapter_config.json as it
# is (peft/peft_model.py, PeftModel.from_pretrained), and Unsloth refuses a get_peft_model whose
# settings differ from the loaded adapter's ("Your new parameters are different",
# unsloth/models/llama.py, FastLlamaModel.get_peft_model).
ADAPTER_KEYS = (("r", "r"), ("alpha", "lora_alpha"), ("dropout", "lora_dropout"))


def continued_adapter_problems(cfg: GrpoConfig, adapter: Path) -> Iterator[tuple[str, str]]:
    """The lora section against the adapter of a LoRA grpo sft run, which GRPO trains on: the
    config describes the adapter the run saves, so it must say what the adapter is."""
    from grpo_cli.model_source import read_json

    saved, lora = read_json(adapter / "adapter_config.json"), cfg.lora
    where = f"the grpo sft adapter {adapter}"
    for key, theirs in ADAPTER_KEYS:
        if theirs in saved and saved[theirs] != getattr(lora, key):
            yield (
                f"lora.{key}",
                f"is {getattr(lora, key)} but {where} has {saved[theirs]}; GRPO continues that "
                f"adapter, so set lora.{key}: {saved[theirs]}",
            )
    if "use_rslora" in saved and bool(saved["use_rslora"]) != lora.rslora:
        yield ("lora.rslora", f"{where} has use_rslora {saved['use_rslora']}: set it alike")
    targets = saved.get("target_modules")
    # PEFT saves all-linear expanded to the model's module names
    # (peft/tuners/tuners_utils.py, _maybe_include_all_linear_layers): only names compare.
    wanted = lora.target_modules
    if isinstance(targets, list) and isinstance(wanted, list) and set(targets) != set(wanted):
        yield (
            "lora.target_modules",
            f"{where} adapts {sorted(targets)}; GRPO continues that adapter, so set "
            f"lora.target_modules: {sorted(targets)}",
        )


@_reads("data")
def _data_path_problems(cfg: GrpoConfig) -> Iterator[tuple[str, str]]:
    """A local data file, or a folder's file for the training split, must exist."""
    source, split = cfg.data.source, cfg.data.split
    if source == "synthetic" or not (
        source.lower().endswith(DATA_SUFFIXES) or looks_like_path(source)
    ):
        return
    path = Path(source).expanduser()
    if path.is_dir():
        if not any((path / f"{split}{suffix}").is_file() for suffix in DATA_SUFFIXES):
            yield (
                "data.split",
                f"folder {source} has no {split}.jsonl (or .json, .parquet, .csv) for split "
                f"{split!r}; it holds {_listing(path)}",
            )
    elif not path.is_file():
        yield ("data.source", f"{source} not found (looked for {path.resolve()})")
    elif path.suffix.lower() not in DATA_SUFFIXES:
        yield (
            "data.source",
            f"{source}: unsupported file type {path.suffix or '(none)'}; use "
            f"{', '.join(DATA_SUFFIXES)}",
        )


def _listing(folder: Path) -> str:
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    return shown or "no files"
