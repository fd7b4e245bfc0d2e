"""The CPU thread count: the flag, else GRPO_THREADS, else torch's default, and what is said."""

from __future__ import annotations

import pytest

from grpo_cli.errors import GrpoError
from grpo_cli.threads import ENV, apply_threads, requested_threads


@pytest.fixture
def torch_threads():
    """torch's thread count, put back after the test."""
    import torch

    before = torch.get_num_threads()
    yield torch
    torch.set_num_threads(before)


def test_the_flag_wins_over_the_environment():
    assert requested_threads(3, {ENV: "1"}) == 3
    assert requested_threads(None, {ENV: " 2 "}) == 2
    assert requested_threads(None, {}) is None
    assert requested_threads(None, {ENV: ""}) is None


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "two", "1e3"])
def test_a_bad_environment_value_is_refused_by_name(value):
    with pytest.raises(GrpoError) as err:
        requested_threads(None, {ENV: value})
    assert ENV in err.value.args[0] and repr(value) in err.value.args[0]
    assert f"{ENV}=1" in str(err.value.hint)


def test_the_count_asked_for_is_what_torch_uses(torch_threads, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    line = apply_threads(1, "cpu")
    assert torch_threads.get_num_threads() == 1
    assert line == "torch threads: 1 (from --threads)"
    monkeypatch.setenv(ENV, "2")
    assert apply_threads(None, "cpu") == "torch threads: 2 (from GRPO_THREADS)"
    assert torch_threads.get_num_threads() == 2


def test_torchs_default_is_left_alone_and_said(torch_threads, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    torch_threads.set_num_threads(3)  # what torch would have chosen on this machine
    assert apply_threads(None, "cpu") == (
        "torch threads: 3 (torch's default; --threads or GRPO_THREADS sets it)"
    )
    assert torch_threads.get_num_threads() == 3


def test_nothing_is_said_on_a_gpu(torch_threads, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert apply_threads(1, "cuda") is None
    assert torch_threads.get_num_threads() == 1, "still set: data loading and rewards run on CPU"
