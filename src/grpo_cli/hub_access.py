"""The Hugging Face Hub, as the loaders meet it: is it reachable, is a token there, is a model or
dataset already in the local cache, and `cache_first`, which loads a Hub id from the cache with
no network when it is there and otherwise fails in seconds, not after a minute of retries, when
the Hub does not answer.

Why: offline, every file huggingface_hub asks for is retried 5 times with 1+2+4+8+8 s of sleep
(huggingface_hub/utils/_http.py: `_http_backoff_base`), and transformers asks for several files.
Measured on a machine without DNS: 53 s for an uncached tokenizer, 24 s for an uncached dataset
(`scripts/bench_offline.py --before`), 156 s for a model and its tokenizer that are cached, and
24 s even with local_files_only=True (transformers 5.17 still looks for an adapter_config.json
online: models/auto/auto_factory.py passes the user's adapter_kwargs, not local_files_only).
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from grpo_cli.config.schema import looks_like_path
from grpo_cli.errors import GrpoError, causes, first_line

if TYPE_CHECKING:
    from grpo_cli.config.schema import GrpoConfig

T = TypeVar("T")

PROBE_TIMEOUT = 3.0  # seconds: the Hub answers in well under 1 s where it can be reached
WEIGHTS = ("model.safetensors", "pytorch_model.bin")
OFFLINE_SET = "HF_HUB_OFFLINE=1 is set"  # why the Hub is not asked, when that is why


def hub_reachable(timeout: float = PROBE_TIMEOUT) -> tuple[bool, str]:
    """(reachable, one phrase saying why) within TIMEOUT seconds, whatever the network does.
    Asks HF_ENDPOINT through huggingface_hub's own HTTP client (its proxies, certificates and
    offline switch), without its retries; never raises."""
    return ask_hub(timeout)()


def ask_hub(timeout: float = PROBE_TIMEOUT) -> Callable[[], tuple[bool, str]]:
    """`hub_reachable`, asked now in the background: calling the result waits for the answer,
    until TIMEOUT seconds after the question at most."""
    from huggingface_hub import constants

    if hub_offline():
        return lambda: (False, OFFLINE_SET)
    endpoint = constants.ENDPOINT
    host = endpoint.split("://", 1)[-1].split("/", 1)[0]
    answer: list[tuple[bool, str]] = []
    started = time.perf_counter()

    def ask() -> None:
        try:
            answer.append(_ask(endpoint, host, timeout, started))
        except BaseException as exc:  # a probe must not raise, whatever the client does
            answer.append((False, f"{host}: {type(exc).__name__}: {first_line(exc, 120)}"))

    # A thread, because httpx's timeout does not cover name resolution: a resolver that never
    # answers would hold getaddrinfo for 5 s per nameserver and attempt.
    thread = threading.Thread(target=ask, name="grpo-hub-probe", daemon=True)
    thread.start()

    def wait() -> tuple[bool, str]:
        thread.join(max(0.0, started + timeout + 0.2 - time.perf_counter()))
        return answer[0] if answer else (False, f"no answer from {host} in {timeout:g} s")

    return wait


def _ask(endpoint: str, host: str, timeout: float, started: float) -> tuple[bool, str]:
    import httpx
    from huggingface_hub.utils import get_session

    try:
        response = get_session().head(endpoint, timeout=timeout, follow_redirects=False)
    except httpx.TimeoutException:
        return False, f"no answer from {host} in {timeout:g} s"
    except httpx.ConnectError as exc:
        return False, f"{host}: {_connect_failure(exc)}"
    except httpx.HTTPError as exc:
        return False, f"{host}: {type(exc).__name__}: {first_line(exc, 120)}"
    seconds = time.perf_counter() - started
    # 407: a proxy that wants credentials; 5xx: a gateway that cannot reach the Hub. Any other
    # answer is the endpoint itself (a mirror may answer 401 or 404 at its root and serve files).
    if response.status_code == 407 or response.status_code >= 500:
        return False, f"{host} answered HTTP {response.status_code} in {seconds:.1f} s"
    return True, f"{host} answered in {seconds:.1f} s"


def _connect_failure(exc: BaseException) -> str:
    text = str(exc)
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "name not resolved (no DNS)"
    if "Connection refused" in text:
        return "connection refused"
    if "Network is unreachable" in text or "No route to host" in text:
        return "network unreachable"
    return f"cannot connect: {first_line(exc, 120)}"


def hub_offline() -> bool:
    """Whether huggingface_hub's offline switch is on, as the loaders obey it: huggingface_hub's
    request hook, transformers (transformers/utils/hub.py imports is_offline_mode) and
    `no_network` all go by huggingface_hub.constants.HF_HUB_OFFLINE, which is read from the
    environment once, when huggingface_hub is imported; a variable set later changes nothing
    they do, so it must change nothing said here either."""
    from huggingface_hub import is_offline_mode

    return is_offline_mode()


def token_present() -> bool:
    """HF_TOKEN or a token stored by `hf auth login`; the token itself is never returned."""
    from huggingface_hub import get_token

    try:
        # offline: a stored OAuth token near expiry is refreshed over the network otherwise
        with no_network():
            return bool(get_token())
    except Exception:  # HF_OIDC_RESOURCE set and its exchange failed: no token to use
        return False


def model_in_cache(name: str, revision: str | None = None) -> bool:
    """A local model folder, or a Hub model whose config.json and complete weights (every shard
    of a sharded checkpoint) are in the local Hugging Face cache at REVISION."""
    if looks_like_path(name) or Path(name).expanduser().is_dir():
        folder = Path(name).expanduser()
        return (folder / "config.json").is_file() and any(
            folder.glob(pattern) for pattern in ("*.safetensors", "*.bin")
        )
    from huggingface_hub import try_to_load_from_cache

    def cached(filename: str) -> str | None:
        # a str is a file; None or the "known missing" marker is not
        path = try_to_load_from_cache(name, filename, revision=revision)
        return path if isinstance(path, str) else None

    if cached("config.json") is None:
        return False
    for weights in WEIGHTS:
        if cached(weights) is not None:
            return True
        index = cached(f"{weights}.index.json")
        if index is not None:
            return _all_shards(index, cached)
    return False


def _all_shards(index: str, cached: Callable[[str], str | None]) -> bool:
    import json

    try:
        shards = set(json.loads(Path(index).read_text(encoding="utf-8"))["weight_map"].values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return bool(shards) and all(cached(shard) is not None for shard in shards)


def dataset_in_cache(source: str, subset: str | None = None) -> bool:
    """Rows that load with no network: synthetic ones, a local file or folder, or a Hub dataset
    (SUBSET of it) that `datasets` has prepared before. That is datasets' own cache, not the Hub
    cache: offline, load_dataset reads only it (datasets/load.py: CachedDatasetModuleFactory),
    so a dataset fetched with `hf download` does not load offline by its id."""
    if source == "synthetic":
        return True
    if looks_like_path(source) or Path(source).expanduser().exists():
        return Path(source).expanduser().exists()
    # datasets/packaged_modules/cache/cache.py: the rule load_dataset itself applies offline
    # (a private name: tests/test_hub_access.py prepares a dataset and checks it is found)
    from datasets.packaged_modules.cache.cache import _find_hash_in_cache

    try:
        _find_hash_in_cache(source, subset, None, {}, None)
    except Exception:  # not there, or several subsets and none named: not loadable offline
        return False
    return True


@dataclass(frozen=True)
class HubItem:
    """A model or dataset a command will load, as the config names it."""

    name: str
    key: str  # the config key (or file) that names it, for the message
    kind: str = "model"  # or "dataset"
    revision: str | None = None
    subset: str | None = None
    # Other repos the loader takes instead of NAME: the copy Unsloth loads for the quantization
    copies: tuple[str, ...] = ()


def config_items(cfg: GrpoConfig) -> list[HubItem]:
    """The config's model and dataset; for a backend that may be Unsloth, the model's copy
    Unsloth downloads instead of it (unsloth_names.unsloth_repo) counts as the model."""
    from grpo_cli.model_source import refuse_missing_run, start_weights
    from grpo_cli.unsloth_names import unsloth_repo

    m, d = cfg.model, cfg.data
    refuse_missing_run(cfg)
    # a grpo sft run (outputs/<run>, which reads like a Hub id) loads local weights, or the
    # base its adapter goes on
    name, revision = start_weights(m.name, m.revision)
    copy = unsloth_repo(name, m.quantization) if m.backend != "trl" else None
    return [
        HubItem(name, "model.name", revision=revision, copies=(copy,) if copy else ()),
        HubItem(d.source, "data.source", "dataset", subset=d.subset),
    ]


def start_probe(items: list[HubItem]) -> Callable[[], tuple[bool, str]]:
    """The Hub asked now, in the background, when ITEMS need it (see `refuse_unreachable`), so
    that the answer is in by the time the libraries are imported."""
    if not _uncached(items):
        return lambda: (True, "not asked: nothing to download")
    return ask_hub()


def refuse_unreachable(
    items: list[HubItem], answer: Callable[[], tuple[bool, str]] = hub_reachable
) -> None:
    """Before the weights and rows are loaded (and, given a `start_probe` ANSWER, without waiting
    for the Hub on top of the imports): refuse at once when an item is a Hub id that does not
    load from the local caches (`cached_as`, which `grpo doctor` shows) and the Hub does not
    answer."""
    wanted = _uncached(items)
    if not wanted:
        return
    reachable, detail = answer()
    if not reachable:
        item = wanted[0]
        raise offline_error(item.name, item.kind, item.key, detail)


def _uncached(items: list[HubItem]) -> list[HubItem]:
    return [i for i in items if is_hub_id(i.name, i.kind) and cached_as(i) is None]


def is_hub_id(name: str, kind: str) -> bool:
    if kind == "dataset" and name == "synthetic":
        return False
    return not (looks_like_path(name) or Path(name).expanduser().exists())


def cached_as(item: HubItem) -> str | None:
    """The repo under which ITEM loads from the local cache with no network, or None: NAME (or,
    for a model, one of its COPIES) spelled exactly as the loaders look it up. The Hub
    cache keeps a repo's case (huggingface_hub/file_download.py, repo_folder_name:
    models--{org}--{name}), so `qwen/qwen2.5-3b-instruct` is not `Qwen/Qwen2.5-3B-Instruct`, and a
    name is not a prefix of another (`Qwen2.5-3B` is not `Qwen2.5-3B-Instruct`)."""
    if item.kind == "model":
        if model_in_cache(item.name, item.revision):
            return item.name
        # a copy is another repo: the config's revision names a commit of NAME, not of it
        return next((copy for copy in item.copies if model_in_cache(copy)), None)
    return item.name if prepared_dataset(item.name, item.subset) else None


def prepared_dataset(source: str, subset: str | None = None) -> bool:
    """`dataset_in_cache`'s rule without importing datasets (seconds, too many before an
    offline refusal): a folder <cache>/<namespace>___<name in snake case>/<subset or any>/
    <version>/<hash>, as datasets/packaged_modules/cache/cache.py (_find_hash_in_cache) globs."""
    *namespace, name = source.split("/")
    folder = Path(_datasets_cache()) / "___".join([*namespace, _snake_case(name)])
    subsets = {p.parts[-3] for p in folder.glob(f"{subset or '*'}/*/*") if p.is_dir()}
    # without a subset, datasets refuses a cache that holds several ("multiple configurations")
    return len(subsets) == 1


def _snake_case(name: str) -> str:
    """datasets/naming.py, camelcase_to_snakecase."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z\d])([A-Z])", r"\1_\2", name).lower()


@contextmanager
def no_network() -> Iterator[None]:
    """huggingface_hub's offline mode for the calls inside: every Hub request fails at once, and
    transformers, datasets, PEFT and Unsloth read their local caches instead."""
    from huggingface_hub import constants

    datasets_config: Any = sys.modules.get("datasets.config")
    saved_env = os.environ.get("HF_HUB_OFFLINE")
    saved_hub = constants.HF_HUB_OFFLINE
    saved_datasets = saved_hub if datasets_config is None else datasets_config.HF_HUB_OFFLINE
    # huggingface_hub's request hook reads constants.HF_HUB_OFFLINE on every request
    # (huggingface_hub/utils/_http.py: hf_request_event_hook); datasets keeps its own copy
    # (datasets/config.py); Unsloth reads the environment (unsloth/models/loader_utils.py:
    # _env_says_offline), and so does a vLLM engine started inside the call.
    constants.HF_HUB_OFFLINE = True
    os.environ["HF_HUB_OFFLINE"] = "1"
    if datasets_config is not None:
        datasets_config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved_hub
        if saved_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved_env
        # datasets imported inside the call copied the switch when it was imported
        datasets_config = sys.modules.get("datasets.config")
        if datasets_config is not None:
            datasets_config.HF_HUB_OFFLINE = saved_datasets


def wanted_network(exc: BaseException) -> bool:
    """EXC (or an exception it came from) says a file was not in the cache and the loader wanted
    the Hub for it: an offline-mode refusal, a missing cache entry, a failed connection."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    for cause in causes(exc):
        if network_failure(cause) or isinstance(cause, LocalEntryNotFoundError):
            return True
        text = str(cause)
        if isinstance(cause, OSError) and ("offline mode" in text or "cached files" in text):
            return True  # transformers' cached_file: "... couldn't find them in the cached files"
    return False


def network_failure(exc: BaseException) -> bool:
    """EXC itself is the network failing: no connection or no answer, from whichever HTTP client
    raised it (huggingface_hub's OfflineModeIsEnabled is a ConnectionError too)."""
    import httpx

    if isinstance(exc, ConnectionError | TimeoutError | httpx.TransportError):
        return True
    # a requests error exists only where a library imported requests; nothing to import here
    requests: Any = sys.modules.get("requests")
    return requests is not None and isinstance(exc, requests.ConnectionError | requests.Timeout)


def cache_first(
    load: Callable[[], T],
    name: str,
    *,
    key: str,
    revision: str | None = None,
    subset: str | None = None,
    kind: str = "model",
) -> T:
    """LOAD() of Hub id NAME (KIND model or dataset, named by config KEY): from the local cache
    with no network when it is there; else, once the Hub answered a short probe, from the Hub.
    When it is not cached and the Hub does not answer, a user error in seconds saying what to
    do. A local path is loaded as it is. A library that maps NAME to another repo (Unsloth's
    4-bit copies) is tried on the cache too before the Hub is refused."""
    if kind == "model" and (looks_like_path(name) or Path(name).expanduser().is_dir()):
        return load()
    cached = model_in_cache(name, revision) if kind == "model" else dataset_in_cache(name, subset)
    detail = ""
    if not cached:
        reachable, detail = hub_reachable()
        if reachable:
            return load()
    try:
        with no_network():
            return load()
    except Exception as exc:
        if not wanted_network(exc):
            raise
        missing = exc
    if cached:  # part of it is cached (a tokenizer file the loader also wants is not)
        reachable, detail = hub_reachable()
        if reachable:
            return load()
    raise offline_error(name, kind, key, detail) from missing


def offline_error(name: str, kind: str, key: str, detail: str) -> GrpoError:
    """NAME is not (completely) in the local cache and the Hub cannot be asked (DETAIL says
    why): the three ways on, for a model or a dataset."""
    return GrpoError(
        f"{key}: {name} is not (completely) in the local cache, and the Hugging Face Hub cannot "
        f"be asked ({detail})",
        offline_hint(name, kind, key, detail),
    )


def offline_hint(name: str, kind: str, key: str, detail: str) -> str:
    """What to do when NAME (a KIND, set by KEY) must come from a Hub that cannot be asked, for
    the reason DETAIL (OFFLINE_SET: the user switched the Hub off): fill the cache, point KEY
    at a local copy, or connect. The load errors of training/models.py say it in these words."""
    if kind == "dataset":
        fill = (
            f"load it once where the Hub is reachable and copy {_datasets_cache()} (where the "
            "prepared rows stay) here"
        )
        local = f"point {key} at a local .jsonl file or folder"
    else:
        fill = (
            f"fetch it where the Hub is reachable (`hf download {name}`) and copy "
            f"{_hub_cache()} here"
        )
        local = f"point {key} at a local model folder"
    if detail == OFFLINE_SET:
        fill += ", or unset HF_HUB_OFFLINE to download it"
    else:
        fill += " (then HF_HUB_OFFLINE=1 skips the Hub on every run)"
    return (
        f"{fill}; or {local}; or connect this machine to the network (HF_ENDPOINT and "
        "HTTPS_PROXY are honoured)"
    )


def _hub_cache() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def _datasets_cache() -> str:
    """datasets' cache folder by datasets' rule (datasets/config.py: HF_DATASETS_CACHE, else
    HF_HOME/datasets, HF_HOME as huggingface_hub reads it); datasets itself is not imported: its
    import takes seconds, too many before an offline refusal."""
    from huggingface_hub import constants

    return os.path.expanduser(
        os.environ.get("HF_DATASETS_CACHE") or os.path.join(constants.HF_HOME, "datasets")
    )
