"""The user-error family: a mistake a user can fix ends as `Error:` + `Hint:`, exit code 2."""

from __future__ import annotations

from dataclasses import dataclass

USER_ERROR_EXIT = 2
INTERRUPTED_EXIT = 130  # 128 + SIGINT, what shells report for a Ctrl-C
# Problems listed in one error; the rest are counted. A file of 200,000 typos needs no 35 MB report.
SHOWN_PROBLEMS = 20
# Whether the command being run was given --debug (or GRPO_DEBUG): set by the CLI on every call,
# read where a command starts other processes that must show their tracebacks too.
DEBUG = False


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message as one short line: its first line, or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def causes(exc: BaseException) -> list[BaseException]:
    """EXC and what it was raised from, nearest first: transformers re-raises the Hub's errors
    as a plain OSError `from` the original (transformers/utils/hub.py, cached_files), so a
    cause is looked for down the whole chain."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 16:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


class GrpoError(Exception):
    """A mistake the user can fix. `main()` prints it without a traceback and exits 2."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        text = f"Error: {self.message}"
        if self.hint:
            text += f"\nHint: {self.hint}"
        return text


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a config: where it is, what is wrong, and how to fix it."""

    source: str  # a file path, or "--set" for a command-line override
    key: str  # dotted key path, "" for the file as a whole
    message: str
    line: int | None = None
    column: int | None = None

    @property
    def location(self) -> str:
        where = self.source
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return where

    def describe(self) -> str:
        return f"{self.key}: {self.message}" if self.key else self.message


class ConfigError(GrpoError):
    """All problems found in one config, reported together."""

    default_hint = "`grpo config schema` lists every key with its type, default and meaning."

    def __init__(self, problems: list[Problem], hint: str | None = default_hint):
        self.problems = list(problems)
        super().__init__(self._message(), hint)

    def _message(self) -> str:
        if len(self.problems) == 1:
            p = self.problems[0]
            return f"{p.location}: {p.describe()}"
        sources = sorted({p.source for p in self.problems})
        lines = [f"{len(self.problems)} problems in {', '.join(sources)}:"]
        lines += [f"  {p.location}: {p.describe()}" for p in self.problems[:SHOWN_PROBLEMS]]
        if len(self.problems) > SHOWN_PROBLEMS:
            lines.append(f"  ... and {len(self.problems) - SHOWN_PROBLEMS} more problems")
        return "\n".join(lines)
