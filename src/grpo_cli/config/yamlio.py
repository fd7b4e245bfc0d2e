"""Reading YAML with the line of every key, so errors can point at `file:line`.

Every YAML grpo reads from a user (config files, `--set` values, a run's saved config) goes through
`compose`, which bounds what aliases can cost: a 400-byte file of nested aliases (a "billion
laughs") would otherwise expand into billions of values for every walk over the data.
"""

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


# Values that aliases may add beyond those written out: `<<: *defaults` merges and a few reused
# lists stay far below; an alias bomb goes far above. Nesting deeper than this is no config either
# (and deep enough nesting would exhaust Python's recursion in every walk over the data).
ALIAS_BUDGET = 10_000
MAX_DEPTH = 64
# A config is a few KB; a long system prompt makes it tens. A file of megabytes is the wrong file,
# and reading it would take seconds before its first problem could be reported.
MAX_BYTES = 256 * 1024


def compose(loader: yaml.SafeLoader) -> yaml.Node | None:
    """The document's node graph, refused (a MarkedYAMLError) when aliases expand it beyond
    ALIAS_BUDGET values, an alias refers to a node that contains it, or it nests beyond
    MAX_DEPTH."""
    node = loader.get_single_node()
    if node is not None:
        _check_expansion(node)
    return node


def load_text(text: str) -> Any:
    """The data in a YAML text, alias expansion bounded; raises yaml.YAMLError."""
    loader = Loader(text)
    try:
        node = compose(loader)
        return None if node is None else loader.construct_document(node)
    finally:
        loader.dispose()


def parse_scalar(text: str) -> Any:
    """A command-line value read the way the same text would be read in a config file; raises
    yaml.YAMLError when it is not valid YAML."""
    return load_text(text) if text.strip() else ""


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a graph that nests too deep or shares nodes beyond the budget. A graph without
    shared nodes (no aliases) is a tree: one breadth-first pass, fast for any size, says so."""
    seen = {id(root)}
    level = [root]
    for _ in range(MAX_DEPTH):
        below: list[yaml.Node] = []
        for node in level:
            if isinstance(node, yaml.MappingNode):
                for pair in node.value:
                    below += pair
            elif isinstance(node, yaml.SequenceNode):
                below += node.value
        if not below:
            return
        ids = {id(node) for node in below}
        if len(ids) < len(below) or not seen.isdisjoint(ids):
            _check_aliases(root)
            return
        seen |= ids
        level = below
    if any(isinstance(node, yaml.CollectionNode) and node.value for node in level):
        raise _refused(f"nested deeper than {MAX_DEPTH} levels", level[0].start_mark)


def _check_aliases(root: yaml.Node) -> None:
    """Walk the graph once per node (iteratively: no recursion limit), counting for each alias
    the values it stands for; the graph is linear in the text, its expansion need not be."""
    sizes: dict[int, int] = {}  # id(node) -> values it expands to, for nodes walked already
    on_path: set[int] = set()
    extra = 0
    # (node, where it is used, depth, children still to walk)
    stack: list[tuple[yaml.Node, yaml.Mark, int, list[tuple[yaml.Node, yaml.Mark]] | None]] = [
        (root, root.start_mark, 0, None)
    ]
    while stack:
        node, used_at, depth, pending = stack.pop()
        if pending is None:
            if id(node) in sizes:  # an alias: everything it stands for is walked again by readers
                extra += sizes[id(node)]
                if extra > ALIAS_BUDGET:
                    raise _refused(
                        f"aliases here stand for over {ALIAS_BUDGET:,} values in all (an alias "
                        "bomb?)",
                        used_at,
                    )
                continue
            if id(node) in on_path:
                raise _refused("an alias refers to a node that contains it", used_at)
            if depth > MAX_DEPTH:
                raise _refused(f"nested deeper than {MAX_DEPTH} levels", node.start_mark)
            pending = _children(node)
            on_path.add(id(node))
        if pending:
            child, mark = pending.pop()
            stack.append((node, used_at, depth, pending))
            stack.append((child, mark, depth + 1, None))
            continue
        on_path.discard(id(node))
        sizes[id(node)] = 1 + sum(sizes[id(c)] for c, _ in _children(node))


def _children(node: yaml.Node) -> list[tuple[yaml.Node, yaml.Mark]]:
    """A node's children in reverse document order (they are popped), each with the mark of
    where it is used: its key for a mapping value, the item for a sequence item."""
    if isinstance(node, yaml.MappingNode):
        pairs = [(c, k.start_mark) for k, v in node.value for c in (k, v)]
    elif isinstance(node, yaml.SequenceNode):
        pairs = [(item, node.start_mark) for item in node.value]
    else:
        return []
    return pairs[::-1]


class Refused(yaml.MarkedYAMLError):
    """Valid YAML that grpo will not read: it would cost far more than its size."""


def _refused(problem: str, mark: yaml.Mark) -> Refused:
    return Refused(problem=problem, problem_mark=mark)


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
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(
                [
                    Problem(
                        source,
                        "",
                        f"is {size / 1024:,.0f} KB; a config is a few KB (files over "
                        f"{MAX_BYTES // 1024} KB are refused)",
                    )
                ],
                hint="Check that this is the config you meant.",
            )
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
        node = compose(loader)
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
    refused = isinstance(exc, Refused)
    return ConfigError(
        [
            Problem(
                source,
                "",
                what if refused else f"invalid YAML: {what}",
                line=mark.line + 1 if mark else None,
                column=mark.column + 1 if mark else None,
            )
        ],
        hint="Write the values out, or use anchors only for a few shared sections."
        if refused
        else "Fix the YAML syntax at that line and column (indentation and ':' are the "
        "usual suspects).",
    )


def _index_lines(
    node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], problems: list[Problem], source: str
) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):  # `? [a, b]`: unhashable, and no name
                dotted = ".".join(str(p) for p in path)
                problems.append(Problem(source, dotted, "a key must be a plain name", line=line))
                continue
            key = key_node.value
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
