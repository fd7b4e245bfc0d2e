"""vllm.mode server: `grpo serve` builds TRL's vLLM server command for a config and the `grpo
train` command that uses it; `grpo train` and `grpo doctor` check, before any model loads, that
the server answers and serves the config's model (against a stub HTTP server here)."""

from __future__ import annotations

import json
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from grpo_cli.config import load_config
from grpo_cli.errors import GrpoError
from grpo_cli.hardware import Hardware, NvidiaSmi
from grpo_cli.vllm_server import serve_command, server_problem

MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
CONFIG = f"""\
model:
  name: {MODEL}
  max_seq_length: 768
rewards:
  - correctness
"""


class StubVllm(BaseHTTPRequestHandler):
    """vLLM's OpenAI server as TRL's client sees it: /health, /v1/models, and /get_world_size
    in dev mode (vllm/entrypoints/serve/dev/rlhf/api_router.py)."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        stub: Stub = self.server.stub  # type: ignore[attr-defined]
        stub.paths.append(self.path)
        if self.path == "/health":
            self._answer(200, b"")
        elif self.path == "/v1/models" and stub.model is not None:
            card = {"id": stub.model, "object": "model", "root": stub.model}
            self._answer(200, json.dumps({"object": "list", "data": [card]}).encode())
        elif self.path == "/get_world_size" and stub.dev_mode:
            self._answer(200, b'{"world_size": 1}')
        else:
            self._answer(404, b'{"detail": "Not Found"}')

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class Stub:
    def __init__(self, model: str | None = MODEL, dev_mode: bool = True):
        self.model, self.dev_mode = model, dev_mode
        self.paths: list[str] = []
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), StubVllm)
        self.http.stub = self  # type: ignore[attr-defined]
        self.port = self.http.server_address[1]
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def stub() -> Iterator[Callable[..., Stub]]:
    started: list[Stub] = []

    def _start(**kwargs: Any) -> Stub:
        started.append(Stub(**kwargs))
        return started[-1]

    yield _start
    for s in started:
        s.close()


def closed_port() -> int:
    """A port nothing listens on: bound, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


def server_cfg(path: Path, port: int, *more: str) -> Any:
    sets = ["vllm.use=true", "vllm.mode=server", f"vllm.server_port={port}", *more]
    return load_config(path, sets).config


@pytest.fixture
def config(write) -> Path:
    return write("c.yaml", CONFIG)


# --- the check before training ------------------------------------------------------------------


def test_a_server_for_the_configs_model_passes(config, stub):
    server = stub()
    assert server_problem(server_cfg(config, server.port), "c.yaml", []) is None
    # what TRL's client asks before training (trl/generation/vllm_client.py)
    assert server.paths == ["/health", "/v1/models", "/get_world_size"]


def test_no_request_without_server_mode(config, stub):
    server = stub()
    cfg = load_config(config, ["vllm.use=true", f"vllm.server_port={server.port}"]).config
    assert server_problem(cfg, "c.yaml", []) is None
    assert server.paths == []


def test_a_closed_port_is_refused_with_the_command_that_starts_the_server(config):
    cfg = server_cfg(config, closed_port())
    error = server_problem(cfg, "c.yaml", ["model.max_seq_length=768"])
    assert error is not None
    assert "does not answer (connection refused" in error.message
    assert "grpo serve c.yaml --set model.max_seq_length=768" in (error.hint or "")


def test_a_server_that_never_answers_is_refused_after_the_timeout(config, silent_port):
    cfg = server_cfg(config, silent_port)
    started = time.perf_counter()
    error = server_problem(cfg, "c.yaml", [], timeout=0.2)
    took = time.perf_counter() - started
    assert error is not None and "does not answer (no answer in 0.2 s)" in error.message
    # one request's timeout, not TRL's 240 s wait for the server
    assert took < 0.2 * 25


def test_a_server_of_another_model_is_refused(config, stub):
    server = stub(model="meta-llama/Llama-3.2-1B-Instruct")
    error = server_problem(server_cfg(config, server.port), "c.yaml", [])
    assert error is not None
    assert f"serves meta-llama/Llama-3.2-1B-Instruct, and this config trains {MODEL}" in (
        error.message
    )
    assert "grpo serve c.yaml" in (error.hint or "")


def test_a_server_without_the_weight_sync_endpoints_is_refused(config, stub):
    """A plain `vllm serve` answers /health and /v1/models; the trainer's weight sync would fail
    only after the model has loaded."""
    server = stub(dev_mode=False)
    error = server_problem(server_cfg(config, server.port), "c.yaml", [])
    assert error is not None and "VLLM_SERVER_DEV_MODE=1" in error.message


def test_another_program_on_the_port_is_refused(config, stub):
    server = stub(model=None)  # answers /health, has no /v1/models
    error = server_problem(server_cfg(config, server.port), "c.yaml", [])
    assert error is not None and "not as a vLLM server" in error.message
    assert "vllm.server_port" in (error.hint or "")


def test_a_local_model_matches_from_any_working_folder(write, tmp_path, stub, monkeypatch):
    model = tmp_path / "models" / "m"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    server = stub(model=str(model.resolve()))  # as `grpo serve` started it: an absolute path
    path = write("local.yaml", CONFIG.replace(MODEL, "./models/m"))
    monkeypatch.chdir(tmp_path)
    assert server_problem(server_cfg(path, server.port), "local.yaml", []) is None


def test_grpo_train_refuses_a_missing_server_before_anything_is_written(config, cli, tmp_path):
    out = tmp_path / "outputs"
    sets = ["vllm.use=true", "vllm.mode=server", f"vllm.server_port={closed_port()}"]
    sets.append(f"output.dir={out}")
    result = cli("train", config, *[a for s in sets for a in ("--set", s)])
    assert result.code == 2
    assert result.err.startswith("Error: vllm.mode server: the vLLM server at http://127.0.0.1:")
    assert "Hint: start it first" in result.err and "grpo serve" in result.err
    assert "Traceback" not in result.err
    assert not out.exists()


def test_grpo_train_goes_on_past_a_good_server(config, cli, stub, tmp_path, monkeypatch):
    """The check passes; what stops the run here is the next check: this machine's CPU."""
    monkeypatch.setattr("grpo_cli.hardware.probe", lambda: Hardware(device="cpu"))
    server = stub()
    sets = ["vllm.use=true", "vllm.mode=server", f"vllm.server_port={server.port}"]
    sets += [f"output.dir={tmp_path / 'outputs'}", "model.backend=trl"]
    result = cli("train", config, *[a for s in sets for a in ("--set", s)])
    assert result.code == 2
    assert "vLLM server" not in result.err
    assert "vllm.use: vLLM generation needs a CUDA GPU" in result.err
    assert server.paths == ["/health", "/v1/models", "/get_world_size"]


def test_grpo_doctor_lists_a_missing_server(config, cli, monkeypatch):
    from grpo_cli.commands import doctor

    monkeypatch.setattr(doctor, "_hub_state", lambda timeout: doctor.HubState(False, "x", False))
    monkeypatch.setattr("grpo_cli.hardware.probe", lambda: Hardware(device="cpu"))
    monkeypatch.setenv("COLUMNS", "400")  # the findings table unwrapped
    port = closed_port()
    result = cli(
        "doctor", config, "--set", "vllm.use=true", "--set", "vllm.mode=server", "--set",
        f"vllm.server_port={port}",
    )  # fmt: skip
    assert result.code == 1
    (row,) = [line for line in result.out.splitlines() if "vLLM server at" in line]
    assert row.split("│")[1].strip() == "vllm.mode"
    assert f"│ the vLLM server at http://127.0.0.1:{port} does not answer" in row
    assert "grpo serve" in row


# --- grpo serve ---------------------------------------------------------------------------------


def test_the_server_command_is_trls_for_the_configs_settings(write):
    """TRL's own builder (trl/scripts/vllm_serve.py: build_command), with the config's sequence
    length, dtype, remote code and 4-bit weights (TRL's colocated choice: "bitsandbytes")."""
    from trl.scripts.vllm_serve import ScriptArguments, build_command

    path = write("q.yaml", CONFIG.replace("  max_seq_length: 768", "  max_seq_length: 768\n"
        "  quantization: 4bit\n  dtype: bf16\n  trust_remote_code: true"))  # fmt: skip
    cfg = load_config(path).config
    command = serve_command(cfg, "q.yaml", [], port=8011)
    expected = ScriptArguments(
        model=MODEL,
        host="127.0.0.1",  # vllm.server_host's default, not TRL's 0.0.0.0
        port=8011,
        dtype="bfloat16",
        max_model_len=768,
        trust_remote_code=True,
    )
    assert command.argv == build_command(expected, ["--quantization", "bitsandbytes"])
    # what the trainer's weight sync needs from the server
    assert "--weight-transfer-config" in command.argv
    assert command.env == {"VLLM_SERVER_DEV_MODE": "1", "CUDA_VISIBLE_DEVICES": "0"}


@pytest.mark.parametrize(
    ("config_host", "flag", "listens", "train_sets"),
    [
        (None, None, "127.0.0.1", []),
        ("10.0.0.5", None, "10.0.0.5", []),
        (None, "0.0.0.0", "0.0.0.0", []),  # every interface; the trainer beside it uses loopback
        (None, "10.0.0.7", "10.0.0.7", ["vllm.server_host=10.0.0.7"]),
    ],
)
def test_the_server_listens_where_the_trainer_connects(
    config, config_host, flag, listens, train_sets
):
    sets = [f"vllm.server_host={config_host}"] if config_host else []
    cfg = load_config(config, ["vllm.use=true", "vllm.mode=server", "model.backend=trl", *sets])
    command = serve_command(cfg.config, "c.yaml", sets, host=flag)
    assert command.argv[command.argv.index("--host") + 1] == listens
    argv = shlex.split(command.train)
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--set"] == sets + train_sets


@pytest.mark.parametrize(
    ("count", "train"),
    [
        (2, "CUDA_VISIBLE_DEVICES=1 grpo train c.yaml"),
        (8, "CUDA_VISIBLE_DEVICES=1,2,3,4,5,6,7 grpo train c.yaml --processes 7"),
    ],
)
def test_training_goes_on_the_gpus_the_server_leaves(config, count, train):
    cfg = load_config(config).config
    command = serve_command(cfg, "c.yaml", [], gpus="0", gpu_count=count)
    assert command.gpus == ["0"]
    assert command.train.startswith(train + " --set")


def test_cuda_visible_devices_chooses_the_servers_gpus(config):
    cfg = load_config(config).config
    command = serve_command(cfg, "c.yaml", [], tensor_parallel_size=2, visible="2,3,5", gpu_count=6)
    assert command.env["CUDA_VISIBLE_DEVICES"] == "2,3"
    assert command.train_gpus == ["5"], "the rest of the GPUs the user set aside"
    assert command.train.startswith("CUDA_VISIBLE_DEVICES=5 grpo train c.yaml --set")
    only_the_servers = serve_command(cfg, "c.yaml", [], visible="3", gpu_count=4)
    assert only_the_servers.train_gpus == ["0", "1", "2"], "the rest of the machine"
    assert "--tensor-parallel-size', '2'" in repr(command.argv).replace('"', "'")


@pytest.mark.parametrize(
    ("kwargs", "said"),
    [
        ({"gpus": "0", "tensor_parallel_size": 2}, "--gpus 0 names 1 GPU(s), and the server uses"),
        ({"gpus": "0,x"}, "not a list of GPU indices"),
        ({"port": 70000}, "--port 70000: not a port"),
        ({"gpus": "4", "gpu_count": 2}, "this machine has 2 GPU(s)"),
        ({"visible": "1", "data_parallel_size": 2}, "CUDA_VISIBLE_DEVICES=1 shows 1 GPU(s)"),
    ],
)
def test_gpus_that_do_not_fit_are_refused(config, kwargs, said):
    with pytest.raises(GrpoError) as err:
        serve_command(load_config(config).config, "c.yaml", [], **kwargs)
    assert said in err.value.message


def test_the_printed_train_command_is_accepted_by_the_check(config, cli, stub):
    """The line `grpo serve` prints configures a run that trains against that very server."""
    server = stub()
    result = cli("serve", config, "--set", "training.seed=3", "--port", server.port, "--dry-run")
    assert result.code == 0, result.err
    line = next(li.strip() for li in result.out.splitlines() if "grpo train" in li)
    argv = shlex.split(line)
    assert argv[:3] == ["grpo", "train", str(config)]
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    assert sets[0] == "training.seed=3"
    cfg = load_config(config, sets).config
    assert (cfg.vllm.use, cfg.vllm.mode, cfg.model.backend) == (True, "server", "trl")
    assert server_problem(cfg, str(config), sets) is None


def no_gpu() -> NvidiaSmi:
    return NvidiaSmi(Hardware(device="cpu"), error="no NVIDIA GPU (nvidia-smi not found)")


def two_gpus() -> NvidiaSmi:
    return NvidiaSmi(Hardware(device="cuda", gpu_name="H100", gpu_count=2))


def test_serve_without_a_gpu_says_so(config, cli, monkeypatch):
    monkeypatch.setattr("grpo_cli.commands.serve.probe_nvidia_smi", no_gpu)
    result = cli("serve", config)
    assert result.code == 2
    assert result.err.startswith("Error: grpo serve runs vLLM, which needs a CUDA GPU")
    assert "--dry-run" in result.err


def test_serve_without_vllm_says_how_to_install_it(config, cli, monkeypatch):
    monkeypatch.setattr("grpo_cli.commands.serve.probe_nvidia_smi", two_gpus)
    monkeypatch.setattr("grpo_cli.commands.serve.installed_packages", lambda cfg: {"vllm": False})
    result = cli("serve", config)
    assert result.code == 2 and "vLLM, which is not installed" in result.err
    assert "pip install -e '.[gpu]'" in result.err


def test_serve_prints_the_train_command_then_execs_the_server(config, cli, monkeypatch):
    monkeypatch.setattr("grpo_cli.commands.serve.probe_nvidia_smi", two_gpus)
    monkeypatch.setattr("grpo_cli.commands.serve.installed_packages", lambda cfg: {"vllm": True})
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    execs: list[tuple[str, list[str], dict[str, str]]] = []
    monkeypatch.setattr("os.execve", lambda exe, argv, env: execs.append((exe, argv, env)))
    result = cli("serve", config, "--gpus", "1")
    assert result.code == 0, result.err
    ((exe, argv, env),) = execs
    assert exe == argv[0] and argv[2:5] == ["vllm.entrypoints.cli.main", "serve", MODEL]
    assert env["VLLM_SERVER_DEV_MODE"] == "1" and env["CUDA_VISIBLE_DEVICES"] == "1"
    assert f"CUDA_VISIBLE_DEVICES=1 {shlex.join(argv)}" in result.out
    assert f"CUDA_VISIBLE_DEVICES=0 grpo train {config}" in result.out


@pytest.mark.parametrize(
    ("quantization", "said"),
    [("8bit", "vLLM has no 8-bit bitsandbytes weights"), ("fp8", "fp8 is Unsloth's")],
)
def test_quantized_weights_vllm_cannot_serve_are_refused(config, cli, quantization, said):
    sets = ["--set", f"model.quantization={quantization}", "--set", "model.backend=unsloth"]
    result = cli("serve", config, *sets, "--dry-run")
    assert result.code == 2
    assert said in result.err and "model.quantization" in result.err


def test_a_grpo_sft_run_is_served_from_its_fine_tuned_weights(write, tmp_path, cli):
    run = tmp_path / "outputs" / "warm"
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text("{}")
    (run / "config.yaml").write_text(f"model:\n  name: {MODEL}\n")
    (run / "env.json").write_text('{"stage": "sft"}')
    path = write("s.yaml", CONFIG.replace(MODEL, str(run)))
    result = cli("serve", path, "--dry-run")
    assert result.code == 0, result.err
    assert f" serve {run.resolve() / 'model'} " in result.out


def test_a_grpo_train_run_is_refused_with_the_merge_to_do_first(write, tmp_path, cli):
    run = tmp_path / "outputs" / "grpo-run"
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / "adapter_config.json").write_text("{}")
    (run / "config.yaml").write_text(f"model:\n  name: {MODEL}\n")
    (run / "env.json").write_text('{"stage": "grpo"}')
    path = write("r.yaml", CONFIG.replace(MODEL, str(run)))
    result = cli("serve", path, "--dry-run")
    assert result.code == 2
    assert f"merge it first (`grpo merge {run}`)" in result.err


@pytest.mark.parametrize("command", ["serve", "train"])
def test_serve_and_a_refused_server_import_no_ml_library(config, command):
    """`grpo serve --dry-run` prints at once, and a missing server is refused before torch.
    serve imports TRL's command builder (trl/scripts/vllm_serve.py), whose package imports
    neither torch nor transformers."""
    import subprocess
    import sys

    from .test_cli import HEAVY

    argv = [command, str(config), "--set", "vllm.use=true", "--set", "vllm.mode=server"]
    argv += ["--set", f"vllm.server_port={closed_port()}"]
    argv += ["--dry-run"] if command == "serve" else []
    code = (
        "import sys\n"
        "from grpo_cli.cli import main\n"
        f"rc = main({argv!r})\n"
        f"loaded = [m for m in {HEAVY!r} if m in sys.modules and m != 'trl']\n"
        "print('HEAVY', loaded, rc, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    expected_rc = 0 if command == "serve" else 2
    assert f"HEAVY [] {expected_rc}" in result.stderr, result.stderr


def test_a_bare_adapter_is_refused_with_the_merge_to_do_first(write, tmp_path, cli):
    adapter = tmp_path / "my-adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(f'{{"base_model_name_or_path": "{MODEL}"}}')
    path = write("a.yaml", CONFIG.replace(MODEL, str(adapter)))
    result = cli("serve", path, "--dry-run")
    assert result.code == 2
    assert "is a LoRA adapter, not a model to start from: merge it" in result.err
    assert f"grpo merge {adapter} -o {adapter}-merged" in result.err
