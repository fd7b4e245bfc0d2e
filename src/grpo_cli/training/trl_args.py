"""The TRL `GRPOConfig` a grpo config stands for: our keys mapped to TRL's, the batch geometry,
precision and device, then `training.trl` passed through after a check against GRPOConfig's
real fields."""

from __future__ import annotations

import dataclasses
import difflib
from typing import TYPE_CHECKING, Any

from grpo_cli.config.schema import GrpoConfig
from grpo_cli.errors import GrpoError
from grpo_cli.geometry import batch_geometry

if TYPE_CHECKING:
    import trl


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
    world_size: int = 1,
    tracker: str | None = None,
) -> dict[str, Any]:
    """Keyword arguments for trl.GRPOConfig. TRACKER: the one `hardware.preflight` chose for
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
        **batch_geometry(t, world_size).trl_args(),
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
    kwargs.update(cfg.training.trl)
    return kwargs


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
