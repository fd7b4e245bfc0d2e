"""From a YAML file to a validated `GrpoConfig`: `extends:` chains, `--set` overrides, and every
problem of the file reported at once with its file, line, key and fix."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from grpo_cli.config.checks import cross_field_problems
from grpo_cli.config.schema import (
    GrpoConfig,
    expand_reward_shorthand,
    has_secret,
    mask_secrets,
)
from grpo_cli.config.yamlio import KeyPath, Refused, display_path, parse_scalar, read_yaml
from grpo_cli.errors import SHOWN_PROBLEMS, ConfigError, Problem

# Keys that would hold a secret. Secrets come from the environment (HF_TOKEN, WANDB_API_KEY) so
# that a config, a resolved config in a run directory or a pasted log never leaks one.
_SECRET_KEY = re.compile(
    r"^(?:(?:hf|hub|huggingface|wandb|access|auth|api)_)?token$|(?:^|_)(?:api_?key|secret|password)$",
    re.I,
)


@dataclass(frozen=True)
class Origin:
    """Where a value was set: a file and line, or a `--set` override."""

    source: str
    line: int | None = None


@dataclass
class LoadedConfig:
    config: GrpoConfig
    path: Path
    files: list[str] = field(default_factory=list)  # the file, then each file it extends
    origins: dict[KeyPath, Origin] = field(default_factory=dict)


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> LoadedConfig:
    """Read, merge, override and validate a config; raise `ConfigError` listing every problem."""
    path = Path(path)
    data, origins, files = _resolve_extends(path, ())
    _apply_overrides(data, origins, list(overrides))
    source = display_path(path)
    problems = _secret_problems(data, origins, source)
    try:
        config = GrpoConfig.model_validate(data)
        checks = cross_field_problems(config)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        problems += _translate(errors, data, origins, source)
        invalid = {error["loc"][0] for error in errors}
        partial, valid = _valid_sections(data, invalid)
        checks = cross_field_problems(partial, valid)
    problems += [_problem(parse_key(key), message, origins, source) for key, message in checks]
    if problems:
        raise ConfigError(_in_file_order(problems))
    return LoadedConfig(config=config, path=path, files=files, origins=origins)


def config_error(loaded: LoadedConfig, problems: list[tuple[str, str]]) -> ConfigError:
    """Problems found after loading (e.g. against the machine), located in the config's files."""
    source = display_path(loaded.path)
    located = [
        _problem(parse_key(key), message, loaded.origins, source) for key, message in problems
    ]
    return ConfigError(_in_file_order(located))


def _valid_sections(data: dict[str, Any], invalid: set[Any]) -> tuple[GrpoConfig, set[str]]:
    """The sections that validate on their own, so checks that read only them can still run."""
    sections: dict[str, Any] = {}
    for name, info in GrpoConfig.model_fields.items():
        if name in invalid:
            continue
        value = data[name] if name in data else info.get_default(call_default_factory=True)
        assert info.annotation is not None  # every GrpoConfig field is annotated
        try:
            sections[name] = TypeAdapter(info.annotation).validate_python(value)
        except ValidationError:  # already reported by the whole-file validation
            continue
    return GrpoConfig.model_construct(**sections), set(sections)


def dump_config(config: GrpoConfig) -> dict[str, Any]:
    """The resolved config as plain data; written as YAML it loads back to the same config."""
    return config.model_dump(mode="json")


# --- extends -------------------------------------------------------------------------------


def _resolve_extends(
    path: Path, chain: tuple[Path, ...]
) -> tuple[dict[str, Any], dict[KeyPath, Origin], list[str]]:
    data, lines = read_yaml(path)
    source = display_path(path)
    origins = {key: Origin(source, line) for key, line in lines.items()}
    parent_ref = data.pop("extends", None)
    if parent_ref is None:
        return data, origins, [source]
    line = lines.get(("extends",))
    if not isinstance(parent_ref, str) or not parent_ref.strip():
        raise ConfigError(
            [Problem(source, "extends", "must be the path of one YAML file", line=line)]
        )
    parent = (path.parent / parent_ref).resolve()
    here = path.resolve()
    if parent in (*chain, here):
        cycle = " -> ".join(display_path(p) for p in (*chain, here, parent))
        raise ConfigError(
            [Problem(source, "extends", f"cycle: {cycle}", line=line)],
            hint="Remove one `extends:` so the chain ends in a file that extends nothing.",
        )
    if not parent.is_file():
        raise ConfigError(
            [
                Problem(
                    source,
                    "extends",
                    f"{parent_ref!r} not found (looked for {display_path(parent)}; the path is "
                    "relative to the file that says extends)",
                    line=line,
                )
            ]
        )
    base, base_origins, files = _resolve_extends(parent, (*chain, here))
    _merge(base, base_origins, data, origins, ())
    return base, base_origins, [source, *files]


def _merge(
    base: dict[str, Any],
    base_origins: dict[KeyPath, Origin],
    over: dict[str, Any],
    over_origins: dict[KeyPath, Origin],
    path: KeyPath,
) -> None:
    """Deep-merge `over` into `base`: mappings merge key by key, anything else (lists too) is
    replaced whole. Origins follow the values."""
    for key, value in over.items():
        key_path = (*path, key)
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base_origins[key_path] = over_origins[key_path]
            _merge(base[key], base_origins, value, over_origins, key_path)
            continue
        base[key] = value
        _drop_below(base_origins, key_path)
        base_origins.update(
            {k: o for k, o in over_origins.items() if k[: len(key_path)] == key_path}
        )


def _drop_below(origins: dict[KeyPath, Origin], prefix: KeyPath) -> None:
    for key in [k for k in origins if k[: len(prefix)] == prefix]:
        del origins[key]


# --- overrides -----------------------------------------------------------------------------


def _apply_overrides(
    data: dict[str, Any], origins: dict[KeyPath, Origin], overrides: list[str]
) -> None:
    problems: list[Problem] = []
    for text in overrides:
        origin = Origin(f"--set {mask_secrets(text)}")
        dotted, sep, raw = text.partition("=")
        parts = [p.strip() for p in dotted.split(".")]
        if not sep or not dotted.strip() or not all(parts):
            problems.append(
                Problem(
                    origin.source,
                    "",
                    "expected KEY=VALUE with a dotted key, e.g. training.learning_rate=1e-5",
                )
            )
            continue
        try:
            key_path, created = _set_path(data, parts, raw)
        except _OverrideError as exc:
            problems.append(Problem(origin.source, mask_secrets(dotted.strip()), str(exc)))
            continue
        _drop_below(origins, key_path)
        # Sections the override brought into being are its own: an unknown one is its mistake.
        for path in (*created, key_path):
            origins[path] = origin
    if problems:
        raise ConfigError(problems)


class _OverrideError(ValueError):
    pass


def _set_path(data: dict[str, Any], parts: list[str], raw: str) -> tuple[KeyPath, list[KeyPath]]:
    """Set the value; return its key path and the paths of the sections it had to create."""
    node: Any = data
    key_path: list[str | int] = []
    created: list[KeyPath] = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        key: str | int = part
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise _OverrideError(
                    f"{'.'.join(parts[:i])} has {len(node)} entries; use an index from 0 to "
                    f"{len(node) - 1}"
                )
            key = int(part)
        elif not isinstance(node, dict):
            raise _OverrideError(f"{'.'.join(parts[:i])} is a single value, not a section")
        key_path.append(key)
        if last:
            try:
                node[key] = _typed_value(tuple(key_path), raw)
            except yaml.YAMLError as exc:
                raise _OverrideError(_bad_value(exc)) from None
            break
        # an int key is an index into a list (set above), a str key a name in a section
        child = node[key] if isinstance(key, int) else node.get(key)
        if child is None:
            if isinstance(node, dict) and key not in node:
                created.append(tuple(key_path))
            child = node[key] = {}
        elif isinstance(child, str) and tuple(key_path[:1]) == ("rewards",):
            child = node[key] = expand_reward_shorthand(child)
        elif not isinstance(child, dict | list):
            raise _OverrideError(f"{'.'.join(parts[: i + 1])} is a single value, not a section")
        node = child
    return tuple(key_path), created


def _bad_value(exc: yaml.YAMLError) -> str:
    """Why an override's value cannot be read, without PyYAML's `in "<unicode string>"` lines."""
    if isinstance(exc, Refused):
        return str(exc.problem)
    what = exc.problem if isinstance(exc, yaml.MarkedYAMLError) and exc.problem else str(exc)
    return (
        f"the value is not valid YAML ({what}); quote text that starts with [ {{ & * ! | > % @ "
        "or holds ': ' or ' #', e.g. --set 'data.system_prompt=\"...\"'"
    )


def _typed_value(key_path: KeyPath, raw: str) -> Any:
    """Read an override as the schema types the key: text stays text for text-only keys (so
    `output.run_name=2024` is a name, not a number); other keys read the value as YAML does."""
    annotation = _annotation_at(key_path)
    if annotation is not None and _text_only(annotation):
        if raw.strip() in ("null", "~") and type(None) in get_args(annotation):
            return None
        return raw
    return parse_scalar(raw)


@lru_cache(maxsize=4096)  # asked once per pydantic error: thousands of times for a bad file
def _annotation_at(key_path: KeyPath) -> Any:
    """The schema type at a key path (`("rewards", 0)` -> RewardSpec), or None if there is none."""
    annotation: Any = GrpoConfig
    for part in key_path:
        if isinstance(part, int):
            if get_origin(annotation) is not list:
                return None
            annotation = get_args(annotation)[0]
            continue
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        info = annotation.model_fields.get(part)
        if info is None:
            return None
        annotation = info.annotation
    return annotation


def _text_only(annotation: Any) -> bool:
    if annotation is str:
        return True
    if get_origin(annotation) is Literal:
        return all(isinstance(a, str) for a in get_args(annotation))
    if get_origin(annotation) in (Union, type(str | None)):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return bool(args) and all(_text_only(a) for a in args)
    return False


# --- secrets -------------------------------------------------------------------------------


def _secret_problems(
    data: dict[str, Any], origins: dict[KeyPath, Origin], source: str
) -> list[Problem]:
    """Find secrets anywhere in the config (keys, values, list items, inside longer text), and
    remove them so they are reported once and never echoed by another problem."""
    problems: list[Problem] = []
    token = (
        "this looks like a Hugging Face token; remove it and set HF_TOKEN in the environment "
        "instead"
    )

    def walk(node: Any, path: KeyPath) -> None:
        if isinstance(node, dict):
            for key in list(node):
                key_path = (*path, key)
                if isinstance(key, str) and has_secret(key):
                    problems.append(_problem(key_path, token, origins, source))
                    del node[key]
                elif isinstance(key, str) and _SECRET_KEY.search(key):
                    problems.append(
                        _problem(
                            key_path,
                            "secrets are never config keys: set HF_TOKEN (Hugging Face) or "
                            "WANDB_API_KEY (Weights & Biases) in the environment instead",
                            origins,
                            source,
                        )
                    )
                    del node[key]
                elif isinstance(node[key], str) and has_secret(node[key]):
                    problems.append(_problem(key_path, token, origins, source))
                    node[key] = mask_secrets(node[key])  # other problems must not echo it
                else:
                    walk(node[key], key_path)
        elif isinstance(node, list):
            for index, item in enumerate(node):
                if isinstance(item, str) and has_secret(item):
                    problems.append(_problem((*path, index), token, origins, source))
                    node[index] = mask_secrets(item)
                else:
                    walk(item, (*path, index))

    walk(data, ())
    return problems


# --- pydantic errors -> problems -----------------------------------------------------------


def _translate(
    errors: list[Any], data: dict[str, Any], origins: dict[KeyPath, Origin], source: str
) -> list[Problem]:
    by_path: dict[KeyPath, list[dict[str, Any]]] = {}
    for error in errors:
        key_path = _data_path(error["loc"])
        by_path.setdefault(key_path, []).append(error)
    located = []
    for key_path, path_errors in by_path.items():
        origin = _nearest_origin(key_path, origins)
        where = (origin.source, origin.line) if origin else (source, None)
        located.append((where, key_path, path_errors))
    # Only the first problems are shown (SHOWN_PROBLEMS): the others get a short message, so that
    # thousands of unknown keys cost no did-you-mean search each.
    located.sort(key=lambda item: _order(*item[0]))
    return [
        Problem(
            source=where[0],
            key=mask_secrets(format_key(key_path)),
            message=_message(key_path, path_errors, data)
            if shown < SHOWN_PROBLEMS
            else _short_message(key_path, path_errors),
            line=where[1],
        )
        for shown, (where, key_path, path_errors) in enumerate(located)
    ]


def _short_message(key_path: KeyPath, errors: list[dict[str, Any]]) -> str:
    if errors[0]["type"] == "extra_forbidden":
        return f"unknown key '{key_path[-1]}'"
    return str(errors[0]["msg"])


def _data_path(loc: tuple[Any, ...]) -> KeyPath:
    """pydantic's error location, cut at the first union-member tag it inserts (`list[str]`,
    `literal['all-linear']`): the errors of every member then report once, at the key."""
    path: list[str | int] = []
    for part in loc:
        annotation = _annotation_at(tuple(path))
        in_section = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        in_list = get_origin(annotation) is list and isinstance(part, int)
        if not (in_section or in_list or get_origin(annotation) is dict):
            break
        path.append(part)
    return tuple(path)


def _message(key_path: KeyPath, errors: list[dict[str, Any]], data: dict[str, Any]) -> str:
    kinds = {e["type"] for e in errors}
    error = errors[0]
    if "extra_forbidden" in kinds:
        return _unknown_key_message(key_path)
    if "missing" in kinds:
        return _missing_message(key_path)
    found = _value_at(data, key_path)
    if "literal_error" in kinds and len(errors) == 1:
        expected = error["ctx"]["expected"]
        options = re.findall(r"'([^']*)'", expected)
        message = f"expected one of {', '.join(options)}; found {_show(found)}"
        guess = difflib.get_close_matches(str(found), options, n=1, cutoff=0.5)
        return message + (f". Did you mean '{guess[0]}'?" if guess else "")
    if "too_short" in kinds and key_path == ("rewards",):
        return "list at least one reward, e.g. `- name: correctness`"
    value_errors = [e for e in errors if e["type"] == "value_error"]
    if value_errors:
        return value_errors[0]["msg"].removeprefix("Value error, ")
    bound = next((e for e in errors if e["type"] in _BOUND_TYPES), None)
    if bound is not None:
        what = bound["msg"].removeprefix("Input should be ").removeprefix("List should have ")
        return f"must be {what}; found {_show(found)}"
    return f"expected {_type_name(_annotation_at(key_path))}; found {_show(found)}"


_BOUND_TYPES = {
    "greater_than",
    "greater_than_equal",
    "less_than",
    "less_than_equal",
    "too_short",
    "too_long",
    "finite_number",
}


# Names users bring from TRL, PEFT, Unsloth and axolotl configs, and the key that means it here.
_ALIASES = {
    "rank": "r",
    "lora_r": "r",
    "lora_alpha": "alpha",
    "lora_dropout": "dropout",
    "use_rslora": "rslora",
    "use_gradient_checkpointing": "gradient_checkpointing",
    "model_name": "name",
    "model_name_or_path": "name",
    "base_model": "name",
    "load_in_4bit": "quantization: 4bit",
    "load_in_8bit": "quantization: 8bit",
    "load_in_fp8": "quantization: fp8",
    "lr": "learning_rate",
    "epochs": "num_train_epochs",
    "num_epochs": "num_train_epochs",
    "batch_size": "prompts_per_step",
    "per_device_train_batch_size": "prompts_per_step",
    "max_new_tokens": "max_completion_length",
    "scheduler": "lr_scheduler_type",
    "optimizer": "optim",
    "use_vllm": "use",
    "vllm_mode": "mode",
}


_BATCH_NOTE = (
    " TRL's per_device_train_batch_size counts completions; grpo derives it from "
    "prompts_per_step x num_generations / gradient_accumulation_steps"
)


def _unknown_key_message(key_path: KeyPath) -> str:
    *parent, key = key_path
    known = _known_keys(tuple(parent))
    message = f"unknown key '{key}'"
    alias = _ALIASES.get(str(key))
    if alias is not None and alias.split(":")[0] in known:
        why = _BATCH_NOTE if alias == "prompts_per_step" else ""
        return f"{message}. Did you mean '{alias}'?{why}"
    guess = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    if guess:
        return f"{message}. Did you mean '{guess[0]}'?"
    elsewhere = _sections_with_key(str(key))
    if elsewhere:
        return f"{message}; it belongs under {' or '.join(elsewhere)}"
    if tuple(parent) == ("training",):
        return (
            f"{message}. Keys of trl.GRPOConfig that grpo does not set go under training.trl; "
            f"known keys here: {', '.join(known)}"
        )
    return f"{message}; known keys here: {', '.join(known)}"


def _missing_message(key_path: KeyPath) -> str:
    *parent, key = key_path
    model = _model_at(tuple(parent))
    info = model.model_fields[key] if model is not None and key in model.model_fields else None
    description = f" ({info.description.rstrip('.')})" if info and info.description else ""
    if info and isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
        return f"required section is missing{description}"
    return f"required key is missing{description}"


def _known_keys(parent: KeyPath) -> list[str]:
    model = _model_at(parent)
    return list(model.model_fields) if model is not None else []


def _model_at(path: KeyPath) -> type[BaseModel] | None:
    annotation = _annotation_at(path)
    return (
        annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    )


def _sections_with_key(key: str) -> list[str]:
    """Where else a misplaced key belongs: `learning_rate` -> `training.learning_rate`."""
    found = []
    for section, info in GrpoConfig.model_fields.items():
        model, label = info.annotation, f"{section}.{key}"
        if get_origin(model) is list:
            model, label = get_args(model)[0], f"{section}[N].{key}"
        if isinstance(model, type) and issubclass(model, BaseModel) and key in model.model_fields:
            found.append(label)
    return found


def _value_at(data: Any, key_path: KeyPath) -> Any:
    node = data
    for part in key_path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


_KINDS = {
    bool: "a boolean",
    int: "a number",
    float: "a number",
    str: "text",
    list: "a list",
    dict: "a mapping",
    type(None): "null",
}


def _show(value: Any) -> str:
    kind = _KINDS.get(type(value), type(value).__name__)
    if isinstance(value, dict | list):
        text = repr(value)
        return f"{text} ({kind})" if len(text) <= 60 else kind
    return f"{value!r} ({kind})" if value is not None else "null"


def _type_name(annotation: Any) -> str:
    """A type as users read it in YAML terms: `a number`, `true or false`, `one of a, b`."""
    from grpo_cli.config.reference import type_label

    return type_label(annotation)


def _problem(
    key_path: KeyPath | tuple[Any, ...], message: str, origins: dict[KeyPath, Origin], source: str
) -> Problem:
    origin = _nearest_origin(tuple(key_path), origins)
    return Problem(
        source=origin.source if origin else source,
        key=mask_secrets(format_key(key_path)),
        message=message,
        line=origin.line if origin else None,
    )


def _nearest_origin(key_path: KeyPath, origins: dict[KeyPath, Origin]) -> Origin | None:
    for end in range(len(key_path), 0, -1):
        origin = origins.get(key_path[:end])
        if origin is not None:
            return origin
    return None


def _in_file_order(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: _order(p.source, p.line))


def _order(source: str, line: int | None) -> tuple[bool, str, int]:
    return (source.startswith("--set"), source, line or 0)


def parse_key(dotted: str) -> KeyPath:
    """`rewards[2].weight` -> `("rewards", 2, "weight")`."""
    parts: list[str | int] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", dotted):
        parts.append(int(index) if index else name)
    return tuple(parts)


def format_key(key_path: KeyPath | tuple[Any, ...]) -> str:
    """`("rewards", 2, "weight")` -> `rewards[2].weight`."""
    text = ""
    for part in key_path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
