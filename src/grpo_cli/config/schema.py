"""The one config schema: every key a YAML config may hold, its type, default and meaning.

Field descriptions are the documentation: `grpo config schema` and the README's config reference
are generated from them. Checks that involve several fields live in `checks.py`.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Hugging Face Hub repo-id rule (huggingface_hub.utils.validate_repo_id), written out here because
# importing huggingface_hub costs ~0.1 s and pulls httpx into `grpo config validate`.
# tests/config/test_schema.py checks this against huggingface_hub on a table of ids.
_HUB_NAME = r"(?![-.])[\w.-]{1,96}(?<![-.])"
HUB_ID_RE = re.compile(rf"^(?:{_HUB_NAME}/)?{_HUB_NAME}$")
# A Hugging Face access token anywhere in a text: `hf_` and 34 letters and digits today. 30 or
# more catches those (and longer kinds) but never a name such as `hf_token_name`. Configs holding
# one are refused; run files and model cards are scrubbed of it. The one pattern for both.
HUB_TOKEN_RE = re.compile(r"hf_[A-Za-z0-9]{30,}")


def has_secret(text: str) -> bool:
    return "hf_" in text and HUB_TOKEN_RE.search(text) is not None  # `in` first: 10x faster


def mask_secrets(text: str) -> str:
    """The text with every token replaced by `hf_***`, fit to print."""
    return HUB_TOKEN_RE.sub("hf_***", text)


def is_hub_id(value: str) -> bool:
    return bool(HUB_ID_RE.match(value)) and "--" not in value and ".." not in value


def looks_like_path(value: str) -> bool:
    """A value meant as a local path rather than a Hub id."""
    return value.startswith(("/", "./", "../", "~")) or value in (".", "..") or value.count("/") > 1


LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo")
# transformers.trainer_utils.SchedulerType and transformers.training_args.OptimizerNames, listed
# here so validation needs no transformers import; a test keeps both lists equal to the library's.
SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "reduce_lr_on_plateau",
    "cosine_with_min_lr",
    "cosine_warmup_with_min_lr",
    "warmup_stable_decay",
    "greedy",
)
OPTIMIZERS = (
    "adamw_torch",
    "adamw_torch_fused",
    "adamw_torch_xla",
    "adamw_torch_npu_fused",
    "adafactor",
    "adamw_anyprecision",
    "adamw_torch_4bit",
    "adamw_torch_8bit",
    "ademamix",
    "sgd",
    "adagrad",
    "adamw_bnb_8bit",
    "adamw_8bit",
    "ademamix_8bit",
    "lion_8bit",
    "lion_32bit",
    "paged_adamw_32bit",
    "paged_adamw_8bit",
    "paged_ademamix_32bit",
    "paged_ademamix_8bit",
    "paged_lion_32bit",
    "paged_lion_8bit",
    "rmsprop",
    "rmsprop_bnb",
    "rmsprop_bnb_8bit",
    "rmsprop_bnb_32bit",
    "galore_adamw",
    "galore_adamw_8bit",
    "galore_adafactor",
    "galore_adamw_layerwise",
    "galore_adamw_8bit_layerwise",
    "galore_adafactor_layerwise",
    "lomo",
    "adalomo",
    "grokadamw",
    "schedule_free_radam",
    "schedule_free_adamw",
    "schedule_free_sgd",
    "apollo_adamw",
    "apollo_adamw_layerwise",
    "stable_adamw",
)
DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
TAG_RE = re.compile(r"^[A-Za-z_][\w-]*$")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Section):
    name: str = Field(
        description="Base model: a Hugging Face Hub id (owner/name) or a local model directory.",
        examples=["Qwen/Qwen2.5-3B-Instruct"],
    )
    revision: str | None = Field(
        None, description="Hub branch, tag or commit to load; null for the default branch."
    )
    backend: Literal["auto", "unsloth", "trl"] = Field(
        "auto",
        description="Training stack: unsloth (GPU), trl (transformers + PEFT, any device) or "
        "auto (unsloth when it imports and a GPU is present, else trl).",
    )
    quantization: Literal["none", "4bit", "8bit", "fp8"] = Field(
        "none",
        description="Weights of the frozen base model: none (16/32-bit), 4bit or 8bit "
        "(bitsandbytes), fp8 (Unsloth, Ada/Hopper GPUs).",
    )
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto",
        description="Compute precision; auto picks bf16 where supported, fp16 on older GPUs "
        "(T4), fp32 on CPU.",
    )
    max_seq_length: int = Field(
        1024, ge=32, description="Longest prompt + completion, in tokens, the run must handle."
    )
    fast_inference: bool = Field(
        False, description="Unsloth: generate with colocated vLLM (needs a GPU and vllm)."
    )
    gpu_memory_utilization: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Unsloth fast_inference: share of GPU memory vLLM may take (weights + KV "
        "cache), used as given. null: Unsloth's share for the GPU's size (vLLM sleeps while the "
        "trainer steps): 0.76 of a 16 GB T4, 0.78 of a 24 GB L4, 0.88 of an 80 GB GPU.",
    )
    max_lora_rank: int = Field(
        64, ge=1, description="Unsloth fast_inference: largest LoRA rank vLLM is prepared for."
    )
    trust_remote_code: bool = Field(
        False, description="Allow model repos that ship their own Python code."
    )

    @field_validator("name")
    @classmethod
    def _name_is_hub_id_or_path(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty: give a Hub id such as Qwen/Qwen2.5-3B-Instruct")
        if not looks_like_path(value) and not is_hub_id(value):
            raise ValueError(
                f"{value!r} is neither a Hub id (owner/name: letters, digits, '-', '_', '.') "
                "nor a local path (start it with ./ or /)"
            )
        return value


class LoraConfig(Section):
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(
        16, ge=1, description="LoRA alpha (scale = alpha / r, or alpha / sqrt(r) with rslora)."
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="Module names that get LoRA adapters, or all-linear.",
    )
    gradient_checkpointing: bool | Literal["unsloth"] = Field(
        True,
        description="Recompute activations in the backward pass to save memory; unsloth uses "
        "Unsloth's offloaded variant (plain checkpointing on the trl backend).",
    )
    random_state: int = Field(3407, description="Seed for the LoRA weight initialisation.")
    rslora: bool = Field(False, description="Rank-stabilised LoRA scaling (alpha / sqrt(r)).")

    @field_validator("target_modules")
    @classmethod
    def _non_empty_modules(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, list):
            if not value:
                raise ValueError("must name at least one module, or be all-linear")
            dupes = sorted({m for m in value if value.count(m) > 1})
            if dupes:
                raise ValueError(f"lists {', '.join(dupes)} more than once")
        return value


class DataConfig(Section):
    source: str = Field(
        "openai/gsm8k",
        description="Training data: a Hub dataset id, a local .jsonl/.json/.parquet/.csv file, "
        "a folder holding <split>.jsonl files, or synthetic (generated offline, seeded).",
    )
    subset: str | None = Field("main", description="Hub dataset configuration name.")
    split: str = Field("train", description="Split to train on.")
    formatter: str = Field(
        "gsm8k",
        description="Turns dataset rows into prompts and gold answers: gsm8k, math_boxed, or "
        "one a plugin registers (`grpo rewards list` shows them).",
    )
    prompt_style: Literal["xml", "think", "custom"] = Field(
        "xml",
        description="Answer format asked of the model: xml (<reasoning>/<answer>), think "
        "(<think>/<answer>) or custom (your system_prompt).",
    )
    system_prompt: str | None = Field(None, description="System prompt for prompt_style custom.")
    reasoning_tag: str | None = Field(
        None,
        description="Tag around the reasoning; null for the style's own (reasoning for xml, "
        "think for think).",
    )
    answer_tag: str = Field("answer", description="Tag around the final answer.")
    one_shot: bool = Field(False, description="Add a worked example turn before the question.")
    limit: int | None = Field(None, ge=1, description="Use only the first N training rows.")
    eval_split: str = Field(
        "test",
        description="Split `grpo eval` reads: a split name (for a local file, the file beside it "
        "named <split>.jsonl) or a file path.",
    )
    heldout_size: int = Field(
        0, ge=0, description="Training rows set aside (seeded) for evaluation, never trained on."
    )
    difficulty: Literal["gsm8k_like", "easy", "two_step", "simple"] = Field(
        "gsm8k_like",
        description="Synthetic problems only: gsm8k_like (multi-step), easy (one operation on "
        "small numbers), two_step, or simple (easy and two_step mixed). Below gsm8k_like the "
        "sft, train and other (held-out) splits never share a problem.",
    )

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        value = value.strip()
        if (
            value == "synthetic"
            or looks_like_path(value)
            or value.lower().endswith(DATA_SUFFIXES)
            or is_hub_id(value)
        ):
            return value
        raise ValueError(
            f"{value!r} is not a Hub dataset id (owner/name), a local "
            f"{'/'.join(DATA_SUFFIXES)} file or synthetic"
        )

    @field_validator("reasoning_tag", "answer_tag")
    @classmethod
    def _tag_name(cls, value: str | None) -> str | None:
        if value is not None and not TAG_RE.match(value):
            raise ValueError(f"{value!r} is not a tag name: use letters, digits, '_' or '-'")
        return value


def expand_reward_shorthand(value: Any) -> Any:
    """`- correctness` is shorthand for `- {name: correctness}`."""
    return {"name": value} if isinstance(value, str) else value


class RewardSpec(Section):
    name: str = Field(
        description="A registered reward (`grpo rewards list`), package.module:function or "
        "path/to/file.py:function.",
    )
    weight: float | None = Field(
        None,
        description="Multiplier in the total reward; 0 logs the reward without training on it; "
        "null takes the reward's default weight (`grpo rewards list`).",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="The reward's parameters (`grpo rewards list` shows each with its default).",
    )

    @model_validator(mode="before")
    @classmethod
    def _expand_shorthand(cls, value: Any) -> Any:
        return expand_reward_shorthand(value)

    @field_validator("name")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @field_validator("weight")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError(f"must be a finite number, found {value}")
        return value


class TrainingConfig(Section):
    learning_rate: float = Field(5e-6, gt=0, description="Peak learning rate.")
    adam_beta1: float = Field(0.9, ge=0, lt=1, description="Adam beta1.")
    adam_beta2: float = Field(0.99, ge=0, lt=1, description="Adam beta2.")
    weight_decay: float = Field(0.1, ge=0, description="Decoupled weight decay.")
    warmup_ratio: float = Field(
        0.1, ge=0, lt=1, description="Share of the steps spent warming the learning rate up."
    )
    warmup_steps: int | None = Field(
        None, ge=0, description="Warm-up length in steps; replaces warmup_ratio when set."
    )
    lr_scheduler_type: Literal[SCHEDULERS] = Field(  # type: ignore[valid-type]
        "cosine", description="Learning-rate schedule (transformers SchedulerType)."
    )
    optim: Literal[OPTIMIZERS] = Field(  # type: ignore[valid-type]
        "adamw_torch",
        description="Optimizer (transformers OptimizerNames); adamw_8bit needs bitsandbytes "
        "and a GPU.",
    )
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping norm; 0 disables.")
    num_train_epochs: float = Field(
        1.0, gt=0, description="Passes over the training data (when max_steps is null)."
    )
    max_steps: int | None = Field(
        None, ge=1, description="Optimizer steps to run; overrides num_train_epochs."
    )
    save_steps: int = Field(250, ge=1, description="Save a checkpoint every N steps.")
    save_total_limit: int | None = Field(
        None, ge=1, description="Keep only the N newest checkpoints; null keeps all."
    )
    logging_steps: int = Field(1, ge=1, description="Log metrics every N steps.")
    seed: int = Field(3407, description="Seed for data order, sampling and held-out slices.")
    beta: float = Field(
        0.0, ge=0, description="KL penalty towards the base model; 0 loads no reference model."
    )
    epsilon: float = Field(0.2, gt=0, description="PPO-style clipping range of the ratio.")
    epsilon_high: float | None = Field(
        None,
        gt=0,
        description="Upper clipping range of the ratio (the DAPO paper uses 0.28); for "
        "loss_type cispo, the cap of the importance weight itself. null: epsilon, or 5.0 for "
        "cispo (the ScaleRL paper's value).",
    )
    mask_truncated_completions: bool = Field(
        False,
        description="Leave completions cut off at max_completion_length out of the loss (the "
        "DAPO paper); when every completion of a step is cut off, that step learns nothing.",
    )
    loss_type: Literal[LOSS_TYPES] = Field(  # type: ignore[valid-type]
        "dapo", description="How per-token losses are aggregated (TRL loss_type)."
    )
    temperature: float = Field(1.0, gt=0, description="Sampling temperature for generation.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling threshold.")
    max_prompt_length: int = Field(
        256, ge=1, description="Longest prompt in tokens; longer prompts are dropped."
    )
    max_completion_length: int = Field(512, ge=1, description="Longest completion in tokens.")
    num_generations: int = Field(
        8, ge=2, description="Completions sampled per prompt (the group size)."
    )
    prompts_per_step: int = Field(
        1, ge=1, description="Distinct prompts per optimizer step, over all devices."
    )
    gradient_accumulation_steps: int = Field(
        1, ge=1, description="Micro-batches per optimizer step."
    )
    generation_batch_size: int | None = Field(
        None,
        ge=1,
        description="Completions generated in one round; a multiple of num_generations. "
        "null: prompts_per_step x num_generations.",
    )
    trl: dict[str, Any] = Field(
        default_factory=dict,
        description="Any other trl.GRPOConfig field, passed through unchanged (checked against "
        "GRPOConfig when training starts).",
    )


class VllmConfig(Section):
    use: bool = Field(False, description="trl backend: generate with vLLM.")
    mode: Literal["colocate", "server"] = Field(
        "colocate",
        description="colocate: vLLM shares the training GPU; server: a separate `trl "
        "vllm-serve` process.",
    )
    gpu_memory_utilization: float = Field(
        0.3, gt=0, le=1, description="colocate mode: share of GPU memory vLLM may take."
    )
    server_host: str = Field("127.0.0.1", description="server mode: host of the vLLM server.")
    server_port: int = Field(8000, ge=1, le=65535, description="server mode: its port.")


class LoggingConfig(Section):
    report_to: Literal["none", "auto", "tensorboard", "wandb", "trackio"] = Field(
        "none",
        description="Experiment tracker; none writes only the run directory. auto: wandb when "
        "installed with an API key (or WANDB_MODE=offline), else tensorboard, else trackio, "
        "else none; the run says which. A tracker named here that cannot log is refused.",
    )
    project: str | None = Field(None, description="Tracker project; null for grpo-cli.")
    run_name: str | None = Field(None, description="Tracker run name; null for output.run_name.")
    completion_samples: int = Field(
        4, ge=0, description="Completions written to completions.jsonl per sample; 0 disables."
    )
    completion_samples_every: int = Field(
        10, ge=1, description="Write completion samples every N steps."
    )


class EvalConfig(Section):
    every_steps: int | None = Field(
        None,
        ge=1,
        description="During training, measure greedy accuracy on held-out rows every N steps "
        "(logged as eval/... in metrics.jsonl and the tracker), and once before the first step "
        "(step 0 of metrics.jsonl: where the report's curve starts); null: never.",
    )
    rows: int = Field(
        32,
        ge=1,
        description="Rows evaluated during training: the first N of the held-out slice "
        "(data.heldout_size), or of data.eval_split when nothing is held out.",
    )
    batch_size: int = Field(16, ge=1, description="Prompts generated together in that evaluation.")


class OutputConfig(Section):
    dir: str = Field("outputs", description="Folder that holds run directories.")
    run_name: str | None = Field(
        None, description="Run directory name; null for <config name>-<date>-<time>."
    )
    hub_repo: str | None = Field(
        None, description="Hub repo (owner/name) that `grpo merge --push-to-hub` publishes to."
    )
    private: bool = Field(True, description="Create the Hub repo as private.")

    @field_validator("run_name")
    @classmethod
    def _single_name(cls, value: str | None) -> str | None:
        if value is not None and (
            not value.strip() or "/" in value or "\\" in value or value in (".", "..")
        ):
            raise ValueError(f"{value!r} must be a plain folder name, without '/'")
        return value

    @field_validator("hub_repo")
    @classmethod
    def _hub_repo(cls, value: str | None) -> str | None:
        if value is not None and (not is_hub_id(value) or "/" not in value):
            raise ValueError(f"{value!r} is not a Hub repo id of the form owner/name")
        return value


class SftConfig(Section):
    """`grpo sft`: supervised fine-tuning on worked solutions, the cold start before GRPO."""

    method: Literal["lora", "full"] = Field(
        "lora",
        description="lora: train a LoRA adapter (the lora section), saved in RUN/adapter; full: "
        "train every weight, saved in RUN/model (needs model.quantization none).",
    )
    learning_rate: float = Field(
        2e-4, gt=0, description="Peak learning rate (2e-4 suits LoRA; full fine-tuning ~1e-5)."
    )
    num_train_epochs: float = Field(
        1.0, gt=0, description="Passes over the warm-up rows (when max_steps is null)."
    )
    max_steps: int | None = Field(
        None, ge=1, description="Optimizer steps to run; overrides num_train_epochs."
    )
    batch_size: int = Field(8, ge=1, description="Rows per micro-batch on each device.")
    gradient_accumulation_steps: int = Field(
        1, ge=1, description="Micro-batches per optimizer step."
    )
    warmup_ratio: float = Field(
        0.03, ge=0, lt=1, description="Share of the steps spent warming the learning rate up."
    )
    lr_scheduler_type: Literal[SCHEDULERS] = Field(  # type: ignore[valid-type]
        "cosine", description="Learning-rate schedule (transformers SchedulerType)."
    )
    weight_decay: float = Field(0.0, ge=0, description="Decoupled weight decay.")
    save_steps: int = Field(250, ge=1, description="Save a checkpoint every N steps.")
    save_total_limit: int | None = Field(
        2, ge=1, description="Keep only the N newest checkpoints; null keeps all."
    )
    logging_steps: int = Field(1, ge=1, description="Log metrics every N steps.")
    max_length: int | None = Field(
        None,
        ge=1,
        description="Longest prompt + worked solution in tokens; longer rows are dropped. "
        "null: model.max_seq_length.",
    )
    packing: bool = Field(
        False,
        description="Pack several rows into one sequence of max_length (TRL's bfd); needs a "
        "CUDA GPU and a model that runs flash attention, else packed rows attend to each other.",
    )
    limit: int | None = Field(
        None,
        ge=1,
        description="Use only the first N warm-up rows; null: data.limit. Synthetic data "
        "generates N rows of its sft split.",
    )
    run_name: str | None = Field(
        None,
        description="Run directory of grpo sft; null: <output.run_name>-sft, or <config "
        "name>-sft-<date>-<time> when output.run_name is null.",
    )

    @field_validator("run_name")
    @classmethod
    def _single_name(cls, value: str | None) -> str | None:
        return OutputConfig._single_name(value)


class GrpoConfig(Section):
    """A whole run: model, LoRA, data, rewards, training, vLLM, logging and output."""

    model: ModelConfig = Field(description="The base model and how it is loaded.")
    lora: LoraConfig = Field(default_factory=LoraConfig, description="The LoRA adapter.")
    data: DataConfig = Field(default_factory=DataConfig, description="Dataset and prompt format.")
    rewards: list[RewardSpec] = Field(
        min_length=1, description="Reward functions and their weights."
    )
    reward_plugins: list[str] = Field(
        default_factory=list,
        description="Folders (or .py files) of reward plugins to load besides ./rewards/; "
        "relative paths from the current folder.",
    )
    training: TrainingConfig = Field(
        default_factory=TrainingConfig, description="GRPO hyper-parameters."
    )
    vllm: VllmConfig = Field(default_factory=VllmConfig, description="vLLM generation (trl).")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Logging.")
    eval: EvalConfig = Field(
        default_factory=EvalConfig,
        description="Evaluation during training (`grpo eval` runs after it).",
    )
    output: OutputConfig = Field(default_factory=OutputConfig, description="Where runs go.")
    sft: SftConfig = Field(
        default_factory=SftConfig,
        description="Supervised warm-up on worked solutions (`grpo sft`), before GRPO.",
    )
