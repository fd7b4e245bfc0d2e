"""Tests that need a package the base install lacks say which, and why, and skip without it."""

from __future__ import annotations

import importlib.util
import os

import pytest


def require(module: str, why: str) -> None:
    """Skip the calling test when `module` is not installed. Under CI (CI=true), where
    scripts/test.sh installs every optional package, a missing one fails the test instead, so a
    broken install is never a silent skip."""
    if importlib.util.find_spec(module) is not None:
        return
    message = f"{module} is not installed: {why}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)
