"""Generation for evaluation: transformers batched generation (any device, left padding) or vLLM
on a GPU. Both take chat prompts and return, per prompt, `samples` completions with their token
counts and whether they hit the length limit. `load_engine` picks one and loads the model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from grpo_cli.errors import GrpoError

if TYPE_CHECKING:
    from rich.console import Console

    from grpo_cli.config.schema import GrpoConfig
    from grpo_cli.hardware import Hardware
    from grpo_cli.model_source import ModelSource

Message = dict[str, str]
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM accepts


@dataclass(frozen=True)
class Sampling:
    samples: int = 1
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    max_new_tokens: int = 512
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class Completion:
    text: str
    tokens: int
    truncated: bool  # stopped by max_new_tokens, not by the end-of-turn token


class Engine(Protocol):
    """What evaluation generates with: TransformersEngine or VllmEngine."""

    name: str

    def generate(
        self, prompts: list[list[Message]], sampling: Sampling
    ) -> list[list[Completion]]: ...


def prompt_ids(tokenizer: Any, prompts: list[list[Message]]) -> list[list[int]]:
    """Chat prompts as token ids with the generation prompt, as the model saw them in training;
    both engines generate from these. The rendered chat already holds every special token it
    needs (Llama 3's starts with <|begin_of_text|>), so tokenizing it adds none: a tokenizer that
    adds its BOS by default would otherwise begin the prompt with two."""
    texts = [
        tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]
    ids: list[list[int]] = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return ids


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """End-of-turn ids: the tokenizer's eos and the generation config's (Qwen stops on either
    <|im_end|> or <|endoftext|>, Llama 3 on <|eot_id|> or <|end_of_text|>)."""
    ids: list[int] = []
    config = getattr(model, "generation_config", None)
    for value in (tokenizer.eos_token_id, getattr(config, "eos_token_id", None)):
        for token in value if isinstance(value, list) else [value]:
            if token is not None and token not in ids:
                ids.append(int(token))
    return ids


# Knobs that change which token is picked or when generation stops, at the value that leaves
# decoding alone. transformers 5 fills every knob a call leaves at None from the model's
# generation_config.json (transformers/generation/utils.py: _prepare_generation_config, update with
# defaults_only=True), so Qwen2.5-Instruct's repetition_penalty 1.05 and top_k 20 would apply to
# eval but not to training: TRL samples with repetition_penalty 1.0, top_k 0 and min_p None
# (trl/trainer/grpo_trainer.py: generation_kwargs; trl/trainer/grpo_config.py defaults). A keyword
# argument is applied last, after those fills, so each knob is passed explicitly.
NEUTRAL_DECODING: dict[str, Any] = {
    "repetition_penalty": 1.0,
    "top_k": None,  # the last update sets None as is: no top-k, as TRL's top_k 0
    "min_p": None,
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "no_repeat_ngram_size": 0,
    "encoder_repetition_penalty": 1.0,
    "encoder_no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "sequence_bias": None,
    "min_length": 0,
    "min_new_tokens": None,
    "length_penalty": 1.0,
    "num_beams": 1,
    "exponential_decay_length_penalty": None,
    "renormalize_logits": False,
    "stop_strings": None,
}
# What a generation_config.json may set that is not decoding: kept from the model.
NOT_DECODING = frozenset(
    {
        "bos_token_id",
        "decoder_start_token_id",
        "transformers_version",
        "_from_model_config",
        "use_cache",
        "cache_implementation",
        "cache_config",
        "compile_config",
        "disable_compile",
        "max_length",  # max_new_tokens, always passed, takes precedence
    }
)


def decoding_kwargs(
    sampling: Sampling, model_config: Any, stop: list[int], pad: int | None
) -> dict[str, Any]:
    """`model.generate` keywords that decode exactly as SAMPLING says (greedy, or temperature and
    top_p as in training) and take nothing from MODEL_CONFIG, the model's generation config:
    every knob it or transformers' defaults could add is set to its neutral value."""
    from transformers import GenerationConfig

    known = GenerationConfig()
    # transformers 5's fallbacks (generation/configuration_utils.py); older versions have none
    defaults: dict[str, Any] = getattr(GenerationConfig, "_get_default_generation_params", dict)()
    model_keys = set(model_config.to_diff_dict()) if model_config is not None else set()
    kwargs: dict[str, Any] = {}
    for key in sorted(set(NEUTRAL_DECODING) | model_keys):
        # an unknown key would be handed to the model's forward as an input
        if key not in NOT_DECODING and hasattr(known, key):
            kwargs[key] = NEUTRAL_DECODING.get(key, defaults.get(key))
    kwargs.update(
        max_new_tokens=sampling.max_new_tokens,
        num_return_sequences=sampling.samples,
        eos_token_id=stop,
        pad_token_id=pad,
        do_sample=not sampling.greedy,
        temperature=None if sampling.greedy else sampling.temperature,
        top_p=None if sampling.greedy else sampling.top_p,
    )
    return kwargs


def describe_decoding(sampling: Sampling) -> str:
    """The one line eval prints: how it decodes, all of it from the config and the flags."""
    if sampling.greedy:
        how = "greedy"
    else:
        how = f"sampling at temperature {sampling.temperature:g}, top_p {sampling.top_p:g}"
        how += f", k={sampling.samples}, seed {sampling.seed}"
    return (
        f"decoding: {how}, max {sampling.max_new_tokens} new tokens; nothing from the model's "
        "generation_config.json (no repetition penalty, no top_k)"
    )


class TransformersEngine:
    """`model.generate` on a batch of left-padded prompts; runs on CPU as well as GPUs."""

    name = "transformers"

    def __init__(self, model: Any, tokenizer: Any):
        self.model, self.tokenizer = model, tokenizer
        self.stop = stop_token_ids(model, tokenizer)

    def generate(self, prompts: list[list[Message]], sampling: Sampling) -> list[list[Completion]]:
        import torch

        tok = self.tokenizer
        ids = prompt_ids(tok, prompts)
        batch = tok.pad({"input_ids": ids}, padding=True, return_tensors="pt").to(self.model.device)
        kwargs = decoding_kwargs(
            sampling, getattr(self.model, "generation_config", None), self.stop, tok.pad_token_id
        )
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                out = self.model.generate(**batch, **kwargs)
        finally:
            self.model.train(was_training)
        new = out[:, batch["input_ids"].shape[1] :].tolist()
        completions = [self._completion(ids, sampling.max_new_tokens) for ids in new]
        k = sampling.samples
        return [completions[i * k : (i + 1) * k] for i in range(len(prompts))]

    def _completion(self, ids: list[int], limit: int) -> Completion:
        end = next((i for i, t in enumerate(ids) if t in self.stop), None)
        kept = ids if end is None else ids[:end]
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        return Completion(text, len(kept) + (end is not None), end is None and len(ids) >= limit)


class VllmEngine:
    """vLLM offline generation on a GPU; an adapter is served through vLLM's LoRA support."""

    name = "vllm"

    def __init__(
        self,
        model: str,
        tokenizer: Any,
        *,
        adapter: str | None,
        lora_rank: int,
        revision: str | None,
        trust_remote_code: bool,
        max_model_len: int,
        tensor_parallel_size: int = 1,
    ):
        from vllm import LLM

        self.tokenizer, self.adapter = tokenizer, adapter
        self.llm = LLM(
            model=model,
            revision=revision,
            trust_remote_code=trust_remote_code,
            enable_lora=adapter is not None,
            max_lora_rank=next((r for r in VLLM_LORA_RANKS if r >= lora_rank), lora_rank),
            max_model_len=max_model_len,
            # the model split over this many GPUs (vllm/engine/arg_utils.py: EngineArgs)
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=0.85,
            # "auto" (vLLM's default since 0.8) makes the model's generation_config.json the
            # default sampling (vllm/config/model.py: generation_config; vLLM PR 11164);
            # "vllm" loads none of it, so only the SamplingParams below decide.
            generation_config="vllm",
        )

    def generate(self, prompts: list[list[Message]], sampling: Sampling) -> list[list[Completion]]:
        from vllm import SamplingParams

        lora = None
        if self.adapter is not None:
            from vllm.lora.request import LoRARequest

            lora = LoRARequest("adapter", 1, self.adapter)
        params = SamplingParams(
            n=sampling.samples,
            temperature=sampling.temperature,
            top_p=1.0 if sampling.greedy else sampling.top_p,
            # explicit, though SamplingParams' own defaults: what training samples with
            top_k=-1,
            min_p=0.0,
            repetition_penalty=1.0,
            max_tokens=sampling.max_new_tokens,
            seed=sampling.seed,
        )
        # Token ids, not text: vLLM 0.31 tokenizes a text prompt with add_special_tokens=True
        # (vllm/renderers/base.py, default_cmpl_tok_params), which puts a second BOS before
        # Llama 3's rendered chat. A dict with prompt_token_ids is vLLM's TokensPrompt
        # (vllm/inputs/llm.py), which _tokenize_singleton_prompt passes on untokenized.
        tokens = [{"prompt_token_ids": ids} for ids in prompt_ids(self.tokenizer, prompts)]
        outputs = self.llm.generate(tokens, params, lora_request=lora, use_tqdm=False)
        return [
            [Completion(c.text, len(c.token_ids), c.finish_reason == "length") for c in o.outputs]
            for o in outputs
        ]


def choose_engine(
    engine: str, hw: Hardware, vllm_installed: bool, tensor_parallel_size: int = 1
) -> str:
    """The engine `--engine ENGINE` means here: auto is vLLM on a CUDA GPU when installed, else
    transformers. A model split over several GPUs (TENSOR_PARALLEL_SIZE) is vLLM's alone:
    transformers generation runs on one device."""
    can_vllm = hw.device == "cuda" and vllm_installed
    tp = tensor_parallel_size
    if tp > 1 and engine == "transformers":
        raise GrpoError(
            f"--tensor-parallel-size {tp} splits the model over GPUs with vLLM; --engine "
            "transformers generates on one device",
            "use --engine vllm (or auto), or drop --tensor-parallel-size",
        )
    if tp > 1 and not can_vllm:
        why = "vllm is not installed"
        if hw.device != "cuda":
            why = f"this machine has {hw.describe()}"
        raise GrpoError(
            f"--tensor-parallel-size {tp} needs vLLM on {tp} CUDA GPUs: {why}",
            f"pip install -e '.[gpu]' on a machine with {tp} GPUs, or drop --tensor-parallel-size",
        )
    if tp > max(hw.gpu_count, 1):
        raise GrpoError(
            f"--tensor-parallel-size {tp} needs {tp} GPUs, and {hw.gpu_count} are visible here",
            f"lower it to {hw.gpu_count}, or show more GPUs (CUDA_VISIBLE_DEVICES)",
        )
    if engine == "auto":
        return "vllm" if can_vllm else "transformers"
    if engine == "vllm" and not can_vllm:
        raise GrpoError(
            "--engine vllm needs a CUDA GPU and vllm installed",
            "pip install -e '.[gpu]' on a GPU machine, or use --engine transformers",
        )
    return engine


def load_engine(
    source: ModelSource,
    cfg: GrpoConfig,
    engine: str,
    console: Console,
    tensor_parallel_size: int = 1,
) -> Engine:
    """The engine choose_engine picks, with the model loaded; CFG is the model's run config (its
    LoRA rank and sequence length)."""
    from grpo_cli.hardware import installed, probe

    hw = probe()
    engine = choose_engine(engine, hw, installed("vllm"), tensor_parallel_size)
    from grpo_cli.model_loading import load_tokenizer
    from grpo_cli.training.models import ready_for_generation

    tokenizer = ready_for_generation(load_tokenizer(source), source.base)
    console.print(f"{source.label}: generating with {engine} on {hw.describe()}", markup=False)
    if source.base_note("evaluating on"):
        console.print(f"{source.label}: {source.base_note('evaluating on')}", markup=False)
    if engine == "vllm":
        from functools import partial

        from grpo_cli.hub_access import cache_first

        adapter = str(source.adapter) if source.adapter else None
        vllm_engine = partial(
            VllmEngine,
            source.base,
            tokenizer,
            adapter=adapter,
            lora_rank=cfg.lora.r,
            revision=source.revision,
            trust_remote_code=source.trust_remote_code,
            max_model_len=cfg.model.max_seq_length,
            tensor_parallel_size=tensor_parallel_size,
        )
        # vLLM fetches the weights itself (huggingface_hub): from the cache first, as the others
        return cache_first(
            vllm_engine, source.base, key=source.base_origin, revision=source.revision
        )
    return TransformersEngine(load_transformers_model(source, hw), tokenizer)


def load_transformers_model(source: ModelSource, hw: Hardware) -> Any:
    """The model in 16 bit on a GPU (bf16 where supported), fp32 on CPU; an adapter is merged
    into it for generation speed. Quantized training weights are not reproduced: the adapter
    is evaluated on the 16-bit base, as `grpo merge` ships it."""
    import torch

    from grpo_cli.model_loading import load_model

    dtype = torch.float32
    if hw.device == "cuda":
        dtype = torch.bfloat16 if hw.bf16 else torch.float16
    model = load_model(source, dtype)
    if hw.device in ("cuda", "mps"):
        model = model.to(hw.device)
    return model.eval()
