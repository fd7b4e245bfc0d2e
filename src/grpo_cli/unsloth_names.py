"""Unsloth's model-name tables (unsloth/models/mapper.py): the repo Unsloth loads instead of a
name for a quantization, and the 16-bit original of a pre-quantized copy. One reader for the
preflight (which repo would be downloaded, whether an FP8 copy exists) and for eval and merge
(the 16-bit base of an adapter trained on a 4-bit copy). The tables are read as data: importing
unsloth patches torch and transformers and needs a GPU stack."""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path
from typing import Any

from grpo_cli.config.schema import looks_like_path


@functools.cache
def tables() -> dict[str, Any]:
    """The installed Unsloth's mapper tables by name ({} without unsloth): the public ones it
    exports (INT_TO_FLOAT_MAPPER, FLOAT_TO_INT_MAPPER, MAP_TO_UNSLOTH_16bit,
    FLOAT_TO_FP8_BLOCK_MAPPER, FLOAT_TO_FP8_ROW_MAPPER) and the source table they are built from
    (__INT_TO_FLOAT_MAPPER). mapper.py is a data module without imports; it is run, not
    imported as part of unsloth."""
    spec = importlib.util.find_spec("unsloth")
    folders = list(spec.submodule_search_locations or []) if spec else []
    path = Path(folders[0]) / "models" / "mapper.py" if folders else None
    if path is None or not path.is_file():
        return {}
    module_spec = importlib.util.spec_from_file_location("_grpo_unsloth_mapper", path)
    if module_spec is None or module_spec.loader is None:
        return {}
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception:  # a layout this reader does not know: the callers' fallbacks decide
        return {}
    found = {name: getattr(module, name) for name in getattr(module, "__all__", [])}
    source = getattr(module, "__INT_TO_FLOAT_MAPPER", None)
    if isinstance(source, dict):
        found["__INT_TO_FLOAT_MAPPER"] = source
    return found


def unsloth_repo(name: str, quantization: str) -> str | None:
    """The repo Unsloth's FastLanguageModel loads instead of NAME for this quantization (its
    4-bit, 16-bit or FP8 copy), or None when it loads NAME itself. Mirrors
    unsloth/models/loader_utils.py, __get_model_name, over the installed mapper tables; read
    without importing unsloth, which needs a GPU."""
    found_in, lower = tables(), name.lower()
    if quantization == "fp8":
        found = fp8_copy(name)
    elif quantization == "4bit":
        found = (
            None
            if lower.endswith("-bnb-4bit")
            else found_in.get("FLOAT_TO_INT_MAPPER", {}).get(lower)
        )
    else:
        found = found_in.get("INT_TO_FLOAT_MAPPER", {}).get(lower) or found_in.get(
            "MAP_TO_UNSLOTH_16bit", {}
        ).get(lower)
    return found if found is not None and found.lower() != lower else None


def fp8_copy(name: str) -> str | None:
    """Unsloth's pre-quantized FP8 repo for NAME (NAME itself when it is one). The block and
    row tables hold the same names; the row one is used only with FBGEMM."""
    return tables().get("FLOAT_TO_FP8_BLOCK_MAPPER", {}).get(name.lower())


# The suffixes of Unsloth's pre-quantized uploads: unsloth/X-bnb-4bit, unsloth/X-unsloth-bnb-4bit
# (dynamic 4-bit), unsloth/X-FP8-Block, unsloth/X-FP8-Dynamic; X is the 16-bit original's name.
QUANTIZED_SUFFIX = re.compile(r"-(unsloth-)?bnb-4bit$|-fp8(-block|-dynamic)?$", re.IGNORECASE)


def sixteen_bit_original(name: str) -> str | None:
    """The 16-bit model a pre-quantized Hub id was made from, as Unsloth loads it with
    load_in_4bit=False; None when NAME is not a pre-quantized id (or is a folder)."""
    if looks_like_path(name):
        return None
    known = originals().get(name.lower())
    if known is not None:
        return known
    owner, _, repo = name.partition("/")
    if owner.lower() == "unsloth" and QUANTIZED_SUFFIX.search(repo):
        return f"{owner}/{QUANTIZED_SUFFIX.sub('', repo)}"
    return None


@functools.cache
def originals() -> dict[str, str]:
    """pre-quantized name (lower case) -> 16-bit original, from __INT_TO_FLOAT_MAPPER; {}
    without unsloth. Each entry is `4-bit name: (16-bit, official 16-bit, other 4-bit ...)`, or a
    dict whose "16" is that tuple and whose "8" is (official FP8, FP8-Block, FP8-Dynamic); the
    first 16-bit name is what Unsloth itself loads for any of them. The public
    INT_TO_FLOAT_MAPPER holds only the first kind of key."""
    found: dict[str, str] = {}
    try:
        for key, values in tables().get("__INT_TO_FLOAT_MAPPER", {}).items():
            sixteen = values["16"] if isinstance(values, dict) else values
            eight = (values.get("8") or ()) if isinstance(values, dict) else ()
            quantized = [key, *sixteen[2:]] if key.lower().endswith("bnb-4bit") else sixteen[2:]
            for name in [*quantized, *eight]:
                if name and name != sixteen[0]:
                    found[name.lower()] = sixteen[0]
    except (LookupError, TypeError, AttributeError):
        return {}  # a layout this reader does not know: the suffix rule
    return found
