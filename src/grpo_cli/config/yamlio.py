"""Reading YAML with the line of every key, so errors can point at `file:line`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from grpo_cli.errors import ConfigError, Problem

KeyPath = tuple[str | int, ...]

_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # type: ignore[assignment]


class Loader(_Base):  # type: ignore[misc,valid-type]
    """SafeLoader that reads `5e-6` as a number, as YAML 1.2 does (YAML 1.1 wants `5.0e-6`)."""


Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_scalar(text: str) -> Any:
    """A command-line value read the way the same text would be read in a config file."""
    return yaml.load(text, Loader=Loader) if text.strip() else ""


def display_path(path: Path) -> str:
    """A path as the user would write it: relative to the current directory when below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def read_yaml(path: Path) -> tuple[dict[str, Any], dict[KeyPath, int]]:
    """The mapping in `path` and, for every key path, the 1-based line where it is written."""
    source = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [Problem(source, "", "file not found")], hint="Check the path and the current folder."
        ) from None
    except IsADirectoryError:
        raise ConfigError([Problem(source, "", "is a folder, not a YAML file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(source, "", f"cannot be read: {exc}")]) from None

    loader = Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(
                [Problem(source, "", "is empty; a config needs at least model and rewards")]
            )
        if not isinstance(node, yaml.MappingNode):
            raise ConfigError(
                [
                    Problem(
                        source,
                        "",
                        "must be a mapping of sections (model:, rewards:, training:, ...)",
                        line=node.start_mark.line + 1,
                    )
                ]
            )
        lines: dict[KeyPath, int] = {}
        problems: list[Problem] = []
        _index_lines(node, (), lines, problems, source)
        if problems:
            raise ConfigError(problems)
        data = loader.construct_document(node)  # the same node: the text is parsed once
    except yaml.YAMLError as exc:
        raise _invalid_yaml(exc, source) from None
    finally:
        loader.dispose()
    return data, lines


def _invalid_yaml(exc: yaml.YAMLError, source: str) -> ConfigError:
    if not isinstance(exc, yaml.MarkedYAMLError):
        return ConfigError([Problem(source, "", f"invalid YAML: {exc}")])
    mark = exc.problem_mark or exc.context_mark
    what = exc.problem or exc.context or "invalid YAML"
    return ConfigError(
        [
            Problem(
                source,
                "",
                f"invalid YAML: {what}",
                line=mark.line + 1 if mark else None,
                column=mark.column + 1 if mark else None,
            )
        ],
        hint="Fix the YAML syntax at that line and column (indentation and ':' are the "
        "usual suspects).",
    )


def _index_lines(
    node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], problems: list[Problem], source: str
) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                dotted = ".".join(str(p) for p in (*path, key))
                problems.append(
                    Problem(source, dotted, f"written twice (first on line {seen[key]})", line=line)
                )
                continue
            seen[key] = line
            lines[(*path, key)] = line
            _index_lines(value_node, (*path, key), lines, problems, source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _index_lines(item, (*path, index), lines, problems, source)
