"""Cross-field checks: each refusal names the keys, the numbers and the fix."""

from __future__ import annotations

import re

import pytest

from grpo_cli.config import load_config
from grpo_cli.config.checks import OWNED_TRL_FIELDS
from grpo_cli.errors import ConfigError
from tests.conftest import config_problems

BASE = "model:\n  name: gpt2\nrewards: [correctness]\n"


def check(write, text="", overrides=()):
    return config_problems(write("c.yaml", BASE + text), overrides)


def passes(write, text="", overrides=()):
    return load_config(write("ok.yaml", BASE + text), list(overrides)).config


def test_generation_batch_not_a_multiple_of_num_generations(write):
    problems = check(write, "training:\n  num_generations: 8\n  generation_batch_size: 6\n")
    assert len(problems) == 1
    problem = problems[0]
    assert problem.key == "training.generation_batch_size"
    assert problem.line == 6
    message = problem.message
    assert "generation_batch_size 6 is not a multiple of num_generations 8" in message
    assert "generation_batch_size: 8" in message  # nearest valid generation batch
    assert "num_generations: 6 (or 3, 2)" in message  # group sizes that divide 6


def test_generation_batch_suggestion_brackets_the_value(write):
    problem = check(write, "training:\n  num_generations: 4\n  generation_batch_size: 10\n")[0]
    assert "generation_batch_size: 8 (or 12)" in problem.message
    assert "num_generations: 5 (or 2, 10)" in problem.message


def test_valid_generation_batch_passes(write):
    cfg = passes(write, "training:\n  num_generations: 4\n  generation_batch_size: 16\n")
    assert cfg.training.generation_batch_size == 16


def test_completions_must_split_into_accumulation_steps(write):
    problem = check(
        write,
        "training:\n  num_generations: 6\n  prompts_per_step: 1\n"
        "  gradient_accumulation_steps: 4\n",
    )[0]
    assert problem.key == "training.gradient_accumulation_steps"
    assert (
        "6 completions per step do not split into gradient_accumulation_steps 4" in problem.message
    )
    assert "gradient_accumulation_steps: 3 (or 2, 6)" in problem.message
    assert "prompts_per_step: 2" in problem.message


def test_generation_batch_must_hold_whole_micro_batches(write):
    # 2 prompts x 4 generations over 1 micro-step: micro-batches of 8 completions; 12 is 1.5 of them
    problem = check(
        write,
        "training:\n  num_generations: 4\n  prompts_per_step: 2\n  generation_batch_size: 12\n",
    )[0]
    assert problem.key == "training.generation_batch_size"
    assert "micro-batches of 8 completions" in problem.message
    assert "generation_batch_size: 8 (or 16)" in problem.message


def test_lengths_must_fit_the_sequence(write):
    path = write(
        "c.yaml",
        "model:\n  name: gpt2\n  max_seq_length: 512\nrewards: [correctness]\n"
        "training:\n  max_prompt_length: 256\n  max_completion_length: 512\n",
    )
    (problem,) = config_problems(path)
    assert problem.key == "training.max_completion_length"
    assert "256 + max_completion_length 512 = 768 tokens exceed model.max_seq_length 512" in (
        problem.message
    )
    assert "raise model.max_seq_length to 768" in problem.message


@pytest.mark.parametrize(
    ("model", "key", "needle"),
    [
        ("quantization: fp8", "model.quantization", "fp8 weights need the unsloth backend"),
        ("quantization: fp8\n  backend: trl", "model.quantization", "model.backend is trl"),
        ("fast_inference: true\n  backend: trl", "model.fast_inference", "use vllm.use: true"),
        ("fast_inference: true\n  max_lora_rank: 16", "lora.r", "max_lora_rank to at least 32"),
    ],
)
def test_backend_refusals(write, model, key, needle):
    path = write(
        "c.yaml", f"model:\n  name: gpt2\n  {model}\nlora: {{r: 32}}\nrewards: [correctness]\n"
    )
    problems = {p.key: p.message for p in config_problems(path)}
    assert needle in problems[key]


def test_fp8_on_unsloth_passes(write):
    path = write(
        "c.yaml",
        "model:\n  name: gpt2\n  quantization: fp8\n  backend: unsloth\nrewards: [correctness]\n",
    )
    assert load_config(path).config.model.quantization == "fp8"


def test_lora_rank_above_max_is_fine_without_fast_inference(write):
    assert passes(write, "lora: {r: 128}\n").lora.r == 128


def test_vllm_switches_conflict(write):
    path = write(
        "c.yaml",
        "model:\n  name: gpt2\n  backend: unsloth\n  fast_inference: true\n"
        "rewards: [correctness]\nvllm: {use: true}\n",
    )
    messages = [p.message for p in config_problems(path) if p.key == "vllm.use"]
    assert any("model.fast_inference: true and vllm.use: false" in m for m in messages)
    assert any("both start a vLLM engine" in m for m in messages)


def test_custom_prompt_style_needs_a_system_prompt(write):
    (problem,) = check(write, "data:\n  prompt_style: custom\n")
    assert problem.key == "data.system_prompt"
    (problem,) = check(write, "data:\n  system_prompt: Be brief.\n")
    assert "only used with prompt_style: custom" in problem.message
    cfg = passes(write, "data:\n  prompt_style: custom\n  system_prompt: Be brief.\n")
    assert cfg.data.system_prompt == "Be brief."


def test_duplicate_rewards_and_all_zero_weights(write):
    path = write(
        "c.yaml",
        "model: {name: gpt2}\nrewards:\n  - {name: correctness, weight: 0}\n"
        "  - {name: soft_format, weight: 0}\n  - {name: correctness, weight: 0}\n",
    )
    problems = {p.key: p for p in config_problems(path)}
    assert "already listed as rewards[0]" in problems["rewards[2].name"].message
    assert problems["rewards[2].name"].line == 5
    assert "nothing to train on" in problems["rewards"].message


def test_weight_zero_alone_is_allowed(write):
    text = "model: {name: gpt2}\nrewards:\n  - correctness\n  - {name: soft_format, weight: 0}\n"
    assert load_config(write("c.yaml", text)).config.rewards[1].weight == 0


def test_trl_passthrough_refuses_fields_grpo_owns(write):
    (problem,) = check(write, "training:\n  trl:\n    per_device_train_batch_size: 4\n")
    assert problem.key == "training.trl.per_device_train_batch_size"
    assert "use training.prompts_per_step" in problem.message
    assert problem.line == 6


def test_trl_passthrough_keeps_other_fields(write):
    cfg = passes(write, "training:\n  trl: {scale_rewards: batch, top_entropy_quantile: 0.2}\n")
    assert cfg.training.trl == {"scale_rewards": "batch", "top_entropy_quantile": 0.2}


def test_owned_fields_point_to_keys_that_exist():
    from grpo_cli.config.loader import _annotation_at, parse_key

    for target in OWNED_TRL_FIELDS.values():
        first = target.split()[0]
        if re.fullmatch(r"[a-z_]+(\[N\])?\.[a-z_]+", first):
            assert _annotation_at(parse_key(first.replace("[N]", "[0]"))) is not None, target


def test_local_model_path_must_be_a_model_folder(write, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write("c.yaml", "model: {name: ./models/tiny}\nrewards: [correctness]\n")
    assert "./models/tiny is not a folder" in config_problems(path)[0].message
    (tmp_path / "models/tiny").mkdir(parents=True)
    with pytest.raises(ConfigError, match="no config.json"):
        load_config(path)
    (tmp_path / "models/tiny/config.json").write_text("{}")
    assert load_config(path).config.model.name == "./models/tiny"


def test_local_data_file_must_exist_and_be_supported(write, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write("c.yaml", BASE + "data: {source: data/train.jsonl}\n")
    with pytest.raises(ConfigError, match=r"data/train.jsonl not found"):
        load_config(path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data/train.jsonl").write_text("{}\n")
    assert load_config(path).config.data.source == "data/train.jsonl"
    (tmp_path / "data/train.txt").write_text("")
    path = write("d.yaml", BASE + "data: {source: ./data/train.txt}\n")
    with pytest.raises(ConfigError, match="unsupported file type .txt"):
        load_config(path)


# Settings Unsloth or TRL refuse (or silently drop) only after the model is downloaded are
# config errors at once. The library code that decides is cited beside each check.
@pytest.mark.parametrize(
    ("setting", "key", "expected"),
    [
        (
            "model.trust_remote_code=true",
            "model.trust_remote_code",
            "fast_inference (vLLM) cannot run a model's own code",
        ),
        ("model.quantization=8bit", "model.quantization", "fast_inference (vLLM) has no 8-bit"),
        (
            "model.revision=v1",
            "model.revision",
            "`hf download gpt2 --revision v1 --local-dir DIR`",
        ),
    ],
)
def test_what_unsloth_fast_inference_refuses_is_refused_before_any_download(
    write, setting, key, expected
):
    problems = {
        p.key: p.message for p in check(write, overrides=[setting, "model.fast_inference=true"])
    }
    assert expected in problems[key]
    assert "fast_inference: false" in problems[key]
    passes(write, "", [setting])  # the same setting without fast_inference is fine


@pytest.mark.parametrize(
    ("settings", "key", "expected"),
    [
        (["model.quantization=8bit"], "model.quantization", "vLLM cannot generate from 8-bit"),
        (
            ["training.loss_type=vespo"],
            "training.loss_type",
            "set training.trl.vllm_importance_sampling_mode: token_truncate",
        ),
    ],
)
def test_what_trls_colocated_vllm_refuses_is_refused_before_any_download(
    write, settings, key, expected
):
    problems = {p.key: p.message for p in check(write, overrides=[*settings, "vllm.use=true"])}
    assert expected in problems[key]
    passes(write, "", settings)  # the same setting without vLLM is fine


def test_vespo_with_vllm_passes_with_the_token_level_mode_trl_accepts(write):
    fixed = "training.trl.vllm_importance_sampling_mode=token_mask"
    passes(write, "", ["training.loss_type=vespo", "vllm.use=true", fixed])


def test_trls_colocated_vllm_is_given_the_run_s_context_length(write):
    """Unset, vllm_max_model_length is the model's whole context (trl/trainer/grpo_config.py),
    and vLLM sizes its KV cache for 32k tokens on Qwen2.5."""
    from grpo_cli.training.trl_args import grpo_config_kwargs

    cfg = passes(write, "", ["vllm.use=true", "model.max_seq_length=768"])
    assert grpo_config_kwargs(cfg, "out", "fp16", "cuda", [1.0])["vllm_max_model_length"] == 768
    server = passes(write, "", ["vllm.use=true", "vllm.mode=server"])
    assert "vllm_max_model_length" not in grpo_config_kwargs(server, "out", "fp16", "cuda", [1.0])


def test_a_difficulty_level_needs_synthetic_data(write):
    problems = check(write, "data:\n  source: openai/gsm8k\n  difficulty: easy\n")
    assert [p.key for p in problems] == ["data.difficulty"]
    assert "data.source: synthetic" in problems[0].message
    assert passes(write, "data:\n  source: synthetic\n  difficulty: two_step\n")
