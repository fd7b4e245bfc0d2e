"""The Hub as the loaders meet it: a probe that answers in bounded time whatever the network does,
cache-first loads that need no network, and an uncached id refused at once, not after retries.

The network is simulated: `hub` turns every HTTP request huggingface_hub sends into a failure of
the kind asked for (and counts them), so these tests behave the same on a connected machine."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from grpo_cli import hub_access, unsloth_names
from grpo_cli.errors import GrpoError
from grpo_cli.hub_access import (
    HubItem,
    cache_first,
    dataset_in_cache,
    hub_reachable,
    model_in_cache,
    no_network,
    refuse_unreachable,
    token_present,
)
from tests.conftest import smoke_args

CACHED = "fake-org/tiny-qwen2"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
FAILURES = {
    "dns": httpx.ConnectError("[Errno -2] Name or service not known"),
    "refused": httpx.ConnectError("[Errno 111] Connection refused"),
    "blackhole": httpx.ConnectTimeout("timed out"),
}


class FakeHub:
    """Every request huggingface_hub sends fails as KIND; `requests` lists their URLs."""

    def __init__(self) -> None:
        self.kind = "dns"
        self.requests: list[str] = []

    def send(self, client: httpx.Client, request: httpx.Request, **kwargs: object) -> None:
        self.requests.append(str(request.url))
        raise FAILURES[self.kind]


# what makes huggingface_hub (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE) or datasets offline, or
# points them at another cache: a child that must reach the (closed) Hub starts without them
OFFLINE_VARIABLES = (
    "HF_HUB_CACHE",
    "HF_DATASETS_CACHE",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_DATASETS_OFFLINE",
)


@pytest.fixture
def hub(monkeypatch, tmp_path) -> FakeHub:
    """No network, an empty Hub cache and datasets cache in TMP_PATH, no token."""
    import datasets
    from huggingface_hub import constants

    fake = FakeHub()
    monkeypatch.setattr(
        httpx.Client, "send", lambda client, request, **kw: fake.send(client, request)
    )
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "token"))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf" / "datasets")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    return fake


def cache_model(folder: Path, repo: str, cache: Path, files: list[str] | None = None) -> Path:
    """FOLDER's files as huggingface_hub stores a download of REPO in CACHE (refs/main names the
    snapshot; blobs are left out, the loaders read the snapshot's files)."""
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(COMMIT)
    for file in folder.iterdir():
        if files is None or file.name in files:
            shutil.copy(file, snapshot / file.name)
    return snapshot


def cache_dataset(tmp_path: Path, repo: str, subset: str, rows: list[dict[str, str]]) -> None:
    """ROWS as `datasets` keeps a prepared Hub dataset: CACHE/<owner>___<name>/<subset>/<version>/
    <hash>/ with dataset_info.json and <name>-train.arrow (datasets/packaged_modules/cache)."""
    import datasets

    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    prepared = tmp_path / "prepared"
    with no_network():  # the json builder would report a download to the Hub
        datasets.load_dataset(
            "json", data_files=str(source), split="train", cache_dir=str(prepared)
        )
    made = next(prepared.glob("json/*/*/*/dataset_info.json")).parent
    owner, name = repo.split("/")
    target = Path(datasets.config.HF_DATASETS_CACHE) / f"{owner}___{name}" / subset / "0.0.0" / "a1"
    target.mkdir(parents=True)
    info = json.loads((made / "dataset_info.json").read_text())
    info.update(config_name=subset, dataset_name=name, builder_name=name)
    for split in info["splits"].values():
        split["dataset_name"] = name
    (target / "dataset_info.json").write_text(json.dumps(info))
    shutil.copy(made / "json-train.arrow", target / f"{name}-train.arrow")


# -- hub_reachable --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "detail"),
    [
        ("dns", "name not resolved (no DNS)"),
        ("refused", "connection refused"),
        ("blackhole", "no answer from huggingface.co in 3 s"),
    ],
)
def test_an_unreachable_hub_is_told_by_its_kind_in_one_request(hub, kind, detail):
    hub.kind = kind
    assert hub_reachable() == (
        False,
        detail if kind == "blackhole" else f"huggingface.co: {detail}",
    )
    assert len(hub.requests) == 1  # no retries


def test_offline_mode_is_reported_without_a_request(hub, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hub_reachable() == (False, "HF_HUB_OFFLINE=1 is set")
    assert hub.requests == []


def test_a_client_that_hangs_is_cut_off_at_the_timeout(hub, monkeypatch):
    """A resolver that never answers blocks getaddrinfo beyond httpx's timeouts."""
    release = threading.Event()
    monkeypatch.setattr(hub_access, "_ask", lambda *args: (release.wait(), (True, "late"))[1])
    try:
        assert hub_reachable(timeout=0.2) == (False, "no answer from huggingface.co in 0.2 s")
    finally:
        release.set()


class Answer(BaseHTTPRequestHandler):
    status = 200

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    ("status", "reachable"), [(200, True), (404, True), (407, False), (503, False)]
)
def test_hf_endpoint_is_asked_and_a_refusing_proxy_is_no_hub(monkeypatch, status, reachable):
    from huggingface_hub import constants

    handler = type("Handler", (Answer,), {"status": status})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(constants, "ENDPOINT", f"http://{host}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    try:
        ok, detail = hub_reachable()
    finally:
        server.shutdown()
    assert ok is reachable
    assert detail.startswith(f"{host} answered " + ("in" if reachable else f"HTTP {status}"))


def test_a_server_that_accepts_but_never_answers_is_unreachable(monkeypatch):
    from huggingface_hub import constants

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # connections complete in the backlog; nothing ever reads them
    host = f"127.0.0.1:{silent.getsockname()[1]}"
    monkeypatch.setattr(constants, "ENDPOINT", f"http://{host}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    try:
        assert hub_reachable(timeout=0.3) == (False, f"no answer from {host} in 0.3 s")
    finally:
        silent.close()


# -- token_present ---------------------------------------------------------------------------


def test_a_token_is_found_in_the_environment_or_the_login_file(hub, monkeypatch, tmp_path):
    assert token_present() is False
    (tmp_path / "token").write_text("hf_stored0123456789")
    assert token_present() is True
    (tmp_path / "token").unlink()
    monkeypatch.setenv("HF_TOKEN", "hf_environment0123456789")
    assert token_present() is True
    assert hub.requests == []


# -- model_in_cache / dataset_in_cache -----------------------------------------------------


def test_a_model_is_cached_only_with_its_config_and_all_its_weights(hub, tiny_model, tmp_path):
    cache = tmp_path / "hub"
    cache_model(tiny_model, CACHED, cache)
    cache_model(tiny_model, "fake-org/no-weights", cache, ["config.json", "tokenizer.json"])
    assert model_in_cache(CACHED) is True
    assert model_in_cache(CACHED, revision=COMMIT) is True
    assert model_in_cache(CACHED, revision="v2") is False  # another revision is not cached
    assert model_in_cache("fake-org/no-weights") is False
    assert model_in_cache("fake-org/never-downloaded") is False
    assert model_in_cache(str(tiny_model)) is True  # a local folder
    assert hub.requests == []


def test_a_sharded_model_with_a_missing_shard_is_not_cached(hub, tiny_model, tmp_path):
    snapshot = cache_model(tiny_model, "fake-org/sharded", tmp_path / "hub", ["config.json"])
    index = {"weight_map": {"a": "model-1-of-2.safetensors", "b": "model-2-of-2.safetensors"}}
    (snapshot / "model.safetensors.index.json").write_text(json.dumps(index))
    (snapshot / "model-1-of-2.safetensors").write_bytes(b"x")
    assert model_in_cache("fake-org/sharded") is False
    (snapshot / "model-2-of-2.safetensors").write_bytes(b"x")
    assert model_in_cache("fake-org/sharded") is True


def test_a_dataset_is_cached_once_datasets_prepared_that_subset(hub, tmp_path):
    cache_dataset(tmp_path, "someone/math", "main", [{"question": "1+1?", "answer": "#### 2"}])
    assert dataset_in_cache("someone/math", "main") is True
    assert dataset_in_cache("someone/math", "socratic") is False
    assert dataset_in_cache("someone/other", "main") is False
    assert dataset_in_cache("synthetic") is True
    assert hub.requests == []


# -- cache_first ------------------------------------------------------------------------------


def test_a_cached_model_trains_with_no_network(hub, cli, tiny_model, tmp_path):
    cache_model(tiny_model, CACHED, tmp_path / "hub")
    result = cli(*smoke_args(tiny_model, tmp_path, "--set", f"model.name={CACHED}"))
    assert result.code == 0, result.err
    assert (tmp_path / "outputs" / "smoke-cpu" / "adapter" / "adapter_config.json").is_file()
    # Only TRL's telemetry, which ignores a failure; in particular PEFT does not ask, on each
    # save, whether the base's vocabulary changed (training/models.py, saved_without_hub_lookup)
    assert [url for url in hub.requests if "/api/telemetry/" not in url] == []


def test_a_cached_model_evaluates_with_no_network(hub, cli, tiny_model, tmp_path, monkeypatch):
    from tests.conftest import CONFIGS

    cache_model(tiny_model, CACHED, tmp_path / "hub")
    monkeypatch.chdir(tmp_path)
    result = cli("eval", CONFIGS / "smoke_cpu.yaml", "--set", f"model.name={CACHED}", "-n", "2")
    assert result.code == 0, result.err
    assert hub.requests == []


@pytest.mark.parametrize("kind", ["dns", "refused", "blackhole"])
def test_an_uncached_model_is_refused_after_one_request_saying_what_to_do(
    hub, cli, tiny_model, tmp_path, kind
):
    hub.kind = kind
    result = cli(*smoke_args(tiny_model, tmp_path, "--set", "model.name=nobody/uncached"))
    assert result.code == 2
    error, hint = result.err.strip().splitlines()[-2:]
    assert error.startswith("Error: model.name: nobody/uncached is not (completely) in the local")
    assert "hf download nobody/uncached" in hint and "HF_HUB_OFFLINE=1" in hint
    assert "local model folder" in hint and "network" in hint
    assert "Traceback" not in result.err
    assert len(hub.requests) == 1  # the probe; no retries


def test_an_uncached_model_under_hf_hub_offline_asks_to_unset_it(hub, monkeypatch):
    from huggingface_hub import constants
    from transformers import AutoConfig

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(GrpoError) as err:
        cache_first(
            partial(AutoConfig.from_pretrained, "nobody/uncached"), "nobody/uncached", key="k"
        )
    assert "(HF_HUB_OFFLINE=1 is set)" in err.value.message
    assert "unset HF_HUB_OFFLINE" in (err.value.hint or "")
    assert hub.requests == []


def test_a_cached_dataset_loads_with_no_network_and_an_uncached_one_is_refused(hub, tmp_path):
    from grpo_cli.data.loading import read_split

    cache_dataset(tmp_path, "someone/math", "main", [{"question": "1+1?", "answer": "#### 2"}])
    rows = read_split("someone/math", "train", subset="main")
    assert rows[0] == {"question": "1+1?", "answer": "#### 2"}
    assert hub.requests == []
    with pytest.raises(GrpoError) as err:
        read_split("someone/other", "train", subset="main")
    assert err.value.message.startswith("data.source: someone/other is not (completely) in")
    assert "local .jsonl" in (err.value.hint or "")
    assert len(hub.requests) == 1


def fake_load(calls: list[bool], works_offline: bool) -> object:
    """A loader that records whether it ran offline, and finds its files only where told."""
    from huggingface_hub import constants
    from huggingface_hub.errors import OfflineModeIsEnabled

    calls.append(constants.HF_HUB_OFFLINE)
    if constants.HF_HUB_OFFLINE and not works_offline:
        raise OSError("couldn't find them in the cached files") from OfflineModeIsEnabled("off")
    return "model"


def test_a_partly_cached_model_is_completed_from_the_hub_when_it_answers(
    hub, tiny_model, tmp_path, monkeypatch
):
    cache_model(tiny_model, CACHED, tmp_path / "hub")
    monkeypatch.setattr(hub_access, "hub_reachable", lambda: (True, "answered"))
    calls: list[bool] = []
    assert cache_first(partial(fake_load, calls, False), CACHED, key="model.name") == "model"
    assert calls == [True, False]  # the cache first, then the Hub


def test_a_name_the_library_maps_to_a_cached_copy_loads_when_the_hub_is_down(hub):
    """Unsloth loads unsloth/...-bnb-4bit for model.name: only the library knows that name."""
    calls: list[bool] = []
    assert cache_first(partial(fake_load, calls, True), "org/mapped", key="model.name") == "model"
    assert calls == [True]


def test_a_cached_model_that_fails_for_another_reason_keeps_its_error(hub, tiny_model, tmp_path):
    cache_model(tiny_model, CACHED, tmp_path / "hub")

    def broken() -> None:
        raise ValueError("unsupported model type")

    with pytest.raises(ValueError, match="unsupported model type"):
        cache_first(broken, CACHED, key="model.name")
    assert hub.requests == []


def test_offline_mode_is_restored_after_the_call(hub):
    import os

    import datasets
    from huggingface_hub import constants

    with no_network():
        assert constants.HF_HUB_OFFLINE and datasets.config.HF_HUB_OFFLINE
        assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert not constants.HF_HUB_OFFLINE and not datasets.config.HF_HUB_OFFLINE
    assert "HF_HUB_OFFLINE" not in os.environ


# -- refuse_unreachable: before the libraries are imported ----------------------------------


def test_eval_of_an_uncached_model_is_refused_before_any_ml_library_is_imported(tmp_path):
    """What makes an offline refusal take seconds, not the imports' seconds as well. (grpo train
    imports torch first, to report what this machine cannot run before what it cannot fetch;
    its probe runs meanwhile.)"""
    import subprocess
    import sys

    from tests.conftest import CONFIGS

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    code = (
        "import sys\nfrom grpo_cli.cli import main\n"
        f"rc = main(['eval', {str(CONFIGS / 'smoke_cpu.yaml')!r}, "
        "'--set', 'model.name=nobody/uncached'])\n"
        "heavy = ('torch', 'transformers', 'datasets', 'trl', 'peft')\n"
        "print('HEAVY', [m for m in heavy if m in sys.modules], rc, file=sys.stderr)\n"
    )
    env = {**os.environ, "HF_ENDPOINT": closed, "HF_HOME": str(tmp_path / "hf")}
    for variable in OFFLINE_VARIABLES:
        env.pop(variable, None)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert "HEAVY [] 2" in done.stderr, done.stderr
    assert "Error: model.name: nobody/uncached is not (completely) in the local cache" in (
        done.stderr
    )
    assert "connection refused" in done.stderr


def test_a_copy_unsloth_would_load_or_a_prepared_dataset_is_not_refused(hub, tiny_model, tmp_path):
    copy = "unsloth/Qwen2.5-3B-Instruct-unsloth-bnb-4bit"
    model = HubItem("Qwen/Qwen2.5-3B-Instruct", "model.name", copies=(copy,))
    data = HubItem("openai/gsm8k", "data.source", "dataset", subset="main")
    cache_model(tiny_model, copy, tmp_path / "hub")
    refuse_unreachable([model])
    assert hub_access.cached_as(model) == copy
    with pytest.raises(GrpoError, match="data.source: openai/gsm8k is not"):
        refuse_unreachable([model, data])
    assert len(hub.requests) == 1
    cache_dataset(tmp_path, "openai/gsm8k", "main", [{"question": "1+1?", "answer": "#### 2"}])
    refuse_unreachable([model, data])
    assert len(hub.requests) == 1


def test_only_the_exact_repo_counts_as_cached(hub, tiny_model, tmp_path):
    """Not a prefix of another repo, not another spelling: huggingface_hub looks a repo up in
    models--{org}--{name} with its case kept (file_download.py, repo_folder_name)."""
    cache_model(tiny_model, "Qwen/Qwen2.5-3B-Instruct", tmp_path / "hub")
    (tmp_path / "hub" / "models--unsloth--Qwen2.5-3B-bnb-4bit").mkdir()  # an empty folder
    assert hub_access.cached_as(HubItem("Qwen/Qwen2.5-3B-Instruct", "model.name")) is not None
    for name in ("Qwen/Qwen2.5-3B", "qwen/qwen2.5-3b-instruct", "Qwen/Qwen2.5-3B-Instruct-AWQ"):
        item = HubItem(name, "model.name", copies=("unsloth/Qwen2.5-3B-bnb-4bit",))
        assert hub_access.cached_as(item) is None, name
        with pytest.raises(GrpoError, match=f"model.name: {name} is not"):
            refuse_unreachable([item])
    cache_dataset(tmp_path, "openai/gsm8k-extra", "main", [{"question": "q", "answer": "#### 1"}])
    assert hub_access.cached_as(HubItem("openai/gsm8k", "data.source", "dataset")) is None


def test_the_unsloth_copy_counts_only_for_a_backend_that_may_be_unsloth():
    from grpo_cli.config.schema import GrpoConfig
    from grpo_cli.hub_access import config_items

    def copies(**model: str) -> tuple[str, ...]:
        raw = {"model": {"name": "Qwen/Qwen2.5-3B-Instruct", **model}, "rewards": ["correctness"]}
        return config_items(GrpoConfig.model_validate(raw))[0].copies

    if not unsloth_names.tables():
        pytest.skip("unsloth is not installed: its mapper names the copies")
    # unsloth/models/mapper.py: the dynamic 4-bit upload is the one FLOAT_TO_INT_MAPPER gives
    assert copies(quantization="4bit") == ("unsloth/Qwen2.5-3B-Instruct-unsloth-bnb-4bit",)
    assert copies(quantization="4bit", backend="unsloth") == copies(quantization="4bit")
    assert copies(quantization="none") == ("unsloth/Qwen2.5-3B-Instruct",)
    assert copies(quantization="4bit", backend="trl") == ()  # trl loads the name as written


@pytest.mark.parametrize(
    ("repo", "subset", "ask"),
    [
        ("someone/math", "main", "main"),
        ("someone/math", "main", None),
        ("someone/math", "main", "socratic"),
        ("someone/other", "main", "main"),
    ],
)
def test_the_quick_dataset_rule_agrees_with_datasets_own(hub, tmp_path, repo, subset, ask):
    cache_dataset(tmp_path, "someone/math", "main", [{"question": "1+1?", "answer": "#### 2"}])
    item = HubItem(repo, "data.source", "dataset", subset=ask)
    assert (hub_access.cached_as(item) is not None) == dataset_in_cache(repo, ask)


def test_a_dataset_with_several_prepared_subsets_needs_one_named(hub, tmp_path):
    for subset in ("main", "socratic"):
        cache_dataset(tmp_path, "someone/math", subset, [{"question": "q", "answer": "#### 1"}])
    assert dataset_in_cache("someone/math") is False  # datasets: "multiple configurations"
    assert hub_access.cached_as(HubItem("someone/math", "data.source", "dataset")) is None
    assert hub_access.cached_as(HubItem("someone/math", "x", "dataset", subset="main"))


def test_local_and_synthetic_sources_never_ask_the_hub(hub, tiny_model):
    refuse_unreachable(
        [HubItem(str(tiny_model), "model.name"), HubItem("synthetic", "data.source", "dataset")]
    )
    assert hub.requests == []


def test_the_vllm_eval_engine_loads_a_cached_model_with_no_network(
    hub, tiny_model, tmp_path, monkeypatch
):
    """vLLM fetches weights itself; a fake vllm records whether it was asked to stay offline."""
    import sys
    import types

    from rich.console import Console

    from grpo_cli import hardware
    from grpo_cli.config.schema import GrpoConfig
    from grpo_cli.evaluation.generate import load_engine
    from grpo_cli.model_source import resolve_model

    cache_model(tiny_model, CACHED, tmp_path / "hub")
    seen = []

    class LLM:
        def __init__(self, model: str, **kwargs: object) -> None:
            from huggingface_hub import constants

            seen.append((model, os.environ.get("HF_HUB_OFFLINE"), constants.HF_HUB_OFFLINE))

    vllm = types.ModuleType("vllm")
    vllm.LLM = LLM  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    l4 = hardware.Hardware("cuda", "NVIDIA L4", 22.0, (8, 9), gpu_count=1, bf16=True)
    monkeypatch.setattr(hardware, "probe", lambda: l4)
    monkeypatch.setattr(hardware, "installed", lambda name: name == "vllm")
    cfg = GrpoConfig.model_validate({"model": {"name": CACHED}, "rewards": ["correctness"]})
    load_engine(resolve_model("base", cfg), cfg, "vllm", Console(stderr=True))
    assert seen == [(CACHED, "1", True)]
    assert hub.requests == []
    assert "HF_HUB_OFFLINE" not in os.environ  # for the load only
