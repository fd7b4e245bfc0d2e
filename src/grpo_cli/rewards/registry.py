"""The reward registry: `@reward("name")` registers a function under a name a config can use.

The contract of a reward function (checked when a config is validated):
- it accepts `completions` (a list: strings, or chat messages `[{"role": "assistant", ...}]`) and
  `**kwargs`, and returns one float (or None: not applicable) per completion;
- the dataset's columns arrive as keyword lists (`answer`, `question`, ...), with TRL's `prompts`,
  `completion_ids` and `trainer_state`, and the prompt format of the config (`answer_tag`,
  `reasoning_tag`, `max_completion_length`);
- its parameters are the other arguments with a default value; `params:` in the config sets them.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from grpo_cli.errors import GrpoError

# A reward returns one score (or None: not applicable) per completion.
RewardFn = Callable[..., Sequence[float | None]]
_Reward = TypeVar("_Reward", bound=RewardFn)

# Filled from the config's data and training sections, not from `params:`.
CONTEXT = {
    "answer_tag": "data.answer_tag",
    "reasoning_tag": "data.reasoning_tag",
    "max_completion_length": "training.max_completion_length",
}
# Passed by TRL (or `grpo score`) to every reward; never parameters.
CALL_ARGUMENTS = (
    "completions",
    "prompts",
    "completion_ids",
    "trainer_state",
    "log_extra",
    "log_metric",
    "environments",
    "answer",
    "question",
    "prompt",
)


class RegistryError(GrpoError):
    """Two different functions claim one reward name, or a function breaks the contract."""


@dataclass(frozen=True)
class RewardInfo:
    """A reward function with what `grpo rewards list` shows about it."""

    name: str
    fn: RewardFn
    weight: float
    description: str
    source: str
    params: dict[str, Any] = field(default_factory=dict)  # name -> default

    def describe_params(self) -> str:
        shown = []
        for key, default in self.params.items():
            value = f"({CONTEXT[key]})" if key in CONTEXT else json.dumps(default)
            shown.append(f"{key}: {value}")
        return "\n".join(shown)


_REWARDS: dict[str, RewardInfo] = {}


def reward(
    name: str | None = None, *, weight: float = 1.0, description: str | None = None
) -> Callable[[_Reward], _Reward]:
    """Register a reward function: `@reward("correctness")` above `def correctness(...)`.

    `weight` is the default weight shown by `grpo rewards list` (a config's `weight:` replaces
    it); the description defaults to the first line of the docstring.
    """

    def register(fn: _Reward) -> _Reward:
        info = describe(fn, name=name or fn.__name__, weight=weight, description=description)
        existing = _REWARDS.get(info.name)
        if existing is not None and not _same_function(existing.fn, fn):
            raise RegistryError(
                f"reward name {info.name!r} is registered twice: by {existing.source} and by "
                f"{info.source}",
                'give one of them another name with @reward("...")',
            )
        _REWARDS[info.name] = info
        return fn

    return register


def describe(
    fn: RewardFn, name: str, weight: float = 1.0, description: str | None = None
) -> RewardInfo:
    """Check `fn` against the contract and collect its parameters."""
    source = _source_of(fn)
    problem = signature_problem(fn)
    if problem:
        raise RegistryError(f"reward {name!r} ({source}) {problem}", _CONTRACT_HINT)
    if description is None:
        doc = inspect.getdoc(fn) or ""
        description = " ".join(doc.split("\n\n")[0].split())
    return RewardInfo(name, fn, float(weight), description, source, parameters(fn))


_CONTRACT_HINT = (
    "a reward is def my_reward(completions, **kwargs) -> list[float]; see rewards/README.md"
)


def signature_problem(fn: Callable[..., Any]) -> str | None:
    """Why `fn` cannot be a reward function, or None when it can."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return "has no inspectable signature"
    kinds = {p.name: p.kind for p in sig.parameters.values()}
    if not any(k is inspect.Parameter.VAR_KEYWORD for k in kinds.values()):
        return "must accept **kwargs (TRL passes every dataset column as a keyword)"
    if "completions" not in kinds and not any(
        k is inspect.Parameter.VAR_POSITIONAL for k in kinds.values()
    ):
        return "must accept a `completions` argument"
    if kinds.get("completions") is inspect.Parameter.POSITIONAL_ONLY:
        return "must accept `completions` by keyword (TRL calls completions=...)"
    return None


def parameters(fn: Callable[..., Any]) -> dict[str, Any]:
    """The settable parameters of a reward: its arguments with defaults, in order."""
    sig = inspect.signature(fn)
    return {
        p.name: p.default
        for p in sig.parameters.values()
        if p.default is not inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
        and p.name not in CALL_ARGUMENTS
    }


def get(name: str) -> RewardInfo | None:
    return _REWARDS.get(name)


def registered() -> dict[str, RewardInfo]:
    """Every registered reward by name, built-ins included, sorted by name."""
    from grpo_cli.rewards import builtin  # noqa: F401  (registers the built-ins)

    return dict(sorted(_REWARDS.items()))


def snapshot() -> dict[str, RewardInfo]:
    return dict(_REWARDS)


def restore(saved: dict[str, RewardInfo]) -> None:
    _REWARDS.clear()
    _REWARDS.update(saved)


def _same_function(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    """The same function imported twice (a plugin file loaded again) is not a clash."""
    return (getattr(a, "__qualname__", None), _source_of(a)) == (
        getattr(b, "__qualname__", None),
        _source_of(b),
    )


def _source_of(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", "") or ""
    if module.startswith("grpo_cli.rewards."):
        return "built-in"
    try:
        file = inspect.getsourcefile(fn)
    except TypeError:
        file = None
    if file and module.startswith("grpo_plugin_"):
        from grpo_cli.config.yamlio import display_path

        return display_path(Path(file))
    return f"{module}:{getattr(fn, '__qualname__', fn)}"
