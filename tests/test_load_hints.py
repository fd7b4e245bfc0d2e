"""A failed model load names its real cause: the Hub's answer (gated, missing, no such
revision, a refused token), no network, a missing package, an Unsloth refusal, memory, disk;
"check the Hub id and your network" only when nothing more is known."""

from __future__ import annotations

import errno

import httpx
import pytest
from huggingface_hub import constants
from huggingface_hub import errors as hub_errors

from grpo_cli.config.schema import GrpoConfig
from grpo_cli.errors import GrpoError
from grpo_cli.hub_access import OFFLINE_SET, hub_offline, offline_error, wanted_network
from grpo_cli.training.models import load_error

GENERIC = "check the Hub id and your network"
TOKEN = "hf_" + "a1B2c3D4e5" * 4


def failure(name: str, exc: Exception, revision: str | None = None) -> GrpoError:
    model = {"name": name, "revision": revision}
    cfg = GrpoConfig.model_validate({"model": model, "rewards": ["correctness"]})
    return load_error(cfg, "model", exc)


def wrapped(cause: Exception, text: str = "transformers' own words") -> OSError:
    """As transformers raises it: a plain OSError from the Hub's error
    (transformers/utils/hub.py, cached_files)."""
    try:
        raise OSError(text) from cause
    except OSError as exc:
        return exc


def hub_error(kind: type[hub_errors.HfHubHTTPError], status: int) -> hub_errors.HfHubHTTPError:
    request = httpx.Request("GET", "https://huggingface.co/api/models/owner/model")
    return kind(f"{status} Client Error", response=httpx.Response(status, request=request))


@pytest.fixture(autouse=True)
def no_token(monkeypatch, tmp_path):
    """No token, no cache and no offline switch unless a test sets one."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # read when the tests imported it


def test_a_gated_repo_says_to_accept_the_licence_and_whether_a_token_is_set(monkeypatch):
    gated = wrapped(hub_error(hub_errors.GatedRepoError, 403), "You are trying to access a gated")
    hint = failure("meta-llama/Llama-3.2-1B-Instruct", gated).hint or ""
    assert "meta-llama/Llama-3.2-1B-Instruct is gated and no Hub token is set" in hint
    assert "https://huggingface.co/meta-llama/Llama-3.2-1B-Instruct" in hint and GENERIC not in hint
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    hint = failure("meta-llama/Llama-3.2-1B-Instruct", gated).hint or ""
    assert "your token has no access to it" in hint
    assert TOKEN not in hint


@pytest.mark.parametrize(
    ("cause", "revision", "expected"),
    [
        (hub_error(hub_errors.RepositoryNotFoundError, 404), None, "the Hub has no model"),
        (hub_error(hub_errors.RevisionNotFoundError, 404), "v9", "has no revision 'v9'"),
        (hub_error(hub_errors.HfHubHTTPError, 401), None, "the Hub refused your token (401)"),
        (hub_error(hub_errors.HfHubHTTPError, 429), None, "rate-limiting"),
        (hub_error(hub_errors.HfHubHTTPError, 503), None, "the Hub is failing (503)"),
        (httpx.ConnectError("[Errno 111] Connection refused"), None, "cannot be reached"),
        (httpx.ConnectTimeout("timed out"), None, "cannot be reached (ConnectTimeout)"),
    ],
)
def test_the_hubs_answer_is_named(cause, revision, expected):
    hint = failure("owner/model", wrapped(cause), revision).hint or ""
    assert expected in hint and GENERIC not in hint


def test_offline_with_an_empty_cache_says_how_to_fill_it(monkeypatch):
    """The real chain transformers raises for a model that is not in the cache."""
    from transformers import AutoConfig

    with pytest.raises(OSError) as err:
        AutoConfig.from_pretrained("nobody-xyz/no-such-model", local_files_only=True)
    hint = failure("nobody-xyz/no-such-model", err.value).hint or ""
    assert (
        "the Hub cannot be reached and nobody-xyz/no-such-model is not in the local cache" in hint
    )
    assert "`hf download nobody-xyz/no-such-model`" in hint and "HF_HUB_OFFLINE=1" in hint
    # the same three ways on as a refusal before the load says (hub_access.offline_error)
    refusal = offline_error("nobody-xyz/no-such-model", "model", "model.name", "no answer")
    assert hint.endswith(refusal.hint or "")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    hint = failure("nobody-xyz/no-such-model", err.value).hint or ""
    assert hint.startswith("HF_HUB_OFFLINE is set and nobody-xyz/no-such-model is not")
    refusal = offline_error("nobody-xyz/no-such-model", "model", "model.name", OFFLINE_SET)
    assert hint.endswith(refusal.hint or "") and "unset HF_HUB_OFFLINE" in hint


def test_offline_means_the_switch_the_hub_libraries_obey(monkeypatch):
    """HF_HUB_OFFLINE exported after huggingface_hub was imported switches nothing off
    (huggingface_hub.constants reads it at import, and transformers asks constants): the hint
    must not blame it, as the refusals before the load do not (hub_access.hub_offline)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    missing = wrapped(hub_errors.LocalEntryNotFoundError("not in the cache"))
    hint = failure("owner/model", missing).hint or ""
    assert hint.startswith("the Hub cannot be reached") and not hub_offline()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hub_offline()
    assert (failure("owner/model", missing).hint or "").startswith("HF_HUB_OFFLINE is set")


def network_causes() -> list[BaseException]:
    found: list[BaseException] = [
        httpx.ConnectError("[Errno -3] Temporary failure in name resolution"),
        httpx.ReadTimeout("timed out"),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError("timed out"),
        hub_errors.OfflineModeIsEnabled("offline"),
    ]
    try:
        import requests
    except ImportError:
        return found
    return [*found, requests.ConnectionError("refused"), requests.Timeout("timed out")]


@pytest.mark.parametrize("cause", network_causes(), ids=lambda c: type(c).__name__)
def test_a_network_failure_is_one_in_the_load_hint_and_the_cache_fallback(cause):
    """One rule says "the network failed": the load hint blames the network exactly when
    cache_first would have refused with its offline message (hub_access.wanted_network)."""
    assert wanted_network(wrapped(cause))
    hint = failure("owner/model", wrapped(cause)).hint or ""
    assert "cannot be reached" in hint and "connect this machine to the network" in hint
    assert GENERIC not in hint


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        # unsloth_zoo/vllm_utils.py: 4-bit through vLLM >= 0.28 needs the out-of-tree plugin
        (
            RuntimeError(
                "Unsloth: vLLM >= 0.28 moved bitsandbytes out of tree. Install it with "
                "`pip install vllm-bnb-plugin` to use load_in_4bit"
            ),
            "a package the load needs is missing: `pip install vllm-bnb-plugin`",
        ),
        (
            ModuleNotFoundError("No module named 'bitsandbytes'", name="bitsandbytes"),
            "bitsandbytes is not installed",
        ),
        (
            NotImplementedError(
                "Unsloth: Fast inference does not support `trust_remote_code` yet."
            ),
            "Unsloth does not support this model with these settings",
        ),
        (
            ValueError(
                "The repository owner/model contains custom code which must be executed "
                "to correctly load the model. Please pass the argument "
                "`trust_remote_code=True`"
            ),
            "set model.trust_remote_code: true",
        ),
    ],
)
def test_a_setup_problem_is_not_blamed_on_the_hub(exc, expected):
    hint = failure("owner/model", exc).hint or ""
    assert expected in hint and GENERIC not in hint


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        wrapped(MemoryError()),
    ],
)
def test_out_of_memory_is_said_as_such(exc):
    error = failure("owner/model", exc)
    assert "not enough memory to load the model of owner/model" in error.message


def test_a_full_disk_inside_the_chain_is_the_disk_not_the_model(tmp_path):
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "blob"))
    error = failure("owner/model", wrapped(full))
    assert "the disk is full" in error.message


def test_with_no_known_cause_the_generic_hint_remains():
    assert GENERIC in (failure("owner/model", OSError("it failed")).hint or "")
