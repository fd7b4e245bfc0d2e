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
        gpus = [gpu for gpu in GPUS if f" {size} GB" in gpu.name]
        assert gpus, f"no {size} GB GPU in memory.GPUS"
        for gpu in gpus:
            assert f"{standby_share(gpu.memory_gib):.2f}" == share, (gpu.name, share)
