"""Base model, tokenizer and LoRA adapter for each backend.

trl: transformers `AutoModelForCausalLM` (bitsandbytes 4/8-bit on CUDA) + PEFT `get_peft_model`.
unsloth: `FastLanguageModel.from_pretrained` + `get_peft_model`; unsloth must be imported before
trl, transformers and peft, so `import_unsloth_first()` runs before anything else of training.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

from grpo_cli.config.schema import GrpoConfig, looks_like_path
from grpo_cli.distributed import current
from grpo_cli.errors import GrpoError, causes, first_line
from grpo_cli.files import file_damage, storage_error
from grpo_cli.hub_access import (
    OFFLINE_SET,
    cache_first,
    hub_offline,
    network_failure,
    offline_hint,
    token_present,
)

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def quiet_progress_bars() -> None:
    """grpo draws its own progress; the libraries' loading and saving bars would bury it."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


STANDBY = "UNSLOTH_VLLM_STANDBY"
STANDBY_OVERRIDE = "UNSLOTH_VLLM_STANDBY_UTIL_OVERRIDE"
UNSLOTH_VLLM_SHARE = 0.5  # FastLanguageModel.from_pretrained's gpu_memory_utilization default


def vllm_memory_share(cfg: GrpoConfig, gpu_memory_gib: float | None) -> tuple[float | None, str]:
    """The share of GPU memory Unsloth's colocated vLLM takes (model.fast_inference), and where
    it comes from; None when only the GPU, unknown here, decides. Pure, so `grpo doctor` can
    size a run before anything is loaded."""
    if cfg.model.gpu_memory_utilization is not None:
        return cfg.model.gpu_memory_utilization, "model.gpu_memory_utilization"
    if os.environ.get(STANDBY, "1") == "0":  # the user turned standby off: unsloth's default
        return UNSLOTH_VLLM_SHARE, f"Unsloth's default, as {STANDBY}=0"
    tail = "model.gpu_memory_utilization sets it"
    if gpu_memory_gib is None:
        return None, f"Unsloth's standby share for this GPU; {tail}"
    share = standby_share(gpu_memory_gib)
    return share, f"Unsloth's standby share for a {gpu_memory_gib:.0f} GiB GPU; {tail}"


def vllm_memory_line(cfg: GrpoConfig, gpu_memory_gib: float | None) -> str:
    """The line `grpo train` prints: vLLM gpu_memory_utilization: 0.7 (model.gpu_memory_...)."""
    share, source = vllm_memory_share(cfg, gpu_memory_gib)
    if share is None:
        return f"vLLM gpu_memory_utilization: {source}"
    return f"vLLM gpu_memory_utilization: {share:.3g} ({source})"


def standby_share(gpu_memory_gib: float) -> float:
    """The share unsloth_zoo gives vLLM in standby mode (vLLM >= 0.11), by the GPU's size:
    unsloth_zoo/vllm_utils.py (load_vllm: standby_target_gpu_util, its tiers by a tenth of
    the memory, times 0.95). The shares of common GPUs are quoted once, in
    model.gpu_memory_utilization's description, and a test computes them here."""
    tenth = gpu_memory_gib * 0.1
    tiers = ((4.0, 0.925), (2.5, 0.9), (2.0, 0.825), (1.4, 0.8), (1.0, 0.775))
    share = next((s for floor, s in tiers if tenth >= floor), 0.75)
    return share * 0.95


def import_unsloth_first() -> Any:
    """Import unsloth before trl / transformers / peft so its patches apply to them."""
    os.environ.setdefault(STANDBY, "1")  # vLLM sleeps while the trainer steps
    try:
        import unsloth
    except Exception as exc:  # unsloth raises plain exceptions when the GPU stack is off
        raise GrpoError(
            f"model.backend unsloth: importing unsloth failed: {type(exc).__name__}: {exc}",
            "pip install -e '.[gpu]' on a CUDA machine, or set model.backend: trl",
        ) from exc
    return unsloth


def load_tokenizer(cfg: GrpoConfig) -> Any:
    """model.name's tokenizer; a grpo sft run's is the one it saved with its weights (the
    chat template it was warmed up with)."""
    from transformers import AutoTokenizer

    from grpo_cli.model_source import sft_run, start_weights

    m = cfg.model
    name, revision = start_weights(m.name, m.revision)
    sft = sft_run(m.name)
    if sft is not None and (sft.tokenizer / "tokenizer_config.json").is_file():
        name, revision = str(sft.tokenizer), None
    try:
        tokenizer = cache_first(
            partial(
                AutoTokenizer.from_pretrained,
                name,
                revision=revision,
                trust_remote_code=m.trust_remote_code,
            ),
            name,
            key="model.name",
            revision=revision,
        )
    except GrpoError:
        raise
    except Exception as exc:
        raise load_error(cfg, "tokenizer", exc) from exc
    return ready_for_generation(tokenizer, m.name)


def starting_point(cfg: GrpoConfig) -> str | None:
    """What training starts from when model.name is a grpo sft run, said before it loads."""
    from grpo_cli.model_source import sft_run

    sft = sft_run(cfg.model.name)
    if sft is None:
        return None
    then = "continuing its LoRA adapter" if sft.adapter else "with a new LoRA adapter (lora:)"
    return f"starting from {sft.describe()}, {then}"


def ready_for_generation(tokenizer: Any, name: str) -> Any:
    """Padding for batched generation, and a chat template for the prompts (training and eval)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # generation appends to the right of every prompt
    if not getattr(tokenizer, "chat_template", None):
        raise GrpoError(
            f"model.name: the tokenizer of {name} has no chat template",
            "GRPO prompts are chat messages: use an instruct model (e.g. Qwen/Qwen2.5-3B-Instruct)",
        )
    return tokenizer


def load_trl_model(cfg: GrpoConfig, precision: str, with_lora: bool = True) -> Any:
    """A transformers model with a fresh LoRA adapter (PEFT), ready for GRPOTrainer; from a LoRA
    grpo sft run, its base with the run's adapter, trainable, to go on training it. Without
    WITH_LORA, the bare model, every weight trainable (grpo sft's full fine-tuning)."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    from grpo_cli.model_source import sft_run, start_weights

    m, lora = cfg.model, cfg.lora
    name, revision = start_weights(m.name, m.revision)
    sft = sft_run(m.name)
    kwargs: dict[str, Any] = {
        "revision": revision,
        "trust_remote_code": m.trust_remote_code,
        "dtype": getattr(torch, DTYPES[precision]),
    }
    if m.quantization in ("4bit", "8bit"):
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = (
            BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=kwargs["dtype"],
            )
            if m.quantization == "4bit"
            else BitsAndBytesConfig(load_in_8bit=True)
        )
        # bitsandbytes weights are placed at load: each process on its own GPU (accelerate and
        # torchrun give each one LOCAL_RANK), not every process on GPU 0
        kwargs["device_map"] = {"": current().local_rank}
    try:
        model = cache_first(
            partial(AutoModelForCausalLM.from_pretrained, name, **kwargs),
            name,
            key="model.name",
            revision=revision,
        )
    except GrpoError:
        raise
    except Exception as exc:
        raise load_error(cfg, "model", exc) from exc
    if not with_lora:  # quantized weights cannot be trained whole: sft.method full refuses them
        return model
    if m.quantization in ("4bit", "8bit"):
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=bool(lora.gradient_checkpointing)
        )
    if sft is not None and sft.adapter is not None:
        # PEFT loads an adapter frozen unless is_trainable (peft/peft_model.py,
        # PeftModel.from_pretrained). GRPOTrainer takes the PeftModel as it is and refuses a
        # second peft_config with it (trl/trainer/grpo_trainer.py); with beta > 0 it copies
        # this adapter as the reference, so KL is measured against the warmed-up model.
        try:
            return PeftModel.from_pretrained(model, str(sft.adapter), is_trainable=True)
        except Exception as exc:
            raise model_load_error(str(sft.adapter), "adapter", exc, key="model.name") from exc
    torch.manual_seed(lora.random_state)  # the adapter's initial weights
    return get_peft_model(model, LoraConfig(**lora_kwargs(cfg), task_type="CAUSAL_LM"))


def load_unsloth_model(cfg: GrpoConfig, precision: str) -> tuple[Any, Any]:
    """Unsloth's model and tokenizer with its LoRA adapter (and colocated vLLM when asked)."""
    import torch
    from unsloth import FastLanguageModel

    from grpo_cli.model_source import sft_run, start_weights

    m, lora = cfg.model, cfg.lora
    name, revision = start_weights(m.name, m.revision)
    sft = sft_run(m.name)
    if sft is not None and sft.adapter is not None:
        # Given an adapter folder, Unsloth loads the base it names and the adapter trainable
        # (unsloth/models/loader.py, FastLanguageModel.from_pretrained: PeftModel.from_pretrained
        # with is_trainable=True); get_peft_model below then keeps it, its settings being the
        # adapter's (config/checks.py, continued_adapter_problems; unsloth/models/llama.py:
        # "Already have LoRA adapters! We shall skip this step").
        name = str(sft.adapter)
    kwargs: dict[str, Any] = {
        "model_name": name,
        "max_seq_length": m.max_seq_length,
        "dtype": getattr(torch, DTYPES[precision]),
        "load_in_4bit": m.quantization == "4bit",
        "load_in_8bit": m.quantization == "8bit",
        "fast_inference": m.fast_inference,
        "trust_remote_code": m.trust_remote_code,
    }
    if m.quantization == "fp8":
        kwargs["load_in_fp8"] = True
    if revision:
        kwargs["revision"] = revision
    if m.fast_inference:
        kwargs["max_lora_rank"] = m.max_lora_rank
        if m.gpu_memory_utilization is not None:
            kwargs["gpu_memory_utilization"] = m.gpu_memory_utilization
        # unsloth_zoo/vllm_utils.py (load_vllm) replaces the share by its standby tier unless
        # UNSLOTH_VLLM_STANDBY_UTIL_OVERRIDE is set; it reads the variable at each load, so the
        # config decides it here, both ways (a value left from an earlier load does not leak).
        os.environ[STANDBY_OVERRIDE] = "0" if m.gpu_memory_utilization is None else "1"
    try:
        # Unsloth may load its own 4-bit copy of model.name: cache_first tries the cache before
        # refusing even when model.name itself is not there
        model, tokenizer = cache_first(
            partial(FastLanguageModel.from_pretrained, **kwargs),
            start_weights(m.name, m.revision)[0],
            key="model.name",
            revision=revision,
        )
    except GrpoError:
        raise
    except Exception as exc:
        raise load_error(cfg, "model", exc) from exc
    peft = lora_kwargs(cfg)
    model = FastLanguageModel.get_peft_model(
        model,
        r=peft["r"],
        lora_alpha=peft["lora_alpha"],
        lora_dropout=peft["lora_dropout"],
        target_modules=peft["target_modules"],
        use_rslora=peft["use_rslora"],
        use_gradient_checkpointing=lora.gradient_checkpointing,
        random_state=lora.random_state,
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def saved_without_hub_lookup(model: Any) -> Any:
    """MODEL, whose checkpoints and adapter are saved without a question to the Hub. PEFT's
    save_pretrained, left at save_embedding_layers="auto", asks the Hub on every save whether
    the base's config.json exists, to see if the vocabulary was resized
    (peft/utils/save_and_load.py, get_peft_model_state_dict; peft/utils/other.py,
    check_file_exists_on_hf_hub): a request per checkpoint from a run whose model loaded from
    the cache, waiting out its timeout behind a firewall. grpo never resizes the embeddings, so
    the answer is known. Embeddings named in target_modules keep PEFT's own rule (saved)."""
    import functools

    from peft.utils.constants import EMBEDDING_LAYER_NAMES

    configs = getattr(model, "peft_config", None)
    if not configs:  # not a PEFT model: nothing of PEFT's to answer for
        return model
    for config in configs.values():
        targets = config.target_modules or []
        names = [targets] if isinstance(targets, str) else list(targets)
        if any(embedding in name for name in names for embedding in EMBEDDING_LAYER_NAMES):
            return model
    model.save_pretrained = functools.partial(model.save_pretrained, save_embedding_layers=False)
    return model


def lora_kwargs(cfg: GrpoConfig) -> dict[str, Any]:
    lora = cfg.lora
    return {
        "r": lora.r,
        "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout,
        "target_modules": lora.target_modules,
        "use_rslora": lora.rslora,
    }


def load_error(cfg: GrpoConfig, what: str, exc: Exception) -> GrpoError:
    from grpo_cli.model_source import start_weights

    name, revision = start_weights(cfg.model.name, cfg.model.revision)
    return model_load_error(name, what, exc, key="model.name", revision=revision)


def model_load_error(
    name: str,
    what: str,
    exc: Exception,
    *,
    key: str,
    revision: str | None = None,
) -> GrpoError:
    """A failed from_pretrained of NAME as a user error; its hint names the cause: a damaged file
    (in the local folder or the Hub cache), a folder that is no model, the Hub's answer (gated,
    missing, no such revision), no network, a missing package or an Unsloth refusal."""
    chain = causes(exc)
    for cause in chain:
        if isinstance(cause, OSError) and (storage := storage_error(cause)) is not None:
            return storage  # a full disk or an unwritable cache while downloading: not the model
    if any(_out_of_memory(cause) for cause in chain):
        return GrpoError(
            f"{key}: not enough memory to load the {what} of {name}: {first_line(exc)}",
            "use a smaller model, or quantized weights (model.quantization: 4bit on a GPU), or "
            "free the memory other processes hold",
        )
    return GrpoError(
        f"{key}: cannot load the {what} of {name}: {type(exc).__name__}: {first_line(exc)}",
        load_hint(name, key, revision, exc),
    )


def _out_of_memory(exc: BaseException) -> bool:
    # torch.OutOfMemoryError, or the RuntimeError text older CUDA paths still raise
    return (
        isinstance(exc, MemoryError)
        or type(exc).__name__ == "OutOfMemoryError"
        or "CUDA out of memory" in str(exc)
    )


def load_hint(name: str, key: str, revision: str | None, exc: BaseException | None = None) -> str:
    """What to do about a failed load of NAME (set by KEY); EXC, when given, names the cause."""
    chain = causes(exc) if exc is not None else []
    setup = _setup_hint(key, chain)
    if setup is not None:
        return setup
    local = Path(name).expanduser()
    if local.is_dir():
        damaged = damaged_file(local)
        if damaged is not None and (local / "adapter_config.json").is_file():
            return (
                f"{damaged[0]} is damaged ({damaged[1]}): the save was interrupted or the copy is "
                "incomplete; copy the folder again, use a checkpoint of the run, or train again"
            )
        if damaged is not None:
            return f"{damaged[0]} is damaged ({damaged[1]}): copy or save the model folder again"
        if not any((local / f).is_file() for f in ("config.json", "adapter_config.json")):
            return (
                f"{name} is a folder but not a model (no config.json): point {key} at a folder "
                "written by save_pretrained, or at a Hub id"
            )
        return (
            f"{name} holds a model this version cannot read: it may need a newer transformers, "
            "or model.trust_remote_code: true"
        )
    if looks_like_path(name):
        return f"{name} does not exist: point {key} at a model folder or a Hub id"
    hub = _hub_hint(name, key, revision, chain)
    if hub is not None:
        return hub
    cached = _cached_snapshot(name, revision)
    damaged = damaged_file(cached) if cached is not None else None
    if damaged is not None:
        return (
            f"{damaged[0]} in the Hugging Face cache is damaged ({damaged[1]}): delete {cached} "
            "and run again to download it anew"
        )
    return (
        "check the Hub id and your network (HF_TOKEN for gated models); offline, fetch it on a "
        f"connected machine with `hf download {name}`, or point {key} at a local model folder"
    )


def _setup_hint(key: str, chain: list[BaseException]) -> str | None:
    """A cause in this machine's setup, not in the model: a missing package, an Unsloth
    refusal of a setting, a model that runs its own code."""
    import re

    for cause in chain:
        text = str(cause)
        install = re.search(r"pip install [^`'\n]+", text)
        if install is not None:
            return f"a package the load needs is missing: `{install.group(0).strip()}`"
        if isinstance(cause, ImportError):
            missing = getattr(cause, "name", None) or first_line(cause)
            return f"{missing} is not installed or does not import: pip install -e '.[gpu]'"
        if isinstance(cause, NotImplementedError) and "Unsloth" in text:
            # Unsloth refuses unsupported combinations this way (unsloth/models/llama.py,
            # loader_utils.py): the message names the setting; grpo checks the known ones first.
            return (
                "Unsloth does not support this model with these settings (its message above "
                "says which): change that setting, set model.fast_inference: false, or "
                "model.backend: trl"
            )
        if "trust_remote_code" in text:
            return (
                "the model ships its own code: set model.trust_remote_code: true if you trust "
                "its repo"
            )
    return None


def _hub_hint(name: str, key: str, revision: str | None, chain: list[BaseException]) -> str | None:
    """The Hub's answer, or its absence, in words; None when no cause in CHAIN is the Hub's."""
    from huggingface_hub import errors as hub_errors

    for cause in chain:
        if isinstance(cause, hub_errors.GatedRepoError):
            who = "your token has no access to it" if token_present() else "no Hub token is set"
            return (
                f"{name} is gated and {who}: accept its licence at https://huggingface.co/{name}, "
                "then `hf auth login` (or set HF_TOKEN); or use an ungated copy (unsloth/...)"
            )
        if isinstance(cause, hub_errors.RevisionNotFoundError):
            return (
                f"{name} has no revision {revision!r}: set model.revision to a branch, tag or "
                f"commit listed at https://huggingface.co/{name}, or null"
            )
        if isinstance(cause, hub_errors.RepositoryNotFoundError):
            private = "" if token_present() else "; a private repo needs HF_TOKEN"
            return f"the Hub has no model {name}: check the spelling of {key}{private}"
        if isinstance(cause, (hub_errors.OfflineModeIsEnabled, hub_errors.LocalEntryNotFoundError)):
            if hub_offline():
                fix = offline_hint(name, "model", key, OFFLINE_SET)
                return f"HF_HUB_OFFLINE is set and {name} is not in the local cache: {fix}"
            fix = offline_hint(name, "model", key, type(cause).__name__)
            return f"the Hub cannot be reached and {name} is not in the local cache: {fix}"
        if isinstance(cause, hub_errors.HfHubHTTPError):
            status = cause.response.status_code if cause.response is not None else None
            if status == 401:
                return "the Hub refused your token (401): `hf auth login` again, or unset HF_TOKEN"
            if status == 429:
                return "the Hub is rate-limiting this machine (429): set HF_TOKEN, or wait a minute"
            if status is not None and status >= 500:
                fix = offline_hint(name, "model", key, f"HTTP {status}")
                return f"the Hub is failing ({status}): run again later, or {fix}"
        if network_failure(cause):
            down = type(cause).__name__
            return f"the Hub cannot be reached ({down}): {offline_hint(name, 'model', key, down)}"
    return None


def damaged_file(folder: Path) -> tuple[Path, str] | None:
    """The first JSON or safetensors file of FOLDER that cannot be read, and why ("cut short
    ..."), by the rule checkpoints are checked with."""
    for file in sorted([*folder.glob("*.json"), *folder.glob("*.safetensors")]):
        problem = file_damage(file)
        if problem is not None:
            return file, problem.removeprefix("is ")
    return None


def _cached_snapshot(name: str, revision: str | None) -> Path | None:
    """The Hub cache's folder of a model, when any of it was downloaded."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, revision=revision, local_files_only=True))
    except Exception:
        return None
