"""Ctrl-C and SIGTERM before and after the training loop (GracefulStop owns them during it):
stop at once, and make sure the stop is not lost.

Libraries catch more than they should: datasets' fingerprinting wraps dill in a bare `except:`,
which swallows the KeyboardInterrupt a Ctrl-C raises there, and loading would go on. So the
signal is also recorded, and `raise_if_received()` at every phase boundary raises it again.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    def __init__(self) -> None:
        self.received: str | None = None  # "SIGINT" or "SIGTERM", once one arrived
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Interrupts:
        # Python only lets the main thread set handlers; elsewhere the default stays.
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signal.Signals(signum).name
        raise KeyboardInterrupt

    def raise_if_received(self) -> None:
        """Raise a stop that arrived since the last boundary, even if something swallowed it."""
        if self.received is not None:
            raise KeyboardInterrupt
