"""What grpo sft trains on: the worked solution as the rewards pay full marks for, after the very
prompt grpo train samples from, with the prompt's tokens out of the loss."""

from __future__ import annotations

import pytest

from grpo_cli.config import load_config
from grpo_cli.data.loading import load_sft_data, load_training_data
from grpo_cli.data.prompts import PromptFormat
from grpo_cli.rewards.runner import RewardContext, build_rewards
from grpo_cli.training.sft import sft_config_kwargs, sft_rows

from ..conftest import CONFIGS

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# The most each built-in reward pays (their defaults, rewards/builtin.py).
BEST = {
    "correctness": 2.0,
    "integer_answer": 0.5,
    "strict_format": 0.5,
    "soft_format": 0.5,
    "xml_count": 0.5,
    "think_format": 0.5,
    "length_penalty": 0.0,
}


def smoke(*overrides: str):
    """configs/smoke_cpu.yaml, its model a Hub id unless an override names one."""
    return load_config(
        CONFIGS / "smoke_cpu.yaml", ["model.name=Qwen/Qwen2.5-0.5B-Instruct", *overrides]
    ).config


@pytest.mark.parametrize(
    ("overrides", "rewards"),
    [
        ([], "[xml_count, soft_format, strict_format, integer_answer, correctness]"),
        (["data.one_shot=true"], "[xml_count, soft_format, strict_format, correctness]"),
        (["data.prompt_style=think"], "[think_format, soft_format, strict_format, correctness]"),
        (["data.reasoning_tag=work", "data.answer_tag=final"], "[xml_count, correctness]"),
    ],
)
def test_every_reward_pays_the_worked_solution_its_maximum(overrides, rewards):
    cfg = smoke(
        *overrides,
        f"rewards={rewards[:-1]}, length_penalty]",
        "training.max_completion_length=200",
        "data.difficulty=simple",
    )
    data = load_sft_data(cfg).train
    rows = sft_rows(data, PromptFormat.from_config(cfg.data))
    texts = [r["completion"][0]["content"] for r in rows]
    for reward in build_rewards(cfg.rewards, RewardContext.from_config(cfg), []):
        values = reward(texts, answer=data["answer"], prompts=rows["prompt"])
        assert values == [BEST[reward.__name__]] * len(texts), reward.__name__


def test_the_prompt_is_the_one_grpo_train_samples_from():
    cfg = smoke("data.one_shot=true", "data.difficulty=simple")
    sft = sft_rows(load_sft_data(cfg).train, PromptFormat.from_config(cfg.data))
    grpo = load_training_data(cfg).train
    assert sft[0]["prompt"][:-1] == grpo[0]["prompt"][:-1]  # system prompt and one-shot turn
    assert [m["role"] for m in sft[0]["completion"]] == ["assistant"]


def test_the_prompts_tokens_are_left_out_of_the_loss(tiny_model, tmp_path):
    """Pinned through TRL's own preparation with the arguments grpo passes: the labels of the
    prompt are -100, those of the worked solution are its tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    from grpo_cli.training.sft import build_sft_config

    cfg = smoke(f"model.name={tiny_model}", "sft.max_steps=1")
    kwargs = sft_config_kwargs(cfg, str(tmp_path), "fp32", "cpu")
    assert kwargs["completion_only_loss"] is True  # not left to TRL's default
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    rows = sft_rows(load_sft_data(cfg).train.select(range(4)), PromptFormat.from_config(cfg.data))
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model),
        args=build_sft_config(kwargs),
        train_dataset=rows,
        processing_class=tokenizer,
    )
    example = trainer.train_dataset[0]
    ids, labels = example["input_ids"], example["labels"]
    trained = [i for i, label in zip(ids, labels, strict=True) if label != -100]
    masked = [i for i, label in zip(ids, labels, strict=True) if label == -100]
    assert labels[: len(masked)] == [-100] * len(masked)  # the prompt, then the solution
    solution = rows[0]["completion"][0]["content"]
    assert tokenizer.decode(trained).startswith(solution)  # then the end-of-turn token
    assert tokenizer.decode(masked).endswith("<|im_start|>assistant\n")
    assert rows[0]["prompt"][-1]["content"] in tokenizer.decode(masked)


def test_the_sft_section_decides_the_trainers_settings():
    cfg = smoke(
        "sft={learning_rate: 1.0e-5, batch_size: 3, gradient_accumulation_steps: 2, "
        "max_steps: 7, warmup_ratio: 0.1, packing: true, max_length: 300}",
        "training.seed=11",
    )
    kwargs = sft_config_kwargs(cfg, "out", "bf16", "cuda")
    assert kwargs["learning_rate"] == 1e-5 and kwargs["per_device_train_batch_size"] == 3
    assert kwargs["gradient_accumulation_steps"] == 2 and kwargs["max_steps"] == 7
    assert kwargs["warmup_steps"] == 0.1 and kwargs["packing"] is True
    assert kwargs["max_length"] == 300 and kwargs["seed"] == 11 and kwargs["bf16"] is True
    assert sft_config_kwargs(smoke(), "out", "fp32", "cpu")["max_length"] == 512  # model's
