"""The merged weights of `grpo merge`: PEFT's merge_and_unload or Unsloth's merged_16bit, GGUF
files through Unsloth, or the adapter alone for --adapter-only."""

from __future__ import annotations

import difflib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from rich.console import Console

from grpo_cli.errors import GrpoError
from grpo_cli.files import write_atomic
from grpo_cli.hardware import installed
from grpo_cli.model_loading import GPU_EXTRA, load_model, load_tokenizer
from grpo_cli.model_source import ModelSource
from grpo_cli.training.models import DTYPES

# unsloth.save.ALLOWED_QUANTS less its aliases and the imatrix-only quants, written out so a
# typo is refused before any weights are loaded and without importing unsloth.
GGUF_QUANTS = tuple(
    [
        "q4_k_m",
        "q5_k_m",
        "q8_0",
        "f16",
        "bf16",
        "f32",
        "q2_k",
        "q2_k_l",
        "q3_k_s",
        "q3_k_m",
        "q3_k_l",
        "q4_0",
        "q4_1",
        "q4_k_s",
        "q5_0",
        "q5_1",
        "q5_k_s",
        "q6_k",
    ]
)
# The adapter folder holds the trainer's pickled arguments (no use to anyone loading the adapter,
# and unpickling it runs code) and PEFT's placeholder card, which ours replaces.
NOT_PUBLISHED = ("training_args.bin", "README.md")


def parse_quants(text: str | None, adapter_only: bool) -> list[str]:
    if text is None:
        return []
    names = list(dict.fromkeys(q.strip().lower() for q in text.split(",") if q.strip()))
    if not names:
        raise GrpoError("--gguf names no quantization", "e.g. --gguf q4_k_m,q8_0")
    for name in names:
        if name not in GGUF_QUANTS:
            close = difflib.get_close_matches(name, GGUF_QUANTS, n=1)
            raise GrpoError(
                f"--gguf: unknown quantization {name!r}"
                + (f". Did you mean {close[0]!r}?" if close else ""),
                f"choose from {', '.join(GGUF_QUANTS)}",
            )
    if adapter_only:
        raise GrpoError(
            "--gguf needs merged weights; it cannot go with --adapter-only",
            "drop --adapter-only to export GGUF",
        )
    return names


def unsloth_installed() -> bool:
    return installed("unsloth")


def choose_merger(src: ModelSource, quants: list[str], console: Console) -> str:
    """unsloth when GGUF is asked for, or when the run trained with it and it imports; else peft.
    Unsloth is imported here, before transformers and peft, so its patches apply to them."""
    if quants and not unsloth_installed():
        raise GrpoError(
            "--gguf: GGUF export goes through Unsloth, which is not installed",
            f"{GPU_EXTRA} (unsloth); Unsloth then builds llama.cpp in ./llama.cpp on first use "
            "(needs git, cmake and a C compiler). Or drop --gguf and convert the merged folder "
            "with llama.cpp's convert_hf_to_gguf.py",
        )
    if not quants and not (src.env.get("backend") == "unsloth" and unsloth_installed()):
        return "peft"
    try:
        import unsloth  # noqa: F401
    except Exception as exc:  # unsloth raises plain exceptions when its GPU stack is off
        if quants:
            raise GrpoError(
                f"--gguf: importing unsloth failed: {type(exc).__name__}: {exc}",
                f"{GPU_EXTRA}, or drop --gguf",
            ) from exc
        console.print(f"note: unsloth does not import ({type(exc).__name__}); merging with PEFT")
        return "peft"
    return "unsloth"


def merge_with_peft(src: ModelSource, folder: Path, dtype: str) -> None:
    """Base in 16 bit (never the 4-bit or FP8 weights a run may have trained on) + adapter,
    merged with PEFT's merge_and_unload and saved as safetensors with tokenizer and
    generation config."""
    import torch
    from transformers import GenerationConfig

    merged = load_model(src, getattr(torch, DTYPES[dtype]))
    merged.save_pretrained(folder)  # transformers 5 writes safetensors only
    load_tokenizer(src).save_pretrained(folder)
    if not (folder / "generation_config.json").is_file():
        GenerationConfig.from_model_config(merged.config).save_pretrained(folder)


def merge_with_unsloth(src: ModelSource, folder: Path, dtype: str, quants: list[str]) -> None:
    import torch
    from unsloth import FastLanguageModel

    from grpo_cli.hub_access import cache_first

    # Unsloth reads the base named in adapter_config.json: from the cache with no network when
    # it is there, refused in seconds when it is not and the Hub does not answer.
    model, tokenizer = cache_first(
        lambda: FastLanguageModel.from_pretrained(
            model_name=str(src.adapter),
            dtype=getattr(torch, DTYPES[dtype]),
            load_in_4bit=False,  # a 16-bit base whatever the run trained on (load_in_fp8 is
            load_in_8bit=False,  # off by default; passing it breaks Unsloth's CPU fallback)
            max_seq_length=int(src.config.get("model", {}).get("max_seq_length", 2048)),
            trust_remote_code=src.trust_remote_code,
        ),
        src.base,
        key="the base model",
        revision=src.revision,
    )
    # safe_serialization=None: Unsloth's default falls back to pickles on hosts with two CPUs.
    # dtype: unsloth/save.py (unsloth_generic_save_pretrained_merged) keeps the base checkpoint's
    # stored dtype when it is None, and widens to float32 when asked; a 16-bit value changes
    # nothing, since unsloth_zoo/saving_utils.py (_merge_and_overwrite_lora) writes every merged
    # tensor back in its stored dtype. So the files are cast afterwards to what --dtype says.
    model.save_pretrained_merged(
        str(folder),
        tokenizer,
        save_method="merged_16bit",
        safe_serialization=None,
        dtype=getattr(torch, DTYPES[dtype]),
    )
    cast_saved_weights(folder, dtype)
    if quants:
        export_gguf(model, tokenizer, folder, quants)


def cast_saved_weights(folder: Path, dtype: str) -> None:
    """The floating-point tensors of FOLDER's safetensors, and config.json's dtype, in DTYPE, one
    shard in memory at a time; a shard already in DTYPE is left as written."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    target = getattr(torch, DTYPES[dtype])
    total = 0
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(path, "pt") as f:
            metadata = f.metadata() or {"format": "pt"}
        tensors = load_file(path)
        stale = [n for n, t in tensors.items() if t.is_floating_point() and t.dtype != target]
        for name in stale:
            cast = tensors[name].to(target)
            if not torch.isfinite(cast).all() and torch.isfinite(tensors[name]).all():
                raise GrpoError(
                    f"--dtype {dtype}: weight {name} exceeds the {dtype} range",
                    "use --dtype bf16 (the range of fp32 at half the size) or --dtype fp32",
                )
            tensors[name] = cast
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        if stale:  # beside, then renamed: the tensors left as they were may map the old file
            save_file(tensors, path.with_name(f".{path.name}.cast"), metadata=metadata)
            os.replace(path.with_name(f".{path.name}.cast"), path)
        del tensors
    config = folder / "config.json"
    if config.is_file():  # transformers 5 reads `dtype`; an older writer's `torch_dtype` too
        data = json.loads(config.read_text(encoding="utf-8"))
        for key in ["dtype"] + [k for k in ("torch_dtype",) if k in data]:
            data[key] = DTYPES[dtype]
        write_atomic(config, json.dumps(data, indent=2, sort_keys=True) + "\n")
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        data = json.loads(index.read_text(encoding="utf-8"))
        data.setdefault("metadata", {})["total_size"] = total
        write_atomic(index, json.dumps(data, indent=2) + "\n")


def export_gguf(model: Any, tokenizer: Any, folder: Path, quants: list[str]) -> None:
    """GGUF files into FOLDER/gguf/. Unsloth writes them beside the directory it is given, so it
    gets a scratch directory inside the staging folder and its results are moved."""
    scratch = folder / "gguf-build"
    try:
        result = model.save_pretrained_gguf(str(scratch), tokenizer, quantization_method=quants)
    except Exception as exc:  # llama.cpp missing or failing to build is the usual cause
        raise GrpoError(
            f"--gguf: Unsloth's GGUF export failed: {type(exc).__name__}: {exc}",
            "Unsloth needs llama.cpp (it builds one in ./llama.cpp: git, cmake, a C compiler "
            "and network); or drop --gguf and convert with llama.cpp's convert_hf_to_gguf.py",
        ) from exc
    built = Path(result["gguf_directory"]) if isinstance(result, dict) else Path(f"{scratch}_gguf")
    (folder / "gguf").mkdir()
    for file in built.iterdir():
        if file.is_file():
            shutil.move(file, folder / "gguf" / file.name)
    shutil.rmtree(built, ignore_errors=True)
    shutil.rmtree(scratch, ignore_errors=True)


def copy_adapter(adapter: Path, folder: Path) -> None:
    for file in sorted(adapter.iterdir()):
        if file.is_file() and file.name not in NOT_PUBLISHED and not file.name.startswith("."):
            shutil.copy2(file, folder / file.name)
