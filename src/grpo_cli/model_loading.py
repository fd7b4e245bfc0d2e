"""Loading a resolved model (`grpo_cli.model_source`) for `grpo eval` and `grpo merge`: the base
from the local Hugging Face cache first (the weights the run trained on, offline, without the
Hub's retries when it is unreachable), the adapter applied, the tokenizer it was trained with.
Every failure becomes a user error whose hint names the cause (`training.models.load_error`)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from grpo_cli.config.schema import looks_like_path
from grpo_cli.errors import GrpoError
from grpo_cli.hub_access import cache_first
from grpo_cli.model_source import ModelSource
from grpo_cli.training.models import model_load_error

GPU_EXTRA = "pip install -e '.[gpu]'"


def from_pretrained(kind: str, source: ModelSource, what: str = "model", **kwargs: Any) -> Any:
    """transformers' AutoConfig / AutoModelForCausalLM / AutoTokenizer of the base model."""
    import transformers

    loader = getattr(transformers, kind).from_pretrained
    kwargs |= {"revision": source.revision, "trust_remote_code": source.trust_remote_code}
    try:
        return cache_first(
            partial(loader, source.base, **kwargs),
            source.base,
            key=source.base_origin,
            revision=source.revision,
        )
    except GrpoError:
        raise
    except Exception as exc:
        origin, revision = source.base_origin, source.revision
        raise model_load_error(source.base, what, exc, key=origin, revision=revision) from exc


def load_tokenizer(source: ModelSource) -> Any:
    """The tokenizer saved with the adapter (as trained, chat template included), else the
    base's; as saved, for `grpo merge` to write out unchanged."""
    if source.adapter is not None and (source.adapter / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(source.adapter)
        except Exception as exc:
            raise model_load_error(str(source.adapter), "tokenizer", exc, key=source.arg) from exc
    return from_pretrained("AutoTokenizer", source, "tokenizer")


def load_model(source: ModelSource, dtype: Any) -> Any:
    """The base in DTYPE with the adapter merged into it (PEFT merge_and_unload; safe_merge
    refuses NaN or infinite weights rather than writing or evaluating a broken model)."""
    model = from_pretrained("AutoModelForCausalLM", source, dtype=dtype)
    if source.adapter is None:
        return model
    from peft import PeftModel

    try:
        adapted = PeftModel.from_pretrained(model, str(source.adapter))
    except Exception as exc:
        raise model_load_error(str(source.adapter), "adapter", exc, key=source.arg) from exc
    try:
        return adapted.merge_and_unload(safe_merge=True)
    except ValueError as exc:
        raise GrpoError(
            f"{source.adapter}: merging the adapter gives broken weights ({exc})",
            "the adapter holds NaN or infinite values (the run diverged): use an earlier "
            "checkpoint",
        ) from exc


def check_local_base(source: ModelSource) -> None:
    if looks_like_path(source.base) and not Path(source.base).expanduser().is_dir():
        raise GrpoError(
            f"base model {source.base} not found (from {source.base_origin})",
            "run the command from the folder you trained in, or point that key at the model",
        )


def check_unquantized_base(source: ModelSource) -> None:
    """The base loads in 16 bit: a local folder that exists, a Hub model stored unquantized."""
    check_local_base(source)
    config = from_pretrained("AutoConfig", source)
    quantization = getattr(config, "quantization_config", None)
    if quantization:
        method = getattr(quantization, "quant_method", None) or quantization.get("quant_method")
        raise GrpoError(
            f"base model {source.base} is stored quantized ({method}); merging into quantized "
            "weights gives a broken model",
            f"point {source.base_origin} at the 16-bit original (e.g. without -bnb-4bit), or "
            f"{GPU_EXTRA} so Unsloth maps it to its 16-bit weights",
        )
