"""grpo sft run directories as `grpo sft` leaves them (the contract of training/rundir.py), built
from the tiny model without the sft command: model/ for full fine-tuning, adapter/ for LoRA, the
resolved config, env.json with stage sft, metrics and data records. The weights are moved away
from the tiny model's, so a test can tell which weights a later stage started from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from grpo_cli.config import dump_config, load_config

from .conftest import CONFIGS

SFT_STEPS, SFT_ROWS = 5, 40


def sft_config(tiny_model: Path, run_name: str, **lora: Any) -> dict[str, Any]:
    """configs/smoke_cpu.yaml on the tiny model, resolved as a run saves it."""
    overrides = [f"model.name={tiny_model}", f"output.run_name={run_name}"]
    overrides += [f"lora.{key}={value}" for key, value in lora.items()]
    return dump_config(load_config(CONFIGS / "smoke_cpu.yaml", overrides).config)


def write_run_files(run: Path, config: dict[str, Any], stage: str = "sft") -> Path:
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (run / "env.json").write_text(json.dumps({"stage": stage, "backend": "trl"}))
    steps = [{"step": s, "loss": 1.0 / s} for s in range(1, SFT_STEPS + 1)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in steps))
    (run / "data.json").write_text(json.dumps({"trained_on": SFT_ROWS}))
    return run


def moved(model: Any, seed: int) -> Any:
    """MODEL with every weight nudged: another model than the one it was loaded from."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            noise = torch.randn(param.shape, generator=generator)
            param.add_(0.05 * noise.to(param.dtype))
    return model


def full_sft_run(tiny_model: Path, root: Path, name: str = "sft-full") -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = write_run_files(root / name, sft_config(tiny_model, name))
    model = moved(AutoModelForCausalLM.from_pretrained(tiny_model), seed=1)
    model.save_pretrained(run / "model")
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(run / "model")
    return run


def lora_sft_run(tiny_model: Path, root: Path, name: str = "sft-lora") -> Path:
    """A LoRA warm-up with the smoke config's lora settings (r 8, alpha 16), its lora_B moved
    from zero so that the adapter changes the model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from grpo_cli.config.schema import GrpoConfig
    from grpo_cli.training.models import lora_kwargs

    config = sft_config(tiny_model, name)
    run = write_run_files(root / name, config)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    lora = LoraConfig(**lora_kwargs(GrpoConfig.model_validate(config)), task_type="CAUSAL_LM")
    model = get_peft_model(base, lora)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if "lora_B" in param_name:
                param.copy_(0.05 * torch.randn(param.shape, generator=generator))
    model.save_pretrained(run / "adapter")
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(run / "adapter")
    return run


def logits(model: Any, tokenizer: Any, text: str = "What is 12 plus 30?") -> Any:
    import torch

    ids = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return model(**ids).logits
