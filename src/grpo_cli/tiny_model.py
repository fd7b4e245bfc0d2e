"""A tiny random-weight Qwen2 model with a locally trained ChatML tokenizer, built from nothing but
this package: the model the CPU smoke config and the tests train, where nothing can be downloaded.

It mirrors Qwen2.5-Instruct where code can notice: the `qwen2` architecture with tied embeddings,
grouped-query attention and the Qwen2 tokenizer class and pre-tokenizer (byte-level BPE, NFC
normalisation), `<|im_end|>` as eos and `<|endoftext|>` as pad, no bos, and a ChatML chat template.
Unlike Qwen's template, ours adds no default system message when a conversation has none: a
random model has no identity to announce, and a prompt renders exactly as the messages say.
"""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path
from typing import Any

from grpo_cli.errors import GrpoError

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)  # ids 0, 1, 2

# The corpus has pairs seen twice for about 1,000 tokens; merges of pairs seen once fill the rest.
VOCAB_SIZE = 1024
MODEL_MAX_LENGTH = 2048
CORPUS_ROWS = 2000

# The sizes keep a build and a GRPO step on CPU within seconds while keeping what LoRA and TRL
# touch: every projection Qwen2 has, and more query heads than key-value heads.
# Any: mypy cannot spread a dict[str, int] into Qwen2Config's differently typed keywords.
MODEL_SIZES: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": MODEL_MAX_LENGTH,
    "rope_theta": 1_000_000.0,  # Qwen2.5's rotary base
}

# The learning demo's model (configs/learn_cpu*.yaml): about 1.1M parameters, big enough to
# learn one- and two-step arithmetic from a warm-up on 2 CPU cores, small enough to sample
# 128 completions a step there.
LEARN_SIZES: dict[str, Any] = {
    **MODEL_SIZES,
    "hidden_size": 128,
    "intermediate_size": 512,
    "num_hidden_layers": 4,
    # With 32-dimension heads and prompts under 160 tokens, base 10,000 (Llama 2's) turns 5 of a
    # head's 16 rotary pairs by 0.1 radian or more a token, Qwen2.5's 1,000,000 only 3. The demo
    # on seven seeds (scripts/learn_cpu.py --seed N), 10,000 against 1,000,000: the same on
    # average (warm-ups end at 43.1% against 42.9% held-out, GRPO gains +9.7 against +9.5
    # points), but GRPO's gain has p < 0.01 in 5 seeds against 4 and is +6.8 points or more in
    # 6 against 4. The default seed gains less (+12.9 against +19.1).
    "rope_theta": 10_000.0,
}
SIZES: dict[str, dict[str, Any]] = {"smoke": MODEL_SIZES, "learn": LEARN_SIZES}

# ChatML as Qwen2.5 renders it, less tools and the default system message. Content given as a
# list of parts (TRL's multimodal form) renders its text parts.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string %}"
    "{{- message['content'] }}"
    "{%- else %}"
    "{%- for part in message['content'] %}"
    "{%- if part['type'] == 'text' %}{{- part['text'] }}{%- endif %}"
    "{%- endfor %}"
    "{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# A model directory holds this file; `overwrite` replaces only a directory that has it, so a
# mistyped path (`.`, a home directory) is never deleted.
MODEL_MARKER = "config.json"


def build_tiny_model(out_dir: str | Path, seed: int = 0, *, overwrite: bool = False) -> Path:
    """Write a tiny random-weight Qwen2 model + locally trained tokenizer to out_dir and return
    out_dir; `write_tiny_model` says what happened to an existing directory."""
    write_tiny_model(out_dir, seed, overwrite=overwrite)
    return Path(out_dir)


def write_tiny_model(
    out_dir: str | Path,
    seed: int = 0,
    *,
    overwrite: bool = False,
    sizes: dict[str, Any] | None = None,
) -> str:
    """Write the tiny model to out_dir; returns "built", "kept" or "replaced". `sizes` replaces
    MODEL_SIZES (the GPU self-check needs heads of 64 dimensions, which every vLLM backend takes).

    The same seed gives byte-identical files; the tokenizer does not depend on the seed, only the
    weights do. So a directory that already holds exactly the files this seed builds is kept as
    it is ("kept"), and building twice is harmless. Another model there is refused unless
    `overwrite` ("replaced"); a non-empty directory that holds no model is always refused. The
    files are written to a directory beside out_dir and renamed into place, so a failed build
    leaves nothing behind.
    """
    out = Path(out_dir)
    _check_target(out)
    target = out.resolve()  # `.` and `..` have no name to put a staging directory beside
    target.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkdtemp: its 0700 mode would stay on the model directory after the rename.
    staging = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
    staging.mkdir()
    try:
        tokenizer = _build_tokenizer()
        tokenizer.save_pretrained(staging)
        _build_model(tokenizer, seed, sizes or MODEL_SIZES).save_pretrained(staging)
        if not target.is_dir() or not any(target.iterdir()):
            _move_into_place(staging, target)
            return "built"
        if _same_files(staging, target):
            shutil.rmtree(staging)
            return "kept"
        if not overwrite:
            raise GrpoError(
                f"{out} holds another model than seed {seed} builds (another seed, a file "
                "added, or an older grpo-cli)",
                "Replace it with --overwrite, or pick a new or empty directory.",
            )
        _move_into_place(staging, target)
        return "replaced"
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _check_target(out: Path) -> None:
    """Refusals that need no build: a file, or a non-empty directory that holds no model."""
    if out.exists() and not out.is_dir():
        raise GrpoError(f"{out} is a file, not a directory", "Pick a new or empty directory.")
    if out.is_dir() and any(out.iterdir()) and not (out / MODEL_MARKER).is_file():
        raise GrpoError(
            f"{out} is not empty and holds no model ({MODEL_MARKER}); not replacing it",
            "Pick a new or empty directory.",
        )


def _same_files(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.iterdir())
    if names != sorted(p.name for p in b.iterdir()):
        return False
    return all((b / n).is_file() and (a / n).read_bytes() == (b / n).read_bytes() for n in names)


def _move_into_place(staging: Path, out: Path) -> None:
    if not out.exists():
        staging.rename(out)
        return
    # Rename the old directory aside first so that `out` is never missing a file half-way.
    old = out.parent / f".{out.name}.{secrets.token_hex(4)}.old"
    out.rename(old)
    staging.rename(out)
    shutil.rmtree(old)


def _corpus() -> list[str]:
    """What the tokenizer learns its merges from: GSM8K-style problems, worked solutions in every
    prompt style, the system prompts and the chat roles, so that the text a smoke run sees
    encodes in few tokens. Seed 0 always: the tokenizer is the same for every model seed."""
    from grpo_cli.data.formatters import split_gsm8k_solution
    from grpo_cli.data.prompts import PromptFormat
    from grpo_cli.data.synthetic import synthetic_rows

    formats = [PromptFormat(style="xml"), PromptFormat(style="think", reasoning_tag="think")]
    texts = ["0 1 2 3 4 5 6 7 8 9 $1,000 #### 42 .,;:!?"]
    # The simple levels' words too (the learning demo's problems), a quarter of the rows.
    rows = synthetic_rows(CORPUS_ROWS, seed=0) + synthetic_rows(
        CORPUS_ROWS // 4, seed=0, split="sft", difficulty="simple"
    )
    for i, row in enumerate(rows):
        reasoning, final = split_gsm8k_solution(row["answer"])
        form = formats[i % 2]
        # Each turn as the chat template lays it out, less the special tokens around it.
        texts += [
            f"system\n{form.system()}",
            f"user\n{row['question']}",
            f"assistant\n{form.target(reasoning, final)}",
            row["answer"],
        ]
    return texts


def _build_tokenizer() -> Any:
    """Train a byte-level BPE with Qwen2's pre-tokenizer and wrap it as a Qwen2Tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers.trainers import BpeTrainer
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    # Qwen2Tokenizer rebuilds this pipeline from vocab and merges when it loads, whatever
    # tokenizer.json says, so training with any other would give merges it never applies.
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=1,
        show_progress=False,
        special_tokens=list(SPECIAL_TOKENS),
        # All 256 bytes, so that any text encodes with no unknown token.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(_corpus(), trainer)
    merges = json.loads(bpe.to_str())["model"]["merges"]
    return Qwen2Tokenizer(
        vocab=bpe.get_vocab(),
        # transformers annotates merges as strings and unk_token as str; it takes pairs and None.
        merges=[tuple(m) for m in merges],  # type: ignore[misc]
        unk_token=None,  # type: ignore[arg-type]
        bos_token=None,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        extra_special_tokens=[IM_START, IM_END],
        model_max_length=MODEL_MAX_LENGTH,
        chat_template=CHAT_TEMPLATE,
    )


def _build_model(tokenizer: Any, seed: int, sizes: dict[str, Any]) -> Any:
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    eos, pad = tokenizer.convert_tokens_to_ids([IM_END, ENDOFTEXT])
    shape = {key: value for key, value in sizes.items() if key != "rope_theta"}
    config = Qwen2Config(
        **shape,
        vocab_size=len(tokenizer),
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": sizes["rope_theta"]},
        rms_norm_eps=1e-6,
        use_sliding_window=False,
        max_window_layers=sizes["num_hidden_layers"],
        bos_token_id=None,
        eos_token_id=eos,
        pad_token_id=pad,
        dtype="float32",
    )
    # fork_rng: seeding must not change the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # transformers' typing of the wrapped `to` takes no dtype; torch's `to` does.
        model = Qwen2ForCausalLM(config).to(torch.float32)  # type: ignore[arg-type]
    # Qwen2.5-Instruct's sampling defaults; generation stops at the end of a turn or of text.
    model.generation_config = GenerationConfig(
        eos_token_id=[eos, pad],
        pad_token_id=pad,
        do_sample=True,
        temperature=0.7,
        top_p=0.8,
        top_k=20,
        repetition_penalty=1.05,
    )
    return model
