"""How many CPU threads torch computes with: `--threads`, else `GRPO_THREADS`, else torch's own
default; `train` and `eval` set it the same way and say what they use."""

from __future__ import annotations

import os
from collections.abc import Mapping

from grpo_cli.errors import GrpoError

ENV = "GRPO_THREADS"


def requested_threads(flag: int | None, environ: Mapping[str, str] | None = None) -> int | None:
    """The thread count asked for: the flag (Typer has checked it is >= 1), else GRPO_THREADS;
    None leaves torch's default."""
    if flag is not None:
        return flag
    value = (os.environ if environ is None else environ).get(ENV, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise GrpoError(
            f"{ENV}={value!r} is not a number of threads",
            f"set {ENV} to a whole number from 1 (e.g. {ENV}=1), or unset it for torch's default",
        )
    return int(value)


def apply_threads(flag: int | None, device: str) -> str | None:
    """Sets torch's intra-op thread count when one is asked for, before any heavy work; returns
    the line to print on a CPU run (None on a GPU, where the accelerator does the work).

    Only intra-op threads: GRPO's CPU work is one op at a time, and
    torch.set_num_interop_threads raises once any inter-op work has started (torch/__init__.py
    docs: "can only be called once and before any inter-op parallel work is started"). On a
    shared 2-core machine, 1 thread was 7x faster than 2 (issue 13): cores other processes also
    use make torch's threads wait for each other at every op."""
    import torch

    threads = requested_threads(flag)
    if threads is not None:
        torch.set_num_threads(threads)
    if device != "cpu":
        return None
    if threads is None:
        return (
            f"torch threads: {torch.get_num_threads()} (torch's default; --threads or {ENV} "
            "sets it)"
        )
    source = "--threads" if flag is not None else ENV
    return f"torch threads: {torch.get_num_threads()} (from {source})"
