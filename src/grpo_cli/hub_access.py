"""The Hugging Face Hub from this machine: reachable or not, a token or not, and what is already
in the local cache, each answered in seconds and without downloading anything."""

from __future__ import annotations

import os
import time
from pathlib import Path


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def hub_reachable(timeout: float = 3.0) -> tuple[bool, str]:
    """(reachable, why): one HTTPS request to the Hub's endpoint, answered within `timeout`."""
    import urllib.error
    import urllib.request

    if _offline():
        return False, "HF_HUB_OFFLINE=1: the Hub is not asked"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    started = time.perf_counter()
    try:
        request = urllib.request.Request(f"{endpoint}/api/whoami-v2", method="HEAD")
        urllib.request.urlopen(request, timeout=timeout).close()
    except urllib.error.HTTPError:
        pass  # an answer (401 without a token) is a reachable Hub
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"{endpoint} did not answer: {reason}"
    return True, f"{endpoint} answered in {time.perf_counter() - started:.1f} s"


def token_present() -> bool:
    """A Hub token in HF_TOKEN or saved by `hf auth login`; the token itself is never read out."""
    from huggingface_hub import get_token

    return get_token() is not None


def model_in_cache(name: str, revision: str | None = None) -> bool:
    """The model's config.json is in the Hub cache (its weights may still be partial)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(name, "config.json", revision=revision)
    return isinstance(found, str)


def dataset_in_cache(source: str, subset: str | None = None) -> bool:
    """The dataset was downloaded before: files in the Hub cache, or tables `datasets` built."""
    from huggingface_hub.constants import HF_HUB_CACHE

    hub_folder = Path(HF_HUB_CACHE) / f"datasets--{source.replace('/', '--')}" / "snapshots"
    if hub_folder.is_dir() and any(hub_folder.iterdir()):
        return True
    tables = Path(
        os.environ.get("HF_DATASETS_CACHE")
        or Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "datasets"
    )
    folder = tables / source.replace("/", "___")
    return (folder / subset).is_dir() if subset else folder.is_dir()
