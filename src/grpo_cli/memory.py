"""An estimate of a run's peak GPU memory, and whether it fits the common GPUs.

`estimate()` adds up what one training step holds on the GPU: base weights by quantization, the
LoRA weights with their gradients and optimizer states, the activations of one micro-batch with
the chosen checkpointing, the logits of the GRPO loss, the generation's KV cache (vLLM or
transformers) and the CUDA context. `fit_table()` sets it against the GPUs users rent, with vLLM's
share computed per GPU by the rule training uses (it is a fraction of each GPU's memory), refuses
what the preflight would refuse on that GPU (fp8, bfloat16), and for a GPU it does not fit proposes
the single settings that would make it fit, each one re-estimated.

Everything is an estimate, calibrated on Unsloth's published figures (tests/test_memory.py holds
each figure and its settings). Pure arithmetic: no torch, no download; the model's shape comes
from a table, a local config.json, or the Hugging Face cache.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grpo_cli.geometry import batch_geometry, geometry_problems
from grpo_cli.hardware import (
    Hardware,
    choose_backend,
    choose_precision,
    hardware_problems,
    native_bf16,
)
from grpo_cli.model_source import start_weights

if TYPE_CHECKING:
    from grpo_cli.config.schema import GrpoConfig

GIB = 2**30


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a decoder's config.json that decide its memory."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool  # lm_head shares the embedding matrix
    head_dim: int = 0  # 0: hidden / heads (Qwen3 sets it apart from hidden)

    @property
    def dim_per_head(self) -> int:
        return self.head_dim or self.hidden // self.heads

    def linear_dims(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer in one decoder layer (Llama / Qwen naming)."""
        h, i, d = self.hidden, self.intermediate, self.dim_per_head
        return {
            "q_proj": (h, self.heads * d),
            "k_proj": (h, self.kv_heads * d),
            "v_proj": (h, self.kv_heads * d),
            "o_proj": (self.heads * d, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    @property
    def linear_params(self) -> int:
        return self.layers * sum(a * b for a, b in self.linear_dims().values())

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def params(self) -> int:
        return self.linear_params + self.embedding_params

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        return self.layers * 2 * self.kv_heads * self.dim_per_head * dtype_bytes


# Each model's config.json on the Hub (num_hidden_layers, hidden_size, intermediate_size,
# num_attention_heads, num_key_value_heads, vocab_size, tie_word_embeddings[, head_dim]).
# Keys are names without owner and without -Instruct / Unsloth's -bnb-4bit / -FP8 suffixes.
KNOWN_SHAPES: dict[str, ModelShape] = {
    "qwen2.5-0.5b": ModelShape(24, 896, 4864, 14, 2, 151936, True),
    "qwen2.5-1.5b": ModelShape(28, 1536, 8960, 12, 2, 151936, True),
    "qwen2.5-3b": ModelShape(36, 2048, 11008, 16, 2, 151936, True),
    "qwen2.5-7b": ModelShape(28, 3584, 18944, 28, 4, 152064, False),
    "qwen2.5-14b": ModelShape(48, 5120, 13824, 40, 8, 152064, False),
    "qwen3-0.6b": ModelShape(28, 1024, 3072, 16, 8, 151936, True, 128),
    "qwen3-1.7b": ModelShape(28, 2048, 6144, 16, 8, 151936, True, 128),
    "qwen3-4b": ModelShape(36, 2560, 9728, 32, 8, 151936, True, 128),
    "qwen3-8b": ModelShape(36, 4096, 12288, 32, 8, 151936, False, 128),
    "llama-3.2-1b": ModelShape(16, 2048, 8192, 32, 8, 128256, True),
    "llama-3.2-3b": ModelShape(28, 3072, 8192, 24, 8, 128256, True),
    "llama-3.1-8b": ModelShape(32, 4096, 14336, 32, 8, 128256, False),
    "mistral-7b-v0.3": ModelShape(32, 4096, 14336, 32, 8, 32768, False),
    "mistral-7b-instruct-v0.3": ModelShape(32, 4096, 14336, 32, 8, 32768, False),
}
_SUFFIXES = (
    "-unsloth-bnb-4bit",
    "-bnb-4bit",
    "-fp8-dynamic",
    "-fp8-block",
    "-fp8",
    "-unsloth",
    "-instruct-2507",
    "-instruct",
    "-base",
    "-it",
)
_SIZE_IN_NAME = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)[bB](?![A-Za-z0-9])")

# Bytes per parameter of the frozen base's linear layers. bitsandbytes nf4 packs two weights a
# byte plus its quantization constants: one absmax per 64 weights, itself 8-bit with double
# quantization (training/models.py sets bnb_4bit_use_double_quant, as Unsloth's 4-bit repos do),
# and an fp32 constant per 256 blocks. Embeddings and lm_head stay 16-bit in every scheme
# (bitsandbytes and Unsloth's FP8 quantize nn.Linear layers inside the decoder only).
_LINEAR_BYTES = {"4bit": 0.5 + 1 / 64 + 4 / (64 * 256), "8bit": 1.0, "fp8": 1.0}
_ADAM_STATES = 2
# Activations one decoder layer keeps for its backward pass, in elements per token: transformers'
# Llama/Qwen layer saves the norms' inputs and outputs, q/k/v/o and the attention output, and the
# MLP's gate, up, activation and product (about 8 x hidden + 4 x intermediate); Unsloth's fused
# RMSNorm, RoPE and SwiGLU kernels recompute most of them (about half). Doubled while that
# layer's backward runs (its activations and their gradients).
_LAYER_ELEMENTS = {"trl": (8, 4), "unsloth": (4, 2)}
# Fixed costs, calibrated on the figures in tests/test_memory.py: the CUDA context, cuBLAS
# workspaces and kernels torch loads (about 0.5 GiB on any GPU), the caching allocator's
# fragmentation (a share of the rest), and vLLM's CUDA graphs, sampler and profiling buffers.
CUDA_CONTEXT_GIB = 0.5
ALLOCATOR_SLACK = 0.08
VLLM_RUNTIME_GIB = 1.5


@dataclass(frozen=True)
class MemoryEstimate:
    parts: list[tuple[str, float]]  # (label, GiB), in the order a reader adds them up
    total_gib: float  # peak estimate with vLLM at the least it can run with
    notes: list[str]  # assumptions, starting with "an estimate: ..."
    # GiB of the parts that live inside vLLM's pool (weights it holds, KV cache, its runtime):
    # on a GPU, vLLM reserves max(this, gpu_memory_utilization x the GPU's memory) instead.
    vllm_min_gib: float = 0.0
    # gpu_memory_utilization in force on any GPU; None when it depends on the GPU (Unsloth's
    # standby share); 0 without colocated vLLM
    vllm_share: float | None = 0.0
    vllm_key: str = ""  # the config key of that share; "" without colocated vLLM
    precision: str = ""
    backend: str = ""
    config: GrpoConfig | None = None  # what was estimated: the fit table re-checks and re-sizes it

    @property
    def known(self) -> bool:
        """False when the model's shape could not be found: nothing was estimated."""
        return bool(self.parts)

    @property
    def colocated(self) -> bool:
        """vLLM runs on the training GPU and reserves a share of it."""
        return bool(self.vllm_key)

    def share_on(self, memory_gib: float) -> float:
        """The gpu_memory_utilization vLLM gets on a GPU of this size: for Unsloth's vLLM, the
        rule training applies (the user's value, Unsloth's default with standby off, else its
        standby tier for the GPU's size)."""
        if self.vllm_key == UNSLOTH_VLLM_KEY and self.config is not None:
            from grpo_cli.training.models import vllm_memory_share

            share, _ = vllm_memory_share(self.config, memory_gib)
            return share or 0.0
        return self.vllm_share or 0.0

    def on_gpu(self, memory_gib: float) -> float:
        """Peak on a GPU of this size: vLLM takes its share of that GPU's memory."""
        if not self.colocated:
            return self.total_gib
        reserved = max(self.vllm_min_gib, self.share_on(memory_gib) * memory_gib)
        return self.total_gib - self.vllm_min_gib + reserved


@dataclass(frozen=True)
class GpuFit:
    gpu: str
    memory_gib: float
    fits: bool
    verdict: str
    suggestions: list[str] = field(default_factory=list)


UNSLOTH_VLLM_KEY = "model.gpu_memory_utilization"


def _gpu(name: str, memory_gib: float, capability: tuple[int, int]) -> Hardware:
    # Native bfloat16 by the rule hardware.probe() reads a real GPU with.
    return Hardware("cuda", name, memory_gib, capability, gpu_count=1, bf16=native_bf16(capability))


# Memory as hardware.probe() reports it (torch's total_memory in GiB, one decimal), a little
# under the marketed size: Unsloth's notebooks print "Max memory: 14.741 GB" on a Colab T4,
# 22.161 on an L4, 39.557 on an A100 40GB, 79.151 on an A100 80GB; the A10G's 23028 MiB and the
# H100's 81559 MiB as nvidia-smi lists them. One figure per GPU, in every string.
GPUS = (
    _gpu("T4", 14.7, (7, 5)),
    _gpu("L4", 22.2, (8, 9)),
    _gpu("A10G", 22.5, (8, 6)),
    _gpu("A100 40GB", 39.6, (8, 0)),
    _gpu("A100 80GB", 79.2, (8, 0)),
    _gpu("H100", 79.6, (9, 0)),
)
# What `pip install -e '.[gpu]'` brings, for judging a GPU this machine does not have: only the
# GPU's own limits (fp8, bfloat16) then remain among the preflight's refusals.
GPU_EXTRA = {
    name: True
    for name in ("unsloth", "vllm", "vllm_4bit", "bitsandbytes", "torchao", "wandb_login")
}


def gpu_run_settings(cfg: GrpoConfig, unsloth_installed: bool) -> tuple[str, str]:
    """(precision, backend) a GPU run of this config would use, to estimate on a machine that
    has none: the same rules as training, on a GPU with bfloat16 (fp16 weighs the same)."""
    gpu = Hardware(device="cuda", gpu_name="a CUDA GPU", bf16=True)
    backend, _ = choose_backend(cfg.model.backend, gpu, unsloth_installed)
    precision, _ = choose_precision(cfg.model.dtype, gpu)
    return precision, backend


def model_shape(name: str, revision: str | None = None) -> tuple[ModelShape | None, str]:
    """The model's shape and where it came from, without any network: a local folder's
    config.json, the Hugging Face cache, the table of known models, or the size in the name."""
    config = _local_config(name, revision)
    if config is not None:
        shape = shape_from_config(config)
        if shape is not None:
            return shape, f"the shape of {name} from its config.json"
    key = normalized_name(name)
    if key in KNOWN_SHAPES:
        return KNOWN_SHAPES[key], f"the shape of {name} from grpo-cli's table of known models"
    match = _SIZE_IN_NAME.search(name.split("/")[-1])
    if match:
        size = float(match.group(1)) * 1e9
        return _scaled_shape(size), (
            f"{name} is not in the local cache nor in the table: assumed a Llama-like model of "
            f"{match.group(1)}B parameters (from the name); the estimate is rougher"
        )
    return None, (
        f"cannot estimate memory for {name}: its config.json is not in a local folder or the "
        "Hugging Face cache, and the name carries no size such as 7B"
    )


def normalized_name(name: str) -> str:
    """`unsloth/Qwen2.5-3B-Instruct-unsloth-bnb-4bit` -> `qwen2.5-3b`: the key of KNOWN_SHAPES."""
    key = name.rstrip("/").split("/")[-1].lower().removeprefix("meta-")
    stripped = True
    while stripped:
        stripped = False
        for suffix in _SUFFIXES:
            if key.endswith(suffix):
                key, stripped = key.removesuffix(suffix), True
    return key


def shape_from_config(config: dict[str, Any]) -> ModelShape | None:
    """A ModelShape from a config.json's fields (a multimodal config's text_config), or None
    when a field is missing."""
    text = config.get("text_config") or config
    try:
        heads = int(text["num_attention_heads"])
        return ModelShape(
            layers=int(text["num_hidden_layers"]),
            hidden=int(text["hidden_size"]),
            intermediate=int(text["intermediate_size"]),
            heads=heads,
            kv_heads=int(text.get("num_key_value_heads") or heads),
            vocab=int(text["vocab_size"]),
            tied=bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings", False))),
            head_dim=int(text.get("head_dim") or 0),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _local_config(name: str, revision: str | None) -> dict[str, Any] | None:
    folder = Path(name).expanduser()
    path: Path | None = folder / "config.json" if folder.is_dir() else None
    if path is None and "/" in name and not name.startswith((".", "/", "~")):
        # try_to_load_from_cache only looks at the cache folder; it never opens a connection.
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(name, "config.json", revision=revision)
        path = Path(found) if isinstance(found, str) else None
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _scaled_shape(params: float) -> ModelShape:
    """The known model nearest in size, its widths scaled so its parameter count matches."""
    nearest = min(KNOWN_SHAPES.values(), key=lambda s: abs(math.log(s.params / params)))
    scale = math.sqrt(max(params - nearest.embedding_params, 1e7) / nearest.linear_params)
    d = nearest.dim_per_head
    hidden = max(d, round(nearest.hidden * scale / d) * d)
    return replace(
        nearest,
        hidden=hidden,
        intermediate=max(128, round(nearest.intermediate * scale / 128) * 128),
        heads=hidden // d,
        kv_heads=min(nearest.kv_heads, hidden // d),
        head_dim=d,
    )


def estimate(cfg: GrpoConfig, precision: str, backend: str) -> MemoryEstimate:
    """Peak GPU memory of one training step of this config, in GiB, part by part.

    precision is the compute dtype (bf16, fp16 or fp32) and backend unsloth or trl, as
    hardware.choose_precision and choose_backend decide them."""
    shape, source = model_shape(*start_weights(cfg.model.name, cfg.model.revision))
    if shape is None:
        return MemoryEstimate(parts=[], total_gib=0.0, notes=[source])
    return _estimate(cfg, precision, backend, shape, source)


def _estimate(
    cfg: GrpoConfig, precision: str, backend: str, shape: ModelShape, source: str
) -> MemoryEstimate:
    m, t = cfg.model, cfg.training
    dtype_bytes = 4 if precision == "fp32" else 2
    notes = [
        "an estimate, calibrated on Unsloth's published GRPO figures to within 25%; real use "
        "varies with the library versions and the lengths the model actually generates",
        f"{source} ({shape.params / 1e9:.2f}B parameters)",
    ]
    sequence = min(t.max_prompt_length + t.max_completion_length, m.max_seq_length)
    try:
        rows = batch_geometry(t).per_device_train_batch_size
    except ValueError:
        rows = t.prompts_per_step * t.num_generations
        notes.append("the batch geometry is invalid: counted the whole step as one micro-batch")
    unsloth_vllm = backend == "unsloth" and m.fast_inference
    weights = _base_weights(shape, m.quantization, dtype_bytes)
    quant = m.quantization if m.quantization != "none" else precision
    shared = ", held in vLLM's share, shared with training" if unsloth_vllm else ""

    parts = [(f"base weights ({quant}{shared})", weights)]
    parts += _lora_parts(cfg, shape, notes)
    parts += _activation_parts(cfg, backend, shape, rows, sequence, dtype_bytes)
    completion = min(t.max_completion_length, sequence)
    if backend == "unsloth":
        # Unsloth's GRPO loss runs the lm_head in chunks and keeps one sequence's float32 logits
        # at a time (unsloth.ai/blog/grpo: "GRPO memory cost 9.8GB" vs 78.3 for 8 generations).
        label = f"logits: one sequence of {completion} tokens (Unsloth's chunked loss)"
        parts.append((label, completion * shape.vocab * 4 / GIB))
    else:
        # TRL keeps only the completion's logits (logits_to_keep), for the whole micro-batch,
        # and their gradient in the backward pass; trl/trainer/utils.py selective_log_softmax loops
        # over rows, so its float32 copy is one row's.
        label = f"logits and their gradient: {rows} x {completion} tokens"
        parts.append((label, 2 * rows * completion * shape.vocab * dtype_bytes / GIB))
    if t.beta > 0:
        # trl/trainer/grpo_trainer.py: "If PEFT is used, the reference model is not needed since
        # the adapter can be disabled to revert to the initial model."
        parts.append(("reference model (LoRA: the base with adapters disabled, no copy)", 0.0))
        notes.append("beta > 0 with LoRA: the reference is the base model itself, no second copy")
    generation, vllm_parts, share, key, share_source = _generation_parts(
        cfg, backend, shape, sequence, dtype_bytes, weights, quant
    )
    parts += generation + vllm_parts
    subtotal = sum(gib for _, gib in parts)
    reserve = CUDA_CONTEXT_GIB + ALLOCATOR_SLACK * subtotal
    parts.append(("CUDA context and allocator reserve", reserve))
    vllm_min = sum(gib for _, gib in vllm_parts) + (weights if unsloth_vllm else 0.0)
    if key:
        in_force = f"{share:.3g}" if share is not None else "a share"
        notes.append(
            f"vLLM reserves {in_force} of the GPU's memory ({share_source}), or at least "
            f"{vllm_min:.1f} GiB; the total counts that least, the GPU table counts each GPU's "
            "share"
            + (
                "; Unsloth shares the base weights between vLLM and training"
                if unsloth_vllm
                else ""
            )
        )
    if backend == "unsloth":
        notes.append(
            "Unsloth splits a micro-batch into smaller ones when memory is short: its "
            "activations may come out lower"
        )
        if m.quantization == "4bit":
            notes.append("Unsloth's dynamic 4-bit repos keep a few layers in 16-bit: a little more")
    return MemoryEstimate(
        parts=[(label, round(gib, 3)) for label, gib in parts],
        total_gib=round(subtotal + reserve, 3),
        notes=notes,
        vllm_min_gib=round(vllm_min, 3),
        vllm_share=share,
        vllm_key=key,
        precision=precision,
        backend=backend,
        config=cfg,
    )


def _lora_parts(cfg: GrpoConfig, shape: ModelShape, notes: list[str]) -> list[tuple[str, float]]:
    lora, optim = cfg.lora, cfg.training.optim
    params, unknown = _lora_params(shape, lora.r, lora.target_modules)
    if unknown:
        notes.append(f"LoRA target modules not counted (not in a Llama/Qwen layer): {unknown}")
    # peft casts adapter weights to float32 (peft/tuners/tuners_utils.py, autocast_adapter_dtype)
    # and their gradients follow.
    return [
        (f"LoRA weights (r={lora.r}, {params / 1e6:.0f}M parameters, fp32)", params * 4 / GIB),
        ("LoRA gradients (fp32)", params * 4 / GIB),
        (f"optimizer states ({optim})", params * _optimizer_bytes(optim) / GIB),
    ]


def _activation_parts(
    cfg: GrpoConfig, backend: str, shape: ModelShape, rows: int, sequence: int, dtype_bytes: int
) -> list[tuple[str, float]]:
    """What the forward pass of one micro-batch keeps for the backward pass."""
    tokens = rows * sequence
    layer_h, layer_i = _LAYER_ELEMENTS["unsloth" if backend == "unsloth" else "trl"]
    per_layer = tokens * (layer_h * shape.hidden + layer_i * shape.intermediate) * dtype_bytes
    layer_input = tokens * shape.hidden * dtype_bytes
    gc, layers = cfg.lora.gradient_checkpointing, shape.layers
    if gc == "unsloth" and backend == "unsloth":
        # Unsloth's offloaded checkpointing copies each layer's input to CPU memory as it goes.
        kept = (
            f"activations: layer inputs of {rows} x {sequence} tokens, offloaded to CPU",
            2 * layer_input,
        )
    elif gc:
        kept = (
            f"activations: checkpointed inputs of {layers} layers, {rows} x {sequence} tokens",
            layers * layer_input,
        )
    else:
        kept = (
            f"activations: all {layers} layers, {rows} x {sequence} tokens, no checkpointing",
            layers * per_layer,
        )
    return [(kept[0], kept[1] / GIB), ("activations: one layer's backward", 2 * per_layer / GIB)]


def _generation_parts(
    cfg: GrpoConfig,
    backend: str,
    shape: ModelShape,
    sequence: int,
    dtype_bytes: int,
    weights: float,
    quant: str,
) -> tuple[list[tuple[str, float]], list[tuple[str, float]], float | None, str, str]:
    """(parts outside vLLM, parts inside vLLM's pool, vLLM's share (None: the GPU's size decides),
    its config key, where the share comes from)."""
    m, t = cfg.model, cfg.training
    kv_token = shape.kv_bytes_per_token(2)
    runtime = ("vLLM runtime (CUDA graphs, sampler, profiling buffers)", VLLM_RUNTIME_GIB)
    if backend == "unsloth" and m.fast_inference:
        # unsloth_zoo/vllm_utils.py: vLLM's reservation holds "KV cache + model weights" (the
        # weights shared with training); vLLM starts only if one max_seq_length sequence fits,
        # and keeps a LoRA slot of max_lora_rank in 16-bit.
        slot = m.max_lora_rank * sum(a + b for a, b in shape.linear_dims().values()) * 2
        inside = [
            (
                f"vLLM KV cache: one {m.max_seq_length}-token sequence, at least",
                m.max_seq_length * kv_token / GIB,
            ),
            (f"vLLM LoRA slot (max_lora_rank {m.max_lora_rank})", shape.layers * slot / GIB),
            runtime,
        ]
        # The rule training applies (MemoryEstimate.share_on asks it again for each GPU).
        from grpo_cli.training.models import vllm_memory_share

        share, source = vllm_memory_share(cfg, None)
        return [], inside, share, UNSLOTH_VLLM_KEY, source
    if backend == "trl" and cfg.vllm.use:
        if cfg.vllm.mode == "server":
            return [], [], 0.0, "", ""  # the vLLM server runs on another GPU
        # TRL's colocated vLLM loads its own copy of the weights, quantized as the model is.
        inside = [
            (f"vLLM weights ({quant}, a second copy)", weights),
            (f"vLLM KV cache: one {sequence}-token sequence, at least", sequence * kv_token / GIB),
            runtime,
        ]
        key = "vllm.gpu_memory_utilization"  # trl/generation/vllm_generation.py: LLM(...)'s share
        return [], inside, cfg.vllm.gpu_memory_utilization, key, key
    # transformers' generate: the KV cache of a whole generation round and one step's logits.
    # Generation comes before the backward pass; adding both phases is the safe side.
    rows = t.generation_batch_size or t.prompts_per_step * t.num_generations
    cache = rows * sequence * shape.kv_bytes_per_token(dtype_bytes) + rows * shape.vocab * 4
    return (
        [(f"generation KV cache: {rows} x {sequence} tokens (transformers)", cache / GIB)],
        [],
        0.0,
        "",
        "",
    )


def _base_weights(shape: ModelShape, quantization: str, dtype_bytes: int) -> float:
    linear = _LINEAR_BYTES.get(quantization, float(dtype_bytes))
    return (shape.linear_params * linear + shape.embedding_params * dtype_bytes) / GIB


def _lora_params(shape: ModelShape, r: int, targets: list[str] | str) -> tuple[int, list[str]]:
    dims = shape.linear_dims()
    names = list(dims) if targets == "all-linear" else list(targets)
    total, unknown = 0, []
    for name in names:
        if name in dims:
            total += shape.layers * r * sum(dims[name])
        elif name in ("embed_tokens", "lm_head"):
            total += r * (shape.vocab + shape.hidden)
        else:
            unknown.append(name)
    return total, unknown


def _optimizer_bytes(optim: str) -> int:
    """Bytes of optimizer state per trained parameter."""
    if optim in ("sgd", "adafactor") or optim.startswith(("lomo", "adalomo")):
        return 0  # plain SGD keeps none; Adafactor's factored rows and columns are negligible
    if "lion" in optim:
        return 1 if "8bit" in optim else 4
    if "4bit" in optim:
        return _ADAM_STATES // 2
    if "8bit" in optim:
        return _ADAM_STATES
    return 4 * _ADAM_STATES


def fit_table(est: MemoryEstimate) -> list[GpuFit]:
    """The estimate against each common GPU, with what the preflight would refuse there; for a
    GPU it does not fit, the single settings that would make it fit, each re-estimated."""
    if not est.known or est.config is None:
        return []
    return [_fit(est, gpu, est.config) for gpu in GPUS]


# The keys of hardware_problems' refusals that depend on the GPU once the gpu extra is installed.
_GPU_KEYS = ("model.quantization", "model.dtype")


def gpu_refusals(cfg: GrpoConfig, gpu: Hardware, backend: str) -> list[tuple[str, str]]:
    """What the preflight refuses on this GPU whatever is installed: fp8 weights and bfloat16
    (hardware.hardware_problems, with the gpu extra installed)."""
    precision, _ = choose_precision(cfg.model.dtype, gpu)
    problems = hardware_problems(cfg, gpu, backend, precision, GPU_EXTRA)
    return [(key, message) for key, message in problems if key in _GPU_KEYS]


def _fit(est: MemoryEstimate, gpu: Hardware, cfg: GrpoConfig) -> GpuFit:
    fits, verdict, _ = _verdict(est, gpu, cfg)
    suggestions = [] if fits else _suggestions(est, gpu, cfg)
    return GpuFit(gpu.gpu_name or "", gpu.gpu_memory_gib or 0.0, fits, verdict, suggestions)


def _verdict(est: MemoryEstimate, gpu: Hardware, cfg: GrpoConfig) -> tuple[bool, str, int]:
    """(fits, verdict, how many of the preflight's refusals this GPU makes)."""
    memory = gpu.gpu_memory_gib or 0.0
    need = est.on_gpu(memory)
    of = f"{need:.1f} of {memory:.1f} GiB"
    share = est.share_on(memory)
    if est.colocated:
        of += f", vLLM's share {max(est.vllm_min_gib, share * memory):.1f}"
    refusals = gpu_refusals(cfg, gpu, est.backend)
    if refusals:
        return False, f"no: {refusals[0][1]}", len(refusals)
    if est.colocated and share * memory < est.vllm_min_gib:
        verdict = (
            f"no: vLLM's share ({share:.3g} x {memory:.1f} GiB) is under the "
            f"{est.vllm_min_gib:.1f} GiB its weights and one sequence need"
        )
        return False, verdict, 0
    if need > memory:
        return False, f"no: needs about {of}", 0
    if need > 0.9 * memory:
        return True, f"tight: about {of}", 0
    return True, f"fits: about {of}", 0


def _suggestions(est: MemoryEstimate, gpu: Hardware, cfg: GrpoConfig) -> list[str]:
    """For each kind of change, its mildest value that fits this GPU, re-estimated; when no
    single change is enough, one combination of them that fits. A precision this GPU refuses
    is set to auto first: it costs no memory, and every other change needs it."""
    shape, source = model_shape(*start_weights(cfg.model.name, cfg.model.revision))
    if shape is None:
        return []
    memory = gpu.gpu_memory_gib or 0.0

    def trial(changed: GrpoConfig) -> tuple[MemoryEstimate, bool, str, int]:
        result = _estimate(changed, est.precision, est.backend, shape, source)
        fits, verdict, refusals = _verdict(result, gpu, changed)
        return result, fits, verdict, refusals

    def about(result: MemoryEstimate) -> str:
        return f"(about {result.on_gpu(memory):.1f} GiB)"

    base, base_est, steps = cfg, est, list[str]()
    if any(key == "model.dtype" for key, _ in gpu_refusals(cfg, gpu, est.backend)):
        _, _, base = _change(cfg, "model.dtype", "auto")
        base_est, fits, _, _ = trial(base)
        if fits:
            return [f"model.dtype: auto {about(base_est)}"]
        steps.append("model.dtype: auto")
    singles = []
    for options in _candidates(base_est, base, gpu):
        for key, value, changed in options:
            result, fits, _, _ = trial(changed)
            if fits:
                singles.append(" + ".join([*steps, f"{key}: {_yaml(value)}"]) + f" {about(result)}")
                break
    if singles:
        return singles
    # Nothing fits alone: take, step by step, the change that fits, or else the one that leaves
    # the fewest refusals and then needs the least.
    current, current_est = base, base_est
    for _ in range(len(_candidates(base_est, base, gpu))):
        best: tuple[tuple[int, float], str, Any, GrpoConfig, MemoryEstimate] | None = None
        for options in _candidates(current_est, current, gpu):
            for key, value, changed in options:
                if any(step.startswith(key + ":") for step in steps):
                    break
                result, fits, verdict, refusals = trial(changed)
                if fits:
                    steps.append(f"{key}: {_yaml(value)}")
                    return [" + ".join(steps) + f" {about(result)}"]
                rank = (refusals, result.on_gpu(memory))
                if "vLLM's share" not in verdict and (best is None or rank < best[0]):
                    best = (rank, key, value, changed, result)
        if best is None:
            break
        _, key, value, current, current_est = best
        steps.append(f"{key}: {_yaml(value)}")
    return []


Change = tuple[str, Any, "GrpoConfig"]  # (config key, value, the config with it)


def _candidates(est: MemoryEstimate, cfg: GrpoConfig, gpu: Hardware) -> list[list[Change]]:
    """Single changes worth trying, grouped by kind, mildest first."""
    m, t = cfg.model, cfg.training
    groups: list[list[Change]] = []
    if est.colocated:
        now = round(est.share_on(gpu.gpu_memory_gib or 0.0) * 100)
        # Lower first (frees memory for training), then higher (room for vLLM's weights).
        shares = [*range(now - (now % 5 or 5), 9, -5), *range(now + 5, 96, 5)]
        groups.append([_change(cfg, est.vllm_key, share / 100) for share in shares])
    if m.quantization == "fp8":
        # 16-bit first where fp8 is refused: it loses nothing to quantization when it fits.
        groups.append([_change(cfg, "model.quantization", q) for q in ("none", "4bit")])
    elif m.quantization in ("none", "8bit"):
        groups.append([_change(cfg, "model.quantization", "4bit")])
    completions = t.prompts_per_step * t.num_generations
    accumulation = range(t.gradient_accumulation_steps + 1, completions + 1)
    groups.append(
        _valid([_change(cfg, "training.gradient_accumulation_steps", a) for a in accumulation])
    )
    if not cfg.lora.gradient_checkpointing:
        checkpointing: bool | str = "unsloth" if est.backend == "unsloth" else True
        groups.append([_change(cfg, "lora.gradient_checkpointing", checkpointing)])
    if _optimizer_bytes(t.optim) > _ADAM_STATES:
        groups.append([_change(cfg, "training.optim", "adamw_8bit")])
    lengths = [t.max_completion_length * k // 8 for k in (6, 4, 2, 1)]
    groups.append([_change(cfg, "training.max_completion_length", n) for n in lengths if n >= 32])
    generations = range(t.num_generations - 1, 1, -1)
    groups.append(_valid([_change(cfg, "training.num_generations", g) for g in generations]))
    return [group for group in groups if group]


def _change(cfg: GrpoConfig, key: str, value: Any) -> Change:
    section, name = key.split(".")
    part = getattr(cfg, section).model_copy(update={name: value})
    return key, value, cfg.model_copy(update={section: part})


def _valid(changes: list[Change]) -> list[Change]:
    """The changes that keep a valid batch geometry."""
    return [change for change in changes if not geometry_problems(change[2].training)]


def _yaml(value: Any) -> str:
    """A value as the user writes it in the config."""
    return str(value).lower() if isinstance(value, bool) else str(value)
