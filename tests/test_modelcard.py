"""The model card `grpo merge` writes: each section from plain recorded facts."""

from __future__ import annotations

import yaml

from grpo_cli.modelcard import CardFacts, eval_section, model_card, rewards_section

CONFIG = {
    "model": {"name": "Qwen/Qwen2.5-3B-Instruct", "revision": "abc123", "quantization": "4bit"},
    "lora": {"r": 32, "alpha": 64, "dropout": 0.0, "target_modules": "all-linear", "rslora": True},
    "data": {
        "source": "openai/gsm8k",
        "split": "train",
        "formatter": "gsm8k",
        "prompt_style": "think",
        "heldout_size": 100,
    },
    "rewards": [
        {"name": "correctness", "weight": 2.0, "params": {}},
        {"name": "strict_format", "weight": None, "params": {"pattern": "a|b"}},
        {"name": "my_plugin_reward", "weight": None, "params": {}},
    ],
    "training": {
        "learning_rate": 5e-6,
        "num_generations": 8,
        "prompts_per_step": 4,
        "loss_type": "dr_grpo",
        "beta": 0.04,
        "max_completion_length": 768,
    },
    "output": {"run_name": "qwen3b-gsm8k"},
}
ENV = {
    "backend": "unsloth",
    "precision": "bf16",
    "git": {"commit": "deadbeef", "dirty": False},
    "versions": {"trl": "1.15.0", "vllm": None},
}


def facts(**changes) -> CardFacts:
    base = dict(
        base_model="Qwen/Qwen2.5-3B-Instruct",
        dtype="bf16",
        config=CONFIG,
        env=ENV,
        steps=500,
        default_weights={"strict_format": 0.5},
    )
    return CardFacts(**{**base, **changes})


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_front_matter_links_the_hub_base_and_tags_the_method():
    meta = front_matter(model_card(facts(merger="unsloth")))
    assert meta["base_model"] == "Qwen/Qwen2.5-3B-Instruct"
    assert meta["library_name"] == "transformers"
    assert {"grpo", "trl", "lora", "unsloth"} <= set(meta["tags"])


def test_a_local_base_is_described_but_not_linked():
    card = model_card(facts(base_model="./models/tiny-qwen2", env={}))
    assert "base_model" not in front_matter(card)
    assert "`./models/tiny-qwen2`" in card and "unsloth" not in front_matter(card)["tags"]


def test_recipe_table():
    card = model_card(facts())
    for row in (
        "| backend | unsloth |",
        "| precision | bf16 |",
        "| base revision | `abc123` |",
        "| base weights during training | 4bit |",
        "| LoRA r / alpha | 32 / 64 (rsLoRA) |",
        "| LoRA target modules | all-linear |",
        "| optimizer steps | 500 |",
        "| learning rate | 5e-06 |",
        "| num_generations (group size) | 8 |",
        "| prompts_per_step | 4 |",
        "| loss_type | dr_grpo |",
        "| beta (KL) | 0.04 |",
        "| max_completion_length | 768 |",
        "| prompt style | think |",
        "| held-out rows (never trained on) | 100 |",
    ):
        assert row in card, row


def test_rewards_show_the_weight_trained_with():
    text = rewards_section(facts())
    assert "| correctness | 2 | - |" in text
    assert '| strict_format | 0.5 | pattern="a\\|b" |' in text  # registered default, pipe escaped
    assert "| my_plugin_reward | default | - |" in text  # a plugin merge could not look up


def test_eval_table_with_confidence_intervals_and_sampling_metrics():
    text = eval_section(
        {
            "test": {
                "rows": 1319,
                "samples": 4,
                "strict_accuracy": 0.7123,
                "strict_accuracy_ci95": [0.687, 0.736],
                "format_rate": 1.0,
                "pass@4": 0.85,
                "maj@4": 0.74,
                "model": "ignored text",
                "seed": 0,
            },
            "notes": "not a split",
        }
    )
    lines = text.splitlines()
    assert lines[4] == "| split | rows | samples | strict accuracy | pass@4 | maj@4 | format rate |"
    assert lines[6] == "| test | 1319 | 4 | 71.2% [68.7, 73.6] | 85.0% | 74.0% | 100.0% |"
    assert len(lines) == 7


def test_no_evals_no_section():
    assert eval_section({}) == "" and "## Evaluation" not in model_card(facts())


def test_reproduce_commands_follow_the_flags():
    card = model_card(
        facts(
            run_path="outputs/qwen3b-gsm8k",
            repo_id="me/qwen3b-grpo",
            dtype="fp16",
            gguf=["q4_k_m", "q8_0"],
        )
    )
    assert "grpo train grpo_config.yaml" in card
    assert "grpo eval grpo_config.yaml --model base --model outputs/qwen3b-gsm8k" in card
    assert (
        "grpo merge outputs/qwen3b-gsm8k --dtype fp16 --gguf q4_k_m,q8_0 "
        "--push-to-hub me/qwen3b-grpo"
    ) in card
    assert "at commit `deadbeef`" in card and "uncommitted" not in card
    assert '"me/qwen3b-grpo"' in card  # the usage snippet loads this repo


def test_adapter_only_card_loads_with_peft():
    card = model_card(facts(adapter_only=True))
    assert front_matter(card)["library_name"] == "peft"
    assert "AutoPeftModelForCausalLM" in card and "LoRA adapter (PEFT, safetensors)" in card
    assert "--adapter-only" in card


def test_usage_renders_the_training_prompt():
    messages = [
        {"role": "system", "content": "Think in <think> tags."},
        {"role": "user", "content": "Q?"},
    ]
    card = model_card(facts(example_messages=messages))
    assert '"content": "Think in <think> tags."' in card


def test_without_a_run_config_the_card_says_so():
    card = model_card(CardFacts(base_model="Qwen/Qwen2.5-3B-Instruct", dtype="bf16"))
    assert "The run's config was not available" in card
    assert "## Rewards" not in card and "## Reproduce" not in card


def test_nothing_shaped_like_a_token_reaches_the_card():
    token = "hf_" + "x" * 34
    leaky = {**CONFIG, "data": {**CONFIG["data"], "source": f"./data/{token}.jsonl"}}
    assert token not in model_card(facts(config=leaky))


def test_a_subset_is_shown_for_hub_datasets_only():
    def data_rows(source: str) -> str:
        config = {**CONFIG, "data": {**CONFIG["data"], "source": source, "subset": "main"}}
        return model_card(facts(config=config)).split("## Data")[1].split("##")[0]

    assert "| subset | main |" in data_rows("openai/gsm8k")
    for source in ("synthetic", "./data/train.jsonl", "data/train.jsonl"):
        rows = data_rows(source)
        assert f"| source | {source} |" in rows and "subset" not in rows, source


def test_reproduce_repeats_each_recorded_evaluation():
    evals = {"heldout": {"rows": 8}, "test@4": {"rows": 200, "temperature": 1.0}}
    card = model_card(facts(run_path="outputs/r", evals=evals))
    assert "grpo eval grpo_config.yaml --model base --model outputs/r --split heldout\n" in card
    assert "--model outputs/r --samples 4 --temperature 1\n" in card


LINEAGE = [
    {"stage": "base", "model": "Qwen/Qwen2.5-0.5B-Instruct", "revision": None},
    {"stage": "sft", "run": "outputs/warm", "method": "full", "steps": 600, "rows": 2000},
    {"stage": "grpo", "run": "outputs/grpo", "steps": 150},
]


def test_a_model_warmed_up_by_grpo_sft_shows_its_lineage():
    card = model_card(facts(base_model="outputs/warm/model", lineage=LINEAGE, run_path=None))
    assert front_matter(card)["base_model"] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert "`Qwen/Qwen2.5-0.5B-Instruct` trained with GRPO" in card
    assert "after a `grpo sft` warm-up" in card
    assert (
        "| grpo sft (warm-up) | run `outputs/warm`, full fine-tuning, 600 steps, 2000 rows |"
        in card
    )
    assert "| grpo train | run `outputs/grpo`, 150 steps |" in card
    assert "grpo sft outputs/warm/config.yaml\ngrpo train grpo_config.yaml" in card


def test_a_merged_warm_up_is_reproduced_by_grpo_sft():
    card = model_card(facts(lineage=LINEAGE[:2]))
    assert "fine-tuned on worked solutions (`grpo sft`)" in card
    assert "grpo sft grpo_config.yaml\n" in card and "grpo train" not in card
    assert "## Lineage" not in model_card(facts(lineage=LINEAGE[:1]))  # no warm-up: as before
