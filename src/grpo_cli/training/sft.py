"""Supervised fine-tuning on worked solutions (`grpo sft`): the rows as TRL's conversational
prompt-completion data, the `SFTConfig` a config stands for, the model (LoRA or every weight)
and the saved result.

The prompt is the very chat `grpo train` samples from (`PromptFormat.messages`: system prompt,
one-shot turn and all); the completion is the row's worked solution written exactly as the
rewards pay full marks for (`PromptFormat.target`). TRL masks the prompt's tokens out of the
loss for prompt-completion data (trl/trainer/sft_trainer.py: `completion_only_loss` None means
"prompt" and "completion" columns are present; `build_labels` sets the prompt's labels to -100);
grpo sets it explicitly so a change of TRL's default cannot train on the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grpo_cli.data.prompts import Message, PromptFormat
from grpo_cli.errors import GrpoError

if TYPE_CHECKING:
    import trl
    from datasets import Dataset

    from grpo_cli.config.schema import GrpoConfig
    from grpo_cli.training.rundir import RunDir


def completion(fmt: PromptFormat, reasoning: str, answer: str) -> list[Message]:
    """The assistant turn SFT trains on: the worked solution in the config's prompt style."""
    return [{"role": "assistant", "content": fmt.target(reasoning, answer)}]


def sft_rows(rows: Dataset, fmt: PromptFormat) -> Dataset:
    """Formatted rows (prompt, answer, reasoning) as TRL's conversational prompt-completion
    data; nothing else, so no other column reaches the trainer."""
    import datasets

    return datasets.Dataset.from_dict(
        {
            "prompt": rows["prompt"],
            "completion": [
                completion(fmt, reasoning, str(answer))
                for reasoning, answer in zip(rows["reasoning"], rows["answer"], strict=True)
            ],
        }
    )


@dataclass
class Lengths:
    """Token counts of one row as TRL tokenizes it: the prompt with the generation prompt, and
    prompt plus completion through the chat template."""

    prompt: int
    total: int

    @property
    def completion(self) -> int:
        return self.total - self.prompt


def token_ids(tokenizer: Any, messages: list[Message], add_generation_prompt: bool) -> list[int]:
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)  # a BatchEncoding in 5.x


def lengths(tokenizer: Any, row: dict[str, Any]) -> Lengths:
    prompt = token_ids(tokenizer, row["prompt"], add_generation_prompt=True)
    total = token_ids(tokenizer, row["prompt"] + row["completion"], add_generation_prompt=False)
    return Lengths(len(prompt), len(total))


@dataclass
class Fitted:
    rows: Dataset
    too_long: int  # rows over max_length, dropped
    over_completion: int  # worked solutions longer than training.max_completion_length


def fit_length(rows: Dataset, tokenizer: Any, max_length: int, max_completion: int) -> Fitted:
    """Rows whose prompt and worked solution fit MAX_LENGTH tokens: TRL would cut the others
    short, training the model on solutions that never reach their answer. Also counts the
    solutions longer than GRPO's completions may be."""
    keep, over = [], 0
    # A plain loop, not Dataset.filter: datasets would hash the tokenizer with dill (slow),
    # inside a bare `except:` that swallows a Ctrl-C.
    for i, row in enumerate(rows):
        measured = lengths(tokenizer, row)
        if measured.total <= max_length:
            keep.append(i)
            over += measured.completion > max_completion
    return Fitted(rows.select(keep), len(rows) - len(keep), over)


def max_length(cfg: GrpoConfig) -> int:
    return cfg.sft.max_length or cfg.model.max_seq_length


def sft_config_kwargs(
    cfg: GrpoConfig, output_dir: str, precision: str, device: str, tracker: str | None = None
) -> dict[str, Any]:
    """Keyword arguments for trl.SFTConfig: the sft section, the seed, optimizer and gradient
    clipping of the training section, and the LoRA section's gradient checkpointing."""
    s, t, log = cfg.sft, cfg.training, cfg.logging
    report_to = tracker or log.report_to
    return {
        "output_dir": output_dir,
        "learning_rate": s.learning_rate,
        "num_train_epochs": s.num_train_epochs,
        "max_steps": s.max_steps if s.max_steps is not None else -1,
        "per_device_train_batch_size": s.batch_size,
        "gradient_accumulation_steps": s.gradient_accumulation_steps,
        # transformers 5 dropped warmup_ratio: a float below 1 in warmup_steps is the ratio
        "warmup_steps": s.warmup_ratio,
        "lr_scheduler_type": s.lr_scheduler_type,
        "weight_decay": s.weight_decay,
        "optim": t.optim,
        "max_grad_norm": t.max_grad_norm,
        "save_strategy": "steps",
        "save_steps": s.save_steps,
        "save_total_limit": s.save_total_limit,
        "logging_steps": s.logging_steps,
        "seed": t.seed,
        "data_seed": t.seed,
        "max_length": max_length(cfg),
        "packing": s.packing,
        "completion_only_loss": True,  # see the module docstring
        "gradient_checkpointing": bool(cfg.lora.gradient_checkpointing),
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
        "use_cpu": device == "cpu",
        "report_to": [] if report_to in ("none", "auto") else [report_to],
        # the tracker's run: this run directory's, never the GRPO run's of the same config
        "run_name": f"{log.run_name}-sft" if log.run_name else Path(output_dir).parent.name,
        "disable_tqdm": True,  # grpo draws its own progress bar
        "dataloader_num_workers": 0,
    }


def build_sft_config(kwargs: dict[str, Any]) -> trl.SFTConfig:
    """trl.SFTConfig(**kwargs); TRL's own refusals become user errors."""
    from trl import SFTConfig

    try:
        return SFTConfig(**kwargs)
    except (ValueError, TypeError) as exc:
        raise GrpoError(
            f"TRL refused the sft settings: {exc}",
            "check the sft section (`grpo config show` prints it)",
        ) from exc


def load_model(cfg: GrpoConfig, precision: str) -> Any:
    """The transformers model with a fresh LoRA adapter (sft.method lora), or with every weight
    trainable (full)."""
    from grpo_cli.training import models

    model = models.load_trl_model(cfg, precision, with_lora=cfg.sft.method == "lora")
    return models.saved_without_hub_lookup(model)


def output_folder(run: RunDir, method: str) -> Path:
    """RUN/adapter for LoRA, RUN/model for full fine-tuning: what `grpo train` starts from."""
    return run.model if method == "full" else run.adapter


def save(trainer: Any, target: Path) -> None:
    """The adapter (or the whole model) and the tokenizer into TARGET, written beside it and
    renamed into place: a crash while saving leaves no half-written folder, and a resumed run
    that trained further replaces the folder it saved before only once the new one is whole."""
    from grpo_cli.merging.staging import staging

    with staging(target, force=True) as folder:
        trainer.save_model(str(folder))  # the tokenizer too: it is the processing_class
