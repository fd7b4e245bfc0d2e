"""The model card (`README.md`) that `grpo merge` writes beside merged weights or a published
adapter: what the model is, how it was trained, how well it did, and how to reproduce it.

Pure functions of the run's recorded facts (resolved config, environment, data report, steps,
eval.json): no I/O, so every section is tested on plain dictionaries.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from grpo_cli.config.schema import DATA_SUFFIXES, is_hub_id, looks_like_path, mask_secrets

# A safety net, not the main defence (configs refuse secrets, env.json drops them from argv):
# nothing shaped like a Hub token ever reaches a card that may be published.
EXAMPLE_QUESTION = "A train travels 90 km in 1.5 hours. What is its average speed in km/h?"
CONFIG_FILE = "grpo_config.yaml"  # the run's resolved config, copied beside the weights


@dataclass
class CardFacts:
    """Everything the card says, as recorded by `grpo train` and `grpo eval`."""

    base_model: str
    dtype: str  # weights of the merged model: bf16, fp16 or fp32
    adapter_only: bool = False
    config: dict[str, Any] = field(default_factory=dict)  # the run's config.yaml, as data
    env: dict[str, Any] = field(default_factory=dict)  # the run's env.json
    data: dict[str, Any] = field(default_factory=dict)  # the run's data.json
    steps: int | None = None  # optimizer steps the adapter was trained for
    evals: dict[str, Any] = field(default_factory=dict)  # eval.json: {split: metrics}
    default_weights: dict[str, float] = field(default_factory=dict)  # registered rewards
    repo_id: str | None = None
    run_path: str | None = None  # the run directory as the user named it
    merger: str = "peft"  # peft or unsloth: which library merged the weights
    gguf: list[str] = field(default_factory=list)
    # The chat messages of one question, rendered as in training (system prompt and format).
    example_messages: list[dict[str, str]] = field(default_factory=list)
    figure: str | None = None  # a PNG of reward and accuracy beside the card, by file name
    # model_source.ModelSource.lineage: base model, grpo sft warm-up, the run merged
    lineage: list[dict[str, Any]] = field(default_factory=list)


def model_card(facts: CardFacts) -> str:
    sections = [
        front_matter(facts),
        _title(facts),
        _model_section(facts),
        lineage_section(facts.lineage),
        training_section(facts),
        rewards_section(facts),
        data_section(facts),
        eval_section(facts.evals),
        usage_section(facts),
        reproduce_section(facts),
        _versions_section(facts.env),
    ]
    text = "\n\n".join(s for s in sections if s) + "\n"
    return mask_secrets(text)


def front_matter(facts: CardFacts) -> str:
    lines = ["---"]
    # A warm-up's weights are local; the Hub links the model to the one the lineage began with.
    first = str(facts.lineage[0].get("model") or "") if facts.lineage else ""
    origin = first if _is_hub_model(first) else facts.base_model
    if _is_hub_model(origin):
        # The Hub links a model to its base through this key; a local path would be rejected.
        lines.append(f"base_model: {origin}")
    lines.append(f"library_name: {'peft' if facts.adapter_only else 'transformers'}")
    lines.append("pipeline_tag: text-generation")
    tags = ["grpo", "trl", "lora", "reasoning", "grpo-cli"]
    if facts.env.get("backend") == "unsloth" or facts.merger == "unsloth":
        tags.append("unsloth")
    if facts.gguf:
        tags.append("gguf")
    lines.append("tags:")
    lines += [f"- {tag}" for tag in tags]
    lines.append("---")
    return "\n".join(lines)


def _title(facts: CardFacts) -> str:
    name = facts.repo_id or _section(facts.config, "output").get("run_name") or "GRPO model"
    what = (
        "a LoRA adapter for it"
        if facts.adapter_only
        else f"the LoRA adapter merged into {facts.dtype} weights"
    )
    first = facts.lineage[0].get("model") if facts.lineage else None
    stages = [stage.get("stage") for stage in facts.lineage]
    if stages and stages[-1] == "sft":
        how = "fine-tuned on worked solutions (`grpo sft`)"
    else:
        how = "trained with GRPO (Group Relative Policy Optimization) on verifiable rewards"
        how += " after a `grpo sft` warm-up" if "sft" in stages else ""
    return (
        f"# {name}\n\n"
        f"`{first or facts.base_model}` {how} using "
        f"[grpo-cli](https://github.com/grpo-cli/grpo-cli); this repository holds {what}."
    )


def _model_section(facts: CardFacts) -> str:
    model = _section(facts.config, "model")
    rows = [("base model", f"`{facts.base_model}`")]
    if model.get("revision"):
        rows.append(("base revision", f"`{model['revision']}`"))
    if facts.adapter_only:
        rows.append(("weights", "LoRA adapter (PEFT, safetensors)"))
    else:
        via = "Unsloth merged_16bit" if facts.merger == "unsloth" else "PEFT merge_and_unload"
        rows.append(("weights", f"{facts.dtype} safetensors, LoRA merged with {via}"))
    rows.append(("chat template", "the base model's, saved with the tokenizer"))
    if facts.gguf:
        rows.append(("GGUF", ", ".join(f"`{q}`" for q in facts.gguf) + " in `gguf/`"))
    return "## Model\n\n" + _key_value_table(rows)


def lineage_section(stages: list[dict[str, Any]]) -> str:
    """base model -> grpo sft (run, method, steps, rows) -> grpo: shown when there was a
    warm-up, since `base model` above is then the warm-up's output rather than a known model."""
    if not any(stage.get("stage") == "sft" for stage in stages):
        return ""
    rows = []
    for stage in stages:
        name = str(stage.get("stage"))
        if name == "base":
            revision = f" at `{stage['revision']}`" if stage.get("revision") else ""
            rows.append(("base model", f"`{stage.get('model')}`{revision}"))
            continue
        parts = [f"run `{stage.get('run')}`"]
        if stage.get("method"):
            parts.append("full fine-tuning" if stage["method"] == "full" else "LoRA")
        if stage.get("steps") is not None:
            parts.append(f"{stage['steps']} steps")
        if stage.get("rows") is not None:
            parts.append(f"{stage['rows']} rows")
        label = {"sft": "grpo sft (warm-up)", "grpo": "grpo train"}.get(name, name)
        rows.append((label, ", ".join(parts)))
    return "## Lineage\n\n" + _key_value_table(rows)


def training_section(facts: CardFacts) -> str:
    """The recipe: backend, precision, LoRA and the GRPO hyper-parameters that shape a run."""
    cfg, env = facts.config, facts.env
    if not cfg:
        return "## How it was trained\n\nThe run's config was not available to `grpo merge`."
    model, lora, train = _section(cfg, "model"), _section(cfg, "lora"), _section(cfg, "training")
    rows: list[tuple[str, str]] = []
    if env.get("backend"):
        rows.append(("backend", str(env["backend"])))
    if env.get("precision"):
        rows.append(("precision", str(env["precision"])))
    if model.get("quantization"):
        rows.append(("base weights during training", str(model["quantization"])))
    if lora:
        targets = lora.get("target_modules")
        targets = ", ".join(targets) if isinstance(targets, list) else targets
        rows.append(
            (
                "LoRA r / alpha",
                f"{lora.get('r')} / {lora.get('alpha')}"
                + (" (rsLoRA)" if lora.get("rslora") else ""),
            )
        )
        rows.append(("LoRA dropout", _value(lora.get("dropout"))))
        rows.append(("LoRA target modules", str(targets)))
    rows.append(("optimizer steps", _value(facts.steps)))
    for key, label in (
        ("learning_rate", "learning rate"),
        ("lr_scheduler_type", "schedule"),
        ("warmup_ratio", "warm-up ratio"),
        ("optim", "optimizer"),
        ("num_generations", "num_generations (group size)"),
        ("prompts_per_step", "prompts_per_step"),
        ("gradient_accumulation_steps", "gradient_accumulation_steps"),
        ("loss_type", "loss_type"),
        ("beta", "beta (KL)"),
        ("epsilon", "epsilon (clipping)"),
        ("temperature", "sampling temperature"),
        ("max_prompt_length", "max_prompt_length"),
        ("max_completion_length", "max_completion_length"),
        ("seed", "seed"),
    ):
        if key in train:
            rows.append((label, _value(train[key])))
    figure = f"\n\n![Reward and accuracy during training]({facts.figure})" if facts.figure else ""
    return "## How it was trained\n\n" + _key_value_table(rows) + figure


def rewards_section(facts: CardFacts) -> str:
    rewards = facts.config.get("rewards") or []
    if not rewards:
        return ""
    lines = ["## Rewards", "", "| reward | weight | parameters |", "|---|---|---|"]
    for spec in rewards:
        spec = {"name": spec} if isinstance(spec, str) else spec
        name = str(spec.get("name"))
        weight = spec.get("weight")
        if weight is None:
            weight = facts.default_weights.get(name)
        shown = "default" if weight is None else _value(weight)
        params = spec.get("params") or {}
        text = ", ".join(f"{k}={json.dumps(v)}" for k, v in params.items()) or "-"
        lines.append(f"| {_cell(name)} | {shown} | {_cell(text)} |")
    return "\n".join(lines)


def data_section(facts: CardFacts) -> str:
    data = _section(facts.config, "data")
    if not data:
        return ""
    # a subset (Hub dataset configuration) means nothing for synthetic rows or a local file
    hub = _is_hub_dataset(str(data.get("source", "")))
    rows = [
        (label, _value(data.get(key)))
        for key, label in (
            ("source", "source"),
            ("subset", "subset"),
            ("split", "split"),
            ("formatter", "formatter"),
            ("prompt_style", "prompt style"),
            ("limit", "row limit"),
            ("heldout_size", "held-out rows (never trained on)"),
        )
        if data.get(key) is not None and (key != "subset" or hub)
    ]
    if facts.data.get("trained_on") is not None:
        rows.append(("prompts trained on", _value(facts.data["trained_on"])))
    return "## Data\n\n" + _key_value_table(rows)


def eval_section(evals: dict[str, Any]) -> str:
    """eval.json as a table: one row per split, accuracies as percentages with their 95% CI."""
    splits = {name: m for name, m in (evals or {}).items() if isinstance(m, dict)}
    if not splits:
        return ""
    columns: list[str] = []
    for metrics in splits.values():
        for key, value in metrics.items():
            if (
                _is_number(value)
                and not key.endswith("_ci95")
                and key not in columns
                and key not in _NOT_IN_CARD
            ):
                columns.append(key)
    columns.sort(key=_eval_column_order)
    lines = [
        "## Evaluation",
        "",
        "Measured by `grpo eval`; 95% confidence intervals in brackets.",
        "",
        "| split | " + " | ".join(c.replace("_", " ") for c in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name, metrics in splits.items():
        cells = [_metric(metrics, key) for key in columns]
        lines.append(f"| {_cell(name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def usage_section(facts: CardFacts) -> str:
    repo = facts.repo_id or "PATH/TO/THIS/FOLDER"
    if facts.adapter_only:
        load = (
            "from peft import AutoPeftModelForCausalLM\n"
            "from transformers import AutoTokenizer\n\n"
            f'model = AutoPeftModelForCausalLM.from_pretrained("{repo}", dtype="auto")\n'
            f'tokenizer = AutoTokenizer.from_pretrained("{repo}")\n'
        )
    else:
        load = (
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            f'model = AutoModelForCausalLM.from_pretrained("{repo}", dtype="auto")\n'
            f'tokenizer = AutoTokenizer.from_pretrained("{repo}")\n'
        )
    messages = facts.example_messages or [{"role": "user", "content": EXAMPLE_QUESTION}]
    body = (
        f"{load}messages = {json.dumps(messages, indent=4, ensure_ascii=False)}\n"
        "inputs = tokenizer.apply_chat_template(\n"
        '    messages, add_generation_prompt=True, return_tensors="pt", return_dict=True\n'
        ")\n"
        "output = model.generate(**inputs, max_new_tokens=512)\n"
        'print(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], '
        "skip_special_tokens=True))"
    )
    return f"## Usage\n\n```python\n{body}\n```"


def reproduce_section(facts: CardFacts) -> str:
    if not facts.config:
        return ""
    run = facts.run_path or "outputs/" + str(
        _section(facts.config, "output").get("run_name") or "RUN"
    )
    merge = f"grpo merge {run}"
    if facts.adapter_only:
        merge += " --adapter-only"
    elif facts.dtype != "bf16":
        merge += f" --dtype {facts.dtype}"
    if facts.gguf:
        merge += f" --gguf {','.join(facts.gguf)}"
    if facts.repo_id:
        merge += f" --push-to-hub {facts.repo_id}"
    default_split = _section(facts.config, "data").get("eval_split") or "test"
    evals = [
        f"grpo eval {CONFIG_FILE} --model base --model {run}{flags}"
        for flags in _eval_flags(facts.evals, default_split)
    ]
    git = facts.env.get("git") or {}
    at = f" at commit `{git['commit']}`" if git.get("commit") else ""
    if at and git.get("dirty"):
        at += " (the run had uncommitted changes)"
    if facts.lineage and facts.lineage[-1].get("stage") == "sft":  # a merged warm-up
        train = [f"grpo sft {CONFIG_FILE}"]
    else:  # a warm-up first, from its own run's config
        sft = [stage for stage in facts.lineage if stage.get("stage") == "sft"]
        train = [f"grpo sft {stage.get('run')}/config.yaml" for stage in sft]
        train.append(f"grpo train {CONFIG_FILE}")
    commands = "\n".join([*train, *evals, merge])
    return (
        "## Reproduce\n\n"
        f"`{CONFIG_FILE}` in this repository is the run's resolved config. With grpo-cli"
        f"{at} installed:\n\n"
        f"```bash\n{commands}\n```"
    )


def _eval_flags(evals: dict[str, Any], default_split: str) -> list[str]:
    """The flags that repeat each recorded evaluation (eval.json keys: split, or split@samples)."""
    flags = []
    for key, metrics in (evals or {}).items():
        split, _, samples = key.partition("@")
        text = "" if split == default_split else f" --split {split}"
        if samples:
            text += f" --samples {samples}"
            if isinstance(metrics, dict) and _is_number(metrics.get("temperature")):
                text += f" --temperature {metrics['temperature']:g}"
        flags.append(text)
    return flags or [""]


def _is_hub_dataset(source: str) -> bool:
    local = looks_like_path(source) or source.lower().endswith(DATA_SUFFIXES)
    return bool(source) and source != "synthetic" and not local


def _versions_section(env: dict[str, Any]) -> str:
    versions = {k: v for k, v in (env.get("versions") or {}).items() if v}
    if not versions:
        return ""
    listed = ", ".join(f"{name} {version}" for name, version in versions.items())
    return f"## Framework versions\n\n{listed}"


def _is_hub_model(name: str) -> bool:
    return "/" in name and is_hub_id(name) and not looks_like_path(name)


def _section(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    value = cfg.get(name)
    return value if isinstance(value, dict) else {}


# Settings and spreads a reader of the card does not need; metrics.json keeps them.
_NOT_IN_CARD = {"seed", "max_new_tokens", "median_completion_tokens"}
_RATE = re.compile(r"(accuracy|rate)$|^(pass|maj)@")


def _eval_column_order(key: str) -> tuple[int, str]:
    order = ["rows", "samples", "temperature", "strict_accuracy", "flexible_accuracy"]
    if key in order:
        return order.index(key), ""
    for rank, prefix in enumerate(("pass@", "maj@", "mean@", "format_rate", "truncation_rate")):
        if key.startswith(prefix):
            return len(order) + rank, key
    return len(order) + 5, key


def _metric(metrics: dict[str, Any], key: str) -> str:
    value = metrics.get(key)
    if not _is_number(value):
        return "-"
    if not _RATE.search(key):
        return _value(value)
    text = f"{100 * value:.1f}%"
    ci = metrics.get(f"{key}_ci95")
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_is_number(x) for x in ci):
        text += f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
    return text


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _key_value_table(rows: list[tuple[str, str]]) -> str:
    lines = ["| | |", "|---|---|"]
    lines += [f"| {_cell(label)} | {_cell(value)} |" for label, value in rows]
    return "\n".join(lines)
