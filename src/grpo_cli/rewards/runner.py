"""Rewards as a config asks for them: resolved, checked, bound to their parameters and weights,
and called so that a failing reward stops the run with its name, the row and the exception."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import TYPE_CHECKING, Any

from grpo_cli.errors import GrpoError
from grpo_cli.plugins import PluginError, import_reference, load_plugins
from grpo_cli.rewards.registry import CONTEXT, RewardInfo, describe, registered

if TYPE_CHECKING:
    from grpo_cli.config.schema import GrpoConfig, RewardSpec


class RewardError(GrpoError):
    """A reward function raised, or returned something that is not one number per completion."""

    def __init__(self, name: str, row: int | None, detail: str, where: str = "the batch"):
        self.name, self.row, self.detail, self.where = name, row, detail, where
        at = f" on row {row} of {where}" if row is not None else f" on {where}"
        super().__init__(
            f"reward {name!r} failed{at}: {detail}",
            "fix the reward function (or its params in the config); run with --debug for the "
            "traceback",
        )

    def at(self, row: int | None, where: str) -> RewardError:
        """The same error, with the row counted in the caller's terms (a file line, a step)."""
        error = RewardError(self.name, row, self.detail, where)
        error.__cause__ = self.__cause__
        return error


@dataclass(frozen=True)
class RewardContext:
    """What every reward learns from the config besides its own params: the prompt format."""

    answer_tag: str = "answer"
    reasoning_tag: str | None = "reasoning"
    max_completion_length: int = 512

    @classmethod
    def from_config(cls, cfg: GrpoConfig) -> RewardContext:
        from grpo_cli.data.prompts import PromptFormat

        prompt = PromptFormat.from_config(cfg.data)  # the tags the prompt asks for
        return cls(
            answer_tag=prompt.answer_tag,
            reasoning_tag=prompt.reasoning_tag,
            max_completion_length=cfg.training.max_completion_length,
        )


class BoundReward:
    """One configured reward, callable the way TRL's GRPOTrainer calls reward functions.

    TRL names its metrics after `__name__` (rewards/<name>/mean), hence the attribute.
    """

    def __init__(self, info: RewardInfo, weight: float, kwargs: dict[str, Any]):
        self.info = info
        self.weight = weight
        self.kwargs = kwargs
        self.__name__ = info.name

    def __repr__(self) -> str:
        return f"BoundReward({self.info.name!r}, weight={self.weight})"

    def __call__(self, completions: Sequence[Any], **columns: Any) -> list[float | None]:
        try:
            values = self.info.fn(completions=completions, **{**columns, **self.kwargs})
        except GrpoError:
            raise
        except Exception as exc:
            raise self._locate(completions, columns, exc) from exc
        return self._checked(values, len(completions))

    def _checked(self, values: Any, expected: int) -> list[float | None]:
        try:
            values = list(values)
        except TypeError:
            raise RewardError(
                self.info.name, None, f"returned {type(values).__name__}, not a list of floats"
            ) from None
        if len(values) != expected:
            raise RewardError(
                self.info.name, None, f"returned {len(values)} values for {expected} completions"
            )
        out: list[float | None] = []
        for row, value in enumerate(values):
            if value is None:  # TRL's "not applicable to this row"
                out.append(None)
                continue
            if isinstance(value, bool) or not isinstance(value, Real):
                raise RewardError(self.info.name, row, f"returned {value!r}, not a number")
            value = float(value)
            if not math.isfinite(value):
                raise RewardError(self.info.name, row, f"returned {value}")
            out.append(value)
        return out

    def _locate(
        self, completions: Sequence[Any], columns: dict[str, Any], exc: Exception
    ) -> RewardError:
        """Find the first row that fails on its own, so the message can name it."""
        n = len(completions)
        detail = f"{type(exc).__name__}: {exc}"
        if n > 1:
            for row in range(n):
                sliced = {
                    k: v[row : row + 1] if isinstance(v, list) and len(v) == n else v
                    for k, v in columns.items()
                }
                try:
                    self.info.fn(
                        completions=list(completions[row : row + 1]), **{**sliced, **self.kwargs}
                    )
                except Exception as row_exc:
                    error = RewardError(self.info.name, row, f"{type(row_exc).__name__}: {row_exc}")
                    error.__cause__ = row_exc
                    return error
        return RewardError(self.info.name, 0 if n == 1 else None, detail)


def resolve(name: str) -> RewardInfo:
    """A registered reward by name, or the function a `module:function` / `file.py:function`
    reference names (plugins must be loaded first)."""
    known = registered()
    if name in known:
        return known[name]
    if ":" in name:
        fn = import_reference(name)
        for info in known.values():  # a decorated function keeps its registered name
            if info.fn is fn:
                return info
        return describe(fn, name=getattr(fn, "__name__", name))
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    suggestion = f"did you mean {close[0]!r}? " if close else ""
    raise GrpoError(
        f"unknown reward {name!r}: {suggestion}registered rewards are {', '.join(known)}",
        "`grpo rewards list` describes each; a plugin in rewards/ can add one, or name a "
        "function as package.module:function or path/to/file.py:function",
    )


def bind(spec: RewardSpec, context: RewardContext) -> BoundReward:
    """A reward spec resolved and bound to its params; raises on any problem."""
    info = resolve(spec.name)
    problems = param_problems(info, spec.params)
    if problems:
        raise GrpoError(f"reward {spec.name!r}: {problems[0][1]}")
    weight = info.weight if spec.weight is None else spec.weight
    return BoundReward(info, weight, {**_context_kwargs(info, context), **spec.params})


def build_rewards(
    specs: Iterable[RewardSpec], context: RewardContext, plugin_dirs: Iterable[str] = ()
) -> list[BoundReward]:
    """Every configured reward, ready for TRL or `grpo score` (plugins loaded first)."""
    load_plugins(plugin_dirs)
    return [bind(spec, context) for spec in specs]


def reward_config_problems(
    specs: Sequence[RewardSpec], plugin_dirs: Sequence[str]
) -> list[tuple[str, str]]:
    """Config-time problems of the rewards list: (dotted key, message) pairs."""
    try:
        load_plugins(plugin_dirs)
    except PluginError as exc:
        return [("reward_plugins" if plugin_dirs else "rewards", exc.message)]
    problems: list[tuple[str, str]] = []
    weights = []
    for index, spec in enumerate(specs):
        try:
            info = resolve(spec.name)
        except GrpoError as exc:
            problems.append((f"rewards[{index}].name", exc.message))
            continue
        weights.append(info.weight if spec.weight is None else spec.weight)
        for key, message in param_problems(info, spec.params):
            problems.append((f"rewards[{index}].params{'.' + key if key else ''}", message))
    if weights and len(weights) == len(specs) and not any(weights):
        problems.append(("rewards", "every reward has weight 0, so there is nothing to train on"))
    return problems


def param_problems(info: RewardInfo, params: dict[str, Any]) -> list[tuple[str, str]]:
    """Unknown parameters, values of the wrong type, and values the reward itself refuses."""
    problems: list[tuple[str, str]] = []
    accepted = list(info.params)
    for key, value in params.items():
        if key not in info.params:
            close = difflib.get_close_matches(key, accepted, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            listed = ", ".join(accepted) if accepted else "none"
            problems.append(
                (key, f"{info.name} has no parameter {key!r}: {hint}its parameters are {listed}")
            )
            continue
        expected = _type_problem(info.params[key], value)
        if expected:
            problems.append((key, f"{info.name} expects {expected}, found {value!r}"))
    if problems:
        return problems
    try:  # a reward refuses a bad value (e.g. a share above 1) with ValueError on any batch
        info.fn(completions=[], answer=[], prompts=[], completion_ids=[], **params)
    except ValueError as exc:
        problems.append(("", f"{info.name} refuses these params: {exc}"))
    except Exception:  # other failures on an empty batch say nothing about the params
        pass
    return problems


def _type_problem(default: Any, value: Any) -> str | None:
    if default is None:
        return None
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(default, Real):
        ok = isinstance(value, Real) and not isinstance(value, bool)
        if ok and isinstance(default, int) and not isinstance(value, int):
            return "a whole number"
        return None if ok else "a number"
    if isinstance(default, str):
        return None if isinstance(value, str) else "text"
    return None


def _context_kwargs(info: RewardInfo, context: RewardContext) -> dict[str, Any]:
    """The prompt-format values every reward receives (a reward's own params override them)."""
    return {key: getattr(context, key) for key in CONTEXT}
