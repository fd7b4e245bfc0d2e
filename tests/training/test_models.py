"""The figures about model loading that the config reference quotes are the loaders' own."""

from __future__ import annotations

import re

from grpo_cli.config.schema import ModelConfig
from grpo_cli.memory import GPUS
from grpo_cli.training.models import standby_share


def test_the_standby_shares_the_config_reference_quotes_are_unsloths():
    """model.gpu_memory_utilization's description (and the README's config reference made
    from it) quotes Unsloth's standby share for common GPUs: each figure must be what
    standby_share gives for every GPU of that size, at the memory torch reports for it."""
    description = ModelConfig.model_fields["gpu_memory_utilization"].description or ""
    quoted = re.findall(r"(0\.\d+) of an? (\d+) GB", description)
    assert len(quoted) >= 3, description
    for share, size in quoted:
        gpus = [gpu for gpu in GPUS if NOMINAL_GB[gpu.gpu_name or ""] == int(size)]
        assert gpus, f"no {size} GB GPU in memory.GPUS"
        for gpu in gpus:
            assert gpu.gpu_memory_gib is not None
            assert f"{standby_share(gpu.gpu_memory_gib):.2f}" == share, (gpu.gpu_name, share)


# the size on the box; memory.GPUS holds what torch reports, a little under it
NOMINAL_GB = {"T4": 16, "L4": 24, "A10G": 24, "A100 40GB": 40, "A100 80GB": 80, "H100": 80}


def test_saves_ask_the_hub_nothing_unless_embeddings_are_trained():
    """PEFT's "auto" asks the Hub on every save whether the vocabulary was resized; grpo never
    resizes it, so it answers for PEFT, except where embeddings are LoRA targets (PEFT saves
    them then, by its own rule, which must stay)."""
    from types import SimpleNamespace

    from grpo_cli.training.models import saved_without_hub_lookup

    def model(*targets: str) -> SimpleNamespace:
        calls: list[dict] = []
        config = SimpleNamespace(target_modules=set(targets))
        return SimpleNamespace(
            peft_config={"default": config},
            save_pretrained=lambda folder, **kw: calls.append(kw),
            calls=calls,
        )

    linear = saved_without_hub_lookup(model("q_proj", "v_proj"))
    linear.save_pretrained("out")
    assert linear.calls == [{"save_embedding_layers": False}]
    embedded = saved_without_hub_lookup(model("q_proj", "embed_tokens"))
    embedded.save_pretrained("out")
    assert embedded.calls == [{}]
