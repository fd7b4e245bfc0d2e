"""The TRL `GRPOConfig` a grpo config stands for: our keys mapped to TRL's, the batch geometry,
precision and device, then `training.trl` passed through after a check against GRPOConfig's
real fields."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from grpo_cli.config.schema import GrpoConfig
from grpo_cli.distributed import current
from grpo_cli.errors import GrpoError
from grpo_cli.geometry import batch_geometry

if TYPE_CHECKING:
    import trl

    from grpo_cli.config import LoadedConfig


def grpo_config_fields() -> set[str]:
    from trl import GRPOConfig

    return {f.name for f in dataclasses.fields(GRPOConfig)}


def trl_passthrough_problems(cfg: GrpoConfig, fields: set[str]) -> list[tuple[str, str]]:
    """`training.trl` keys GRPOConfig does not have, with a did-you-mean."""
    problems = []
    for key in cfg.training.trl:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1, cutoff=0.75)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            problems.append((f"training.trl.{key}", f"trl.GRPOConfig has no field {key!r}.{hint}"))
    return problems


def grpo_config_kwargs(
    cfg: GrpoConfig,
    output_dir: str,
    precision: str,
    device: str,
    reward_weights: list[float],
    world_size: int | None = None,
    tracker: str | None = None,
) -> dict[str, Any]:
    """Keyword arguments for trl.GRPOConfig. WORLD_SIZE: the processes training together (by
    default those the launcher started). TRACKER: the one `hardware.preflight` chose for
    logging.report_to (auto resolved); None takes report_to as written, auto logging nowhere."""
    t, log = cfg.training, cfg.logging
    report_to = tracker or log.report_to
    warmup = t.warmup_steps if t.warmup_steps is not None else t.warmup_ratio
    kwargs: dict[str, Any] = {
        "output_dir": output_dir,
        "learning_rate": t.learning_rate,
        "adam_beta1": t.adam_beta1,
        "adam_beta2": t.adam_beta2,
        "weight_decay": t.weight_decay,
        # transformers 5 dropped warmup_ratio: a float below 1 in warmup_steps is the ratio
        "warmup_steps": warmup,
        "lr_scheduler_type": t.lr_scheduler_type,
        "optim": t.optim,
        "max_grad_norm": t.max_grad_norm,
        "num_train_epochs": t.num_train_epochs,
        "max_steps": t.max_steps if t.max_steps is not None else -1,
        "save_strategy": "steps",
        "save_steps": t.save_steps,
        "save_total_limit": t.save_total_limit,
        "logging_steps": t.logging_steps,
        "seed": t.seed,
        "data_seed": t.seed,
        "beta": t.beta,
        "epsilon": t.epsilon,
        # Never left to the library: for an explicit loss_type dapo, Unsloth's GRPOConfig turns
        # on masking and epsilon_high 0.28 when these are unset (unsloth/models/rl.py, the
        # `loss_type.lower() == 'dapo'` block of the generated config), TRL does not.
        "epsilon_high": epsilon_high(cfg),
        "mask_truncated_completions": t.mask_truncated_completions,
        "loss_type": t.loss_type,
        "temperature": t.temperature,
        "top_p": t.top_p,
        "max_completion_length": t.max_completion_length,
        "num_generations": t.num_generations,
        "reward_weights": reward_weights,
        "gradient_checkpointing": bool(cfg.lora.gradient_checkpointing),
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
        "use_cpu": device == "cpu",
        "report_to": [] if report_to in ("none", "auto") else [report_to],
        "run_name": log.run_name or cfg.output.run_name,
        "project": log.project or "grpo-cli",  # trackio's project; wandb's comes from the env
        "log_completions": False,  # grpo writes completions.jsonl itself
        "disable_tqdm": True,  # grpo draws its own progress bar
        "dataloader_num_workers": 0,
        "use_vllm": cfg.vllm.use,
        # Left unset, the Trainer asks DDP to look for unused parameters on a PEFT model
        # (transformers/trainer.py, _build_accelerator_args: find_unused True unless a
        # PreTrainedModel); every LoRA weight takes part in the forward pass, and the search
        # costs a traversal of the graph every step
        "ddp_find_unused_parameters": False,
        **batch_geometry(t, world_size or current().world_size).trl_args(),
    }
    if cfg.vllm.use:
        kwargs.update(
            vllm_mode=cfg.vllm.mode,
            vllm_gpu_memory_utilization=cfg.vllm.gpu_memory_utilization,
            vllm_server_host=cfg.vllm.server_host,
            vllm_server_port=cfg.vllm.server_port,
        )
    if cfg.vllm.use and cfg.vllm.mode == "colocate":
        # Unset, TRL's colocated vLLM takes the model's whole context (32k for Qwen2.5) and
        # sizes its KV cache for it (trl/trainer/grpo_config.py, vllm_max_model_length)
        kwargs["vllm_max_model_length"] = cfg.model.max_seq_length
    if t.loss_type == "dr_grpo":
        # Unsloth's GRPOConfig replaces scale_rewards group (TRL's default) by False for dr_grpo
        # (unsloth/models/rl.py, check_dr_grpo); the Dr. GRPO paper scales by no standard
        # deviation (trl/trainer/grpo_config.py, scale_rewards). Both backends do that here.
        kwargs["scale_rewards"] = "none"
    kwargs.update(cfg.training.trl)
    return kwargs


def epsilon_high(cfg: GrpoConfig) -> float:
    """training.epsilon_high, or its default: epsilon (symmetric clipping), and for cispo 5.0,
    because there it caps the importance weight itself, not 1 + epsilon (trl/trainer/
    grpo_config.py, epsilon_high: the ScaleRL value; unsloth/models/rl.py sets the same)."""
    t = cfg.training
    if t.epsilon_high is not None:
        return t.epsilon_high
    return 5.0 if t.loss_type == "cispo" else t.epsilon


def build_grpo_config(kwargs: dict[str, Any]) -> trl.GRPOConfig:
    """trl.GRPOConfig(**kwargs); TRL's own refusals become user errors."""
    from trl import GRPOConfig

    try:
        return GRPOConfig(**kwargs)
    except (ValueError, TypeError) as exc:
        raise GrpoError(
            f"TRL refused the training settings: {exc}",
            "check training.trl and the batch settings (`grpo config show` prints them)",
        ) from exc


# Rewrites of a setting grpo passed that change how a run computes, not what it learns: said as
# notes. Unsloth's trainer trains a model it forces to float32 (Gemma 3, gpt-oss) in float32,
# whatever bf16 / fp16 say; fast_inference makes it generate with its colocated vLLM (use_vllm,
# vllm_mode); top_k 0 and -1 both mean no top-k, and vLLM takes only -1
# (unsloth/models/rl.py: the mixed-precision block and the `args.use_vllm = True` setter;
# unsloth/models/rl_replacements.py: grpo_config_fix_vllm_top_k). Any other rewrite of a value
# grpo set is refused: the run would train something other than what its config says, and
# other than the same config trains on the other backend.
HOW_NOT_WHAT = frozenset({"bf16", "fp16", "use_vllm", "vllm_mode", "top_k"})


# Two names for one setting. GRPOConfig stores scale_rewards True as "group" and False as
# "none" (trl/trainer/grpo_config.py, __post_init__); Unsloth's CPU fallback swaps AdamW for the
# same AdamW in one fused kernel (unsloth_zoo/cpu/trainer.py, normalize_cpu_training_arguments).
SAME_SETTING: dict[str, dict[Any, Any]] = {
    "scale_rewards": {True: "group", False: "none"},
    "optim": {"adamw_torch_fused": "adamw_torch"},
}


def same_setting(key: str, asked: Any, now: Any) -> bool:
    if key in SAME_SETTING:
        names = SAME_SETTING[key]
        # an enum member (transformers' OptimizerNames) hashes by its name, not its value
        asked, now = getattr(asked, "value", asked), getattr(now, "value", now)
        asked, now = names.get(asked, asked), names.get(now, now)
    return bool(asked == now)


def rewritten_settings(asked: dict[str, Any], args: Any) -> dict[str, tuple[Any, Any]]:
    """The settings ARGS (a built GRPOConfig, or the trainer's args) holds with another value
    than grpo passed for them: {field: (asked, now)}. This sees what a config class changes in
    its own construction (Unsloth's generated UnslothGRPOConfig.__init__), which comparing
    `to_dict()` before and after the trainer cannot."""
    missing = object()
    changes = {}
    for key, value in asked.items():
        now = getattr(args, key, missing)
        if now is missing or not same_setting(key, value, now):
            changes[key] = (value, None if now is missing else now)
    return changes


def config_key(field: str) -> str:
    """The grpo config key a GRPOConfig field comes from."""
    from grpo_cli.config.checks import OWNED_TRL_FIELDS

    owner = OWNED_TRL_FIELDS.get(field)
    return owner.split()[0] if owner else f"training.trl.{field}"


def rewrite_problems(
    backend: str, changes: dict[str, tuple[Any, Any]], explicit: set[str]
) -> tuple[list[tuple[str, str]], list[str]]:
    """(refusals as (config key, message), notes) for settings the trainer changed: a value
    grpo passed (EXPLICIT) that decides what is learned is refused; the rest, and settings grpo
    left to the library, are noted."""
    refusals, notes = [], []
    for field, (before, after) in changes.items():
        if field in explicit and field not in HOW_NOT_WHAT:
            message = f"{backend} would train with {field} {after!r}, not the {before!r} set here"
            refusals.append((config_key(field), message))
        else:
            notes.append(f"note: {backend} changed {field}: {before!r} -> {after!r}")
    return refusals, notes


def rewrite_hint(backend: str) -> str:
    other = "trl" if backend == "unsloth" else "unsloth"
    return (
        f"if {backend}'s value is what you want, set it in the config; else train with "
        f"model.backend: {other}"
    )


TRL_REFUSAL_HINT = "check training.trl and the batch settings (`grpo config show` prints them)"
UNKNOWN_FIELD_HINT = "keys under training.trl are trl.GRPOConfig's field names, passed as they are"


@dataclass(frozen=True)
class ConstructionProblems:
    """What building the backend's GRPOConfig from a config refuses, and the fix they share."""

    problems: list[tuple[str, str]]  # (config key, message)
    hint: str


def construction_problems(
    cfg: GrpoConfig, backend: str, precision: str, device: str, tracker: str = "none"
) -> ConstructionProblems:
    """The settings the backend's GRPOConfig cannot take, found by building one, as `grpo train`
    does before any download and `grpo doctor` reports: training.trl keys GRPOConfig does not
    have, TRL's own refusals of the values (its __post_init__), and settings the backend's
    config rewrites in its own construction. For backend unsloth the caller imports unsloth
    first (training.models.import_unsloth_first): its patched GRPOConfig does the rewriting."""
    unknown = trl_passthrough_problems(cfg, grpo_config_fields())
    if unknown:  # GRPOConfig would stop at the first unknown keyword
        return ConstructionProblems(unknown, UNKNOWN_FIELD_HINT)
    weights = [1.0] * len(cfg.rewards)  # only their number is checked
    asked = grpo_config_kwargs(cfg, "grpo-check", precision, device, weights, tracker=tracker)
    try:
        built = build_grpo_config(asked)
    except GrpoError as exc:
        key = "training.trl" if cfg.training.trl else "training"
        return ConstructionProblems([(key, exc.message)], exc.hint or TRL_REFUSAL_HINT)
    refusals = rewrite_problems(backend, rewritten_settings(asked, built), set(asked))[0]
    return ConstructionProblems(refusals, rewrite_hint(backend))


def check_construction(
    loaded: LoadedConfig, backend: str, precision: str, device: str, tracker: str = "none"
) -> None:
    """Refuse, before any weights are downloaded, what `construction_problems` finds. What the
    trainer changes is seen only once the model loads."""
    from grpo_cli.config.loader import config_error

    found = construction_problems(loaded.config, backend, precision, device, tracker)
    if found.problems:
        error = config_error(loaded, found.problems)
        error.hint = found.hint
        raise error
