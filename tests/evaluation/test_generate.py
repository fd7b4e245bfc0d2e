"""Both evaluation engines generate from the same prompt token ids, and a chat template that
starts with its own BOS (Llama 3) gives a prompt with exactly one."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from grpo_cli.evaluation.generate import (
    Sampling,
    TransformersEngine,
    VllmEngine,
    decoding_kwargs,
    prompt_ids,
)

BOS, EOT, PAD = "<|begin_of_text|>", "<|eot_id|>", "<pad>"
# Llama 3's template in miniature: the rendered chat begins with the BOS token itself.
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>"
    " {{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>{% endif %}"
)
PROMPTS = [
    [{"role": "user", "content": "what is two plus two"}],
    [{"role": "system", "content": "answer in words"}, {"role": "user", "content": "three"}],
]


@pytest.fixture(scope="module")
def llama3_tokenizer() -> Any:
    """A word-level tokenizer that, like Llama 3's, adds <|begin_of_text|> to whatever it
    encodes unless told not to."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    special = [BOS, EOT, PAD, "<|start_header_id|>", "<|end_header_id|>", "[UNK]"]
    words = [
        "what",
        "is",
        "two",
        "plus",
        "three",
        "answer",
        "in",
        "words",
        "user",
        "system",
        "assistant",
    ]
    vocab = {token: i for i, token in enumerate(special + words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens(special)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", special_tokens=[(BOS, vocab[BOS])]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=BOS, eos_token=EOT, pad_token=PAD, unk_token="[UNK]"
    )
    tokenizer.chat_template = LLAMA3_TEMPLATE
    tokenizer.padding_side = "left"
    return tokenizer


def test_the_tokenizer_would_double_the_bos_of_a_rendered_llama3_chat(llama3_tokenizer):
    """What the vLLM engine used to do (text in, special tokens added): the defect is real."""
    text = llama3_tokenizer.apply_chat_template(
        PROMPTS[0], tokenize=False, add_generation_prompt=True
    )
    assert llama3_tokenizer(text)["input_ids"].count(llama3_tokenizer.bos_token_id) == 2


def test_prompt_ids_hold_exactly_one_bos(llama3_tokenizer):
    bos = llama3_tokenizer.bos_token_id
    for ids in prompt_ids(llama3_tokenizer, PROMPTS):
        assert ids[0] == bos and ids.count(bos) == 1


class FakeLLM:
    """vllm.LLM's generate(prompts, params, lora_request=, use_tqdm=): records the prompts."""

    calls: list[Any] = []

    def __init__(self, **kwargs: Any):
        self.kwargs = kwargs

    def generate(self, prompts: Any, params: Any, **kwargs: Any) -> list[Any]:
        FakeLLM.calls.append(prompts)
        done = types.SimpleNamespace(text="four", token_ids=[7, 1], finish_reason="stop")
        return [types.SimpleNamespace(outputs=[done] * params.n) for _ in prompts]


@pytest.fixture
def fake_vllm(monkeypatch) -> type[FakeLLM]:
    module = types.ModuleType("vllm")
    module.LLM = FakeLLM  # type: ignore[attr-defined]
    module.SamplingParams = lambda **kw: types.SimpleNamespace(**kw)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    FakeLLM.calls = []
    return FakeLLM


def test_vllm_is_given_token_ids_with_one_bos(llama3_tokenizer, fake_vllm):
    engine = VllmEngine(
        "unsloth/Llama-3.2-1B-Instruct",
        llama3_tokenizer,
        adapter=None,
        lora_rank=16,
        revision=None,
        trust_remote_code=False,
        max_model_len=2048,
    )
    out = engine.generate(PROMPTS, Sampling(samples=2, temperature=1.0))
    assert [[c.text for c in o] for o in out] == [["four", "four"]] * 2
    (prompts,) = fake_vllm.calls
    assert all(set(p) == {"prompt_token_ids"} for p in prompts), "no text for vLLM to tokenize"
    bos = llama3_tokenizer.bos_token_id
    assert [p["prompt_token_ids"].count(bos) for p in prompts] == [1, 1]
    assert [p["prompt_token_ids"] for p in prompts] == prompt_ids(llama3_tokenizer, PROMPTS)


def test_vllm_decodes_only_as_told(llama3_tokenizer, fake_vllm, monkeypatch):
    """Not the model's generation_config.json (vLLM's generation_config="auto"), and the
    neutral settings training samples with."""
    made: list[Any] = []
    monkeypatch.setattr(FakeLLM, "__init__", lambda self, **kw: made.append(kw))
    engine = VllmEngine(
        "m",
        llama3_tokenizer,
        adapter=None,
        lora_rank=16,
        revision=None,
        trust_remote_code=False,
        max_model_len=256,
    )
    params: list[Any] = []
    monkeypatch.setattr(FakeLLM, "generate", lambda self, p, sp, **kw: params.append(sp) or [])
    engine.generate(PROMPTS, Sampling(samples=2, temperature=0.9, top_p=0.95))
    assert made[0]["generation_config"] == "vllm"
    (sp,) = params
    assert (sp.temperature, sp.top_p, sp.top_k, sp.min_p, sp.repetition_penalty) == (
        0.9,
        0.95,
        -1,
        0.0,
        1.0,
    )


class FakeModel:
    """A causal LM whose generate records its inputs and answers with the end-of-turn token."""

    device = "cpu"
    training = False
    generation_config = None

    def __init__(self, eot: int):
        self.eot = eot
        self.seen: dict[str, Any] = {}

    def eval(self) -> FakeModel:
        return self

    def train(self, mode: bool = True) -> FakeModel:
        return self

    def generate(self, input_ids: Any, attention_mask: Any, **kwargs: Any) -> Any:
        import torch

        self.seen = {"input_ids": input_ids, "attention_mask": attention_mask}
        rows = input_ids.repeat_interleave(kwargs["num_return_sequences"], dim=0)
        return torch.cat([rows, torch.full((rows.shape[0], 1), self.eot)], dim=1)


def test_transformers_and_vllm_engines_see_the_same_prompt(llama3_tokenizer, fake_vllm):
    model = FakeModel(llama3_tokenizer.eos_token_id)
    out = TransformersEngine(model, llama3_tokenizer).generate(PROMPTS, Sampling())
    assert [[c.tokens for c in o] for o in out] == [[1], [1]]
    seen = model.seen
    rows = [
        [t for t, keep in zip(ids, mask, strict=True) if keep]
        for ids, mask in zip(
            seen["input_ids"].tolist(), seen["attention_mask"].tolist(), strict=True
        )
    ]
    assert rows == prompt_ids(llama3_tokenizer, PROMPTS)
    assert seen["input_ids"][0, 0].item() == llama3_tokenizer.pad_token_id, "left padding"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Any, Any]:
    """The tiny Qwen2 model, whose generation_config.json carries Qwen2.5-Instruct's sampling
    defaults (repetition_penalty 1.05, top_k 20, temperature 0.7), and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from grpo_cli.tiny_model import build_tiny_model
    from grpo_cli.training.models import ready_for_generation

    path = build_tiny_model(tmp_path_factory.mktemp("tiny-decoding"), seed=0)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    assert model.generation_config.repetition_penalty == 1.05, "the fixture is what it claims"
    assert model.generation_config.top_k == 20
    return model, ready_for_generation(AutoTokenizer.from_pretrained(path), str(path))


def effective(model: Any, sampling: Sampling) -> Any:
    """The generation config `model.generate` ends up with for the engine's keywords
    (transformers/generation/utils.py: _prepare_generation_config, which generate calls)."""
    kwargs = decoding_kwargs(sampling, model.generation_config, [0], 0)
    config, model_kwargs = model._prepare_generation_config(None, **kwargs)
    assert model_kwargs == {}, "nothing may reach the model's forward"
    return config


def test_greedy_eval_applies_no_repetition_penalty_from_the_model(tiny):
    model, _ = tiny
    config = effective(model, Sampling(max_new_tokens=7))
    assert config.repetition_penalty == 1.0
    assert config.do_sample is False
    assert config.top_k is None and config.max_new_tokens == 7


def test_sampled_eval_samples_as_training_does(tiny):
    """TRL's GRPOTrainer samples with repetition_penalty 1.0, top_k 0 (none) and min_p None
    (trl/trainer/grpo_trainer.py generation_kwargs), temperature and top_p from the config."""
    model, _ = tiny
    config = effective(model, Sampling(samples=4, temperature=0.9, top_p=0.95))
    assert (config.do_sample, config.temperature, config.top_p) == (True, 0.9, 0.95)
    assert config.top_k is None, "neither the model's 20 nor transformers' default 50"
    assert config.repetition_penalty == 1.0 and config.min_p is None
    assert config.num_return_sequences == 4


def manual_greedy(model: Any, ids: list[int], steps: int, stop: list[int]) -> list[int]:
    """Argmax decoding by hand: the model's logits, no processor of any kind."""
    import torch

    out: list[int] = []
    with torch.inference_mode():
        for _ in range(steps):
            logits = model(torch.tensor([ids + out])).logits[0, -1]
            out.append(int(logits.argmax()))
            if out[-1] in stop:
                break
    return out


def test_greedy_eval_equals_a_plain_argmax_decode(tiny):
    model, tokenizer = tiny
    engine = TransformersEngine(model, tokenizer)
    prompts = [[{"role": "user", "content": f"What is {a} plus {a}?"}] for a in (3, 11, 250)]
    steps = 24
    out = engine.generate(prompts, Sampling(max_new_tokens=steps))
    for prompt, ids, (completion,) in zip(
        prompts, prompt_ids(tokenizer, prompts), out, strict=True
    ):
        expected = manual_greedy(model, ids, steps, engine.stop)
        kept = expected[:-1] if expected and expected[-1] in engine.stop else expected
        assert completion.text == tokenizer.decode(kept, skip_special_tokens=True), prompt


def test_the_old_keywords_took_the_models_repetition_penalty(tiny):
    """The defect was real: the keywords eval passed before (greedy, top_k None) left the
    penalty to the model's generation_config.json, which training never applies."""
    model, _ = tiny
    config, _ = model._prepare_generation_config(
        None, do_sample=False, temperature=None, top_p=None, top_k=None, max_new_tokens=7
    )
    assert config.repetition_penalty == 1.05
