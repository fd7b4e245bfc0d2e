"""The tiny local Qwen2 model: loads with the Auto classes, speaks ChatML, generates, takes a GRPO
step with LoRA on CPU, and builds to the same bytes from the same seed."""

from __future__ import annotations

import hashlib
import shutil
import unicodedata
from pathlib import Path

import pytest

from grpo_cli import tiny_model as tiny
from grpo_cli.data.prompts import PromptFormat
from grpo_cli.data.synthetic import synthetic_rows
from grpo_cli.errors import GrpoError

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture(scope="module")
def model(tiny_model: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model)


def file_hashes(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}


def test_loads_with_the_auto_classes_as_a_qwen2_chat_model(tiny_model, tokenizer, model):
    import torch

    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert type(tokenizer).__name__ == "Qwen2Tokenizer"
    assert model.dtype == torch.float32
    assert model.config.tie_word_embeddings
    assert 100_000 < model.num_parameters() < 1_000_000
    assert 1000 <= len(tokenizer) <= 2000
    assert model.config.vocab_size == len(tokenizer)
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|im_end|>", "<|endoftext|>")
    assert tokenizer.bos_token is None and tokenizer.unk_token is None
    assert model.config.eos_token_id == tokenizer.eos_token_id
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert tokenizer.model_max_length == model.config.max_position_embeddings == 2048
    assert (tiny_model / "model.safetensors").is_file()


def test_chat_template_renders_chatml_with_the_generation_prompt(tokenizer):
    messages = PromptFormat().messages("What is 2 + 3?")
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        f"<|im_start|>system\n{messages[0]['content']}<|im_end|>\n"
        "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    im_start, im_end = tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    assert ids.count(im_start) == 3 and ids.count(im_end) == 2


def test_chat_template_adds_no_default_system_message(tokenizer):
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False)
    assert text == "<|im_start|>user\nHi<|im_end|>\n"


@pytest.mark.parametrize(
    "text",
    [
        "Janet has $1,234.50 left.\n#### 42",
        "<reasoning>\n3 * 4 = 12\n</reasoning>\n<answer>\n12\n</answer>\n",
        "héllo wörld 🤗🎉👩‍👩‍👧 日本語 한국어 Ελληνικά ∑∫√ 𝔘𝔫𝔦",
        "tabs\tand  runs   of spaces\r\n\n\x00\x07\x7f",
        bytes(range(256)).decode("latin-1"),
    ],
)
def test_any_text_encodes_without_unknown_tokens_and_decodes_back(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text


def test_text_is_nfc_normalised_like_qwen(tokenizer):
    """Qwen2Tokenizer applies NFC before byte-level BPE: a decomposed é comes back composed."""
    decomposed = "cafe\u0301"
    ids = tokenizer(decomposed, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == unicodedata.normalize("NFC", decomposed) == "café"


def test_the_prompt_text_encodes_compactly(tokenizer):
    system = PromptFormat().system()
    # Merges learned from the prompt keep it to about one token per word, not per character.
    assert len(tokenizer(system)["input_ids"]) < len(system) / 2


def test_generate_produces_new_tokens(tokenizer, model):
    messages = PromptFormat().messages("What is 2 + 3?")
    prompt = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert out.shape[1] == prompt["input_ids"].shape[1] + 8


def test_generate_stops_at_the_configured_eos(tokenizer, model):
    from transformers import LogitsProcessor, LogitsProcessorList

    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end in model.generation_config.eos_token_id

    class EndTurnAfterThree(LogitsProcessor):
        """A random model rarely ends its turn; make it end after three tokens."""

        def __init__(self, prompt_length: int):
            self.stop_at = prompt_length + 3

        def __call__(self, input_ids, scores):
            if input_ids.shape[1] >= self.stop_at:
                scores[:, :] = float("-inf")
                scores[:, im_end] = 0.0
            return scores

    prompt = tokenizer(
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", return_tensors="pt"
    )
    length = prompt["input_ids"].shape[1]
    out = model.generate(
        **prompt,
        max_new_tokens=20,
        do_sample=False,
        logits_processor=LogitsProcessorList([EndTurnAfterThree(length)]),
    )
    # No eos_token_id passed: generation stops because generation_config.json names <|im_end|>.
    assert out.shape[1] == length + 4
    assert out[0, -1].item() == im_end


def test_same_seed_builds_identical_files_and_another_seed_other_weights(tiny_model, tmp_path):
    again = tiny.build_tiny_model(tmp_path / "seed0", seed=0)
    other = tiny.build_tiny_model(tmp_path / "seed1", seed=1)
    first = file_hashes(tiny_model)
    assert set(first) >= {"config.json", "generation_config.json", "model.safetensors"}
    assert set(first) >= {"tokenizer.json", "tokenizer_config.json"}
    assert file_hashes(again) == first
    differs = {name for name, digest in file_hashes(other).items() if first[name] != digest}
    # The tokenizer does not depend on the seed; only the weights do.
    assert differs == {"model.safetensors"}


def test_the_demos_model_turns_its_rotary_pairs_faster_than_the_smoke_model(tiny_model, tmp_path):
    """The learning demo's figures were measured with rotary base 10,000 (Qwen2.5's 1,000,000
    left seed 2's warm-up at 28.2% held-out, not 55.0%); the smoke and check models keep
    Qwen2.5's. Read back from the model as transformers loads it, not from the sizes table."""
    from transformers import AutoModelForCausalLM

    tiny.write_tiny_model(tmp_path / "learn", sizes=tiny.SIZES["learn"])
    learn = AutoModelForCausalLM.from_pretrained(tmp_path / "learn")
    smoke = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert 1.0e6 < sum(p.numel() for p in learn.parameters()) < 1.2e6
    head_dim = learn.config.hidden_size // learn.config.num_attention_heads
    assert head_dim == 32

    def turning_pairs(model) -> int:  # rotary pairs that turn 0.1 radian or more a token
        return int((model.model.rotary_emb.inv_freq >= 0.1).sum())

    assert learn.config.rope_parameters["rope_theta"] == 10_000.0
    assert turning_pairs(learn) == 5
    assert smoke.config.rope_parameters["rope_theta"] == 1_000_000.0
    assert turning_pairs(smoke) < turning_pairs(learn)


def test_building_leaves_the_callers_random_state_alone(tmp_path):
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny.build_tiny_model(tmp_path / "model", seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_refuses_a_non_empty_directory_that_holds_no_model(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    # overwrite replaces an earlier model, never a directory that holds something else.
    for overwrite in (False, True):
        with pytest.raises(GrpoError, match="holds no model") as err:
            tiny.build_tiny_model(tmp_path, overwrite=overwrite)
        assert "overwrite" not in err.value.hint
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_refuses_a_file(tmp_path):
    (tmp_path / "model").write_text("")
    with pytest.raises(GrpoError, match="is a file"):
        tiny.build_tiny_model(tmp_path / "model")


def test_writes_into_an_empty_directory(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    assert tiny.build_tiny_model(out) == out
    assert (out / "config.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_overwrite_replaces_another_model(tiny_model, tmp_path):
    out = tmp_path / "model"
    shutil.copytree(tiny_model, out)
    (out / "stale.bin").write_bytes(b"old")
    with pytest.raises(GrpoError, match="holds another model") as err:
        tiny.build_tiny_model(out, seed=1)
    assert "--overwrite" in err.value.hint and "=True" not in err.value.hint
    assert (out / "stale.bin").exists()
    assert tiny.write_tiny_model(out, seed=1, overwrite=True) == "replaced"
    assert not (out / "stale.bin").exists()
    assert file_hashes(out)["model.safetensors"] != file_hashes(tiny_model)["model.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging or old copy left


def test_the_script_run_twice_keeps_the_model_and_says_so(tmp_path):
    """The README's one-liner runs it on every call; the second run must succeed untouched."""
    import subprocess
    import sys

    from tests.conftest import REPO

    script = [sys.executable, str(REPO / "scripts" / "make_tiny_model.py"), "model"]
    first = subprocess.run(script, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "built in" in first.stdout
    built = file_hashes(tmp_path / "model")
    second = subprocess.run(script, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "already holds the model seed 0 builds; kept" in second.stdout
    assert file_hashes(tmp_path / "model") == built
    other = subprocess.run(
        [*script, "--seed", "1"], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert other.returncode == 2
    assert "Hint: Replace it with --overwrite" in other.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    def crash(*args):
        raise RuntimeError("out of disk")

    monkeypatch.setattr(tiny, "_build_model", crash)
    with pytest.raises(RuntimeError, match="out of disk"):
        tiny.build_tiny_model(tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def torch_logprobs(monkeypatch):
    """TRL 1.15's GRPO loss needs a Triton kernel that CPU torch lacks; grpo's plain-torch
    replacement (what `grpo train` installs on CPU) stands in for it."""
    import trl.trainer.utils

    from grpo_cli.training.cpu_kernels import TorchLogProbs

    monkeypatch.setattr(trl.trainer.utils, "_ChunkedLogProbFunction", TorchLogProbs)


def test_one_grpo_step_with_lora_on_cpu_trains_only_the_adapter(
    tiny_model, tmp_path, torch_logprobs
):
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    prompt = PromptFormat()
    rows = [{"prompt": prompt.messages(row["question"])} for row in synthetic_rows(8, seed=0)]

    def completion_length(completions, **kwargs):
        # Varies between completions, so the advantages and the gradient are not zero.
        return [float(len(c[0]["content"])) for c in completions]

    args = GRPOConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=16,
        max_steps=1,
        report_to="none",
        logging_steps=1,
        save_strategy="no",
    )
    trainer = GRPOTrainer(
        model=str(tiny_model),
        reward_funcs=completion_length,
        args=args,
        train_dataset=Dataset.from_list(rows),
        peft_config=LoraConfig(r=8, lora_alpha=16, target_modules=LORA_TARGETS),
    )
    params = dict(trainer.model.named_parameters())
    lora_b = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight"
    base = "base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"
    embed = "base_model.model.model.embed_tokens.weight"
    before = {name: params[name].detach().clone() for name in (lora_b, base, embed)}
    assert not before[lora_b].any()  # LoRA starts as the identity

    trainer.train()

    log = trainer.state.log_history[0]
    assert trainer.state.global_step == 1
    assert log["reward_std"] > 0 and "loss" in log
    assert not torch.equal(params[lora_b], before[lora_b])
    assert torch.equal(params[base], before[base])
    assert torch.equal(params[embed], before[embed])
    trainable = {name for name, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    assert {name.split(".")[-4] for name in trainable} == set(LORA_TARGETS)
