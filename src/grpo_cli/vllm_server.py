"""The separate vLLM server of `vllm.mode: server`: the command that starts it for a config
(`grpo serve`), and the check `grpo train` and `grpo doctor` run before any weights load, that it
answers and serves the config's model.

TRL 1.15's `trl vllm-serve` no longer has a server of its own: it execs vLLM's OpenAI server
(`vllm serve`) with the settings TRL's trainer needs and VLLM_SERVER_DEV_MODE=1
(trl/scripts/vllm_serve.py: build_command, main). grpo builds the same command through TRL's
build_command and execs it, so the flags TRL imposes stay TRL's. Only the standard library is
imported here: the check runs before torch.
"""

from __future__ import annotations

import json
import shlex
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grpo_cli.errors import GrpoError

if TYPE_CHECKING:
    from grpo_cli.config.schema import GrpoConfig

# Seconds each request of the check may take: a server that is up answers in milliseconds, and
# the trainer would otherwise wait TRL's vllm_server_timeout (240 s) before saying no.
ANSWER_TIMEOUT = 3.0
# Addresses a server listens on that a client cannot connect to as such.
ANY_ADDRESS = ("0.0.0.0", "::", "")
# vLLM's --dtype names (auto, half, float16, bfloat16, float, float32) for model.dtype
VLLM_DTYPES = {"auto": "auto", "bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


@dataclass(frozen=True)
class ServeCommand:
    """What `grpo serve` runs, on which GPUs, and the `grpo train` command that uses it."""

    argv: list[str]  # the server's command line, starting with the Python executable
    env: dict[str, str]  # set on top of the caller's environment
    gpus: list[str]  # CUDA_VISIBLE_DEVICES of the server
    train_gpus: list[str] | None  # the GPUs left to train on; None when unknown
    train: str  # the grpo train command line, with its CUDA_VISIBLE_DEVICES when known

    def shell(self) -> str:
        """The server command as one shell line, with its environment."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        return f"{env} {shlex.join(self.argv)}"


def served_model(cfg: GrpoConfig) -> tuple[str, str | None]:
    """(model, revision) the server must load for CFG: the weights training starts from (a grpo
    sft run's model/, or the base its LoRA adapter sits on: TRL pushes the trainer's merged
    weights into the server before the first generation, trl/trainer/grpo_trainer.py
    _last_loaded_step = -1), as an absolute path when local, so that the name the server reports
    is the same from any working folder."""
    from grpo_cli.model_source import start_weights

    name, revision = start_weights(cfg.model.name, cfg.model.revision)
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve()), None
    return name, revision


def quantization_args(cfg: GrpoConfig) -> list[str]:
    """vLLM's --quantization for model.quantization, as TRL's colocated engine chooses it for the
    same weights (trl/generation/vllm_generation.py: bnb.nn.Linear4bit -> "bitsandbytes",
    Linear8bitLt -> ValueError "vLLM does not support in-flight 8-bit quantization")."""
    q = cfg.model.quantization
    if q == "4bit":
        return ["--quantization", "bitsandbytes"]
    if q == "8bit":
        raise GrpoError(
            "model.quantization: vLLM has no 8-bit bitsandbytes weights, so it cannot serve "
            "this model as training loads it",
            "set model.quantization: 4bit or none (e.g. --set model.quantization=none)",
        )
    if q == "fp8":
        raise GrpoError(
            "model.quantization: fp8 is Unsloth's, and server mode trains on the trl backend",
            "set model.quantization: none or 4bit (e.g. --set model.quantization=none)",
        )
    return []


def parse_gpus(text: str, flag: str = "--gpus") -> list[str]:
    """`0,1` as ["0", "1"]: GPU indices, each once."""
    gpus = [g.strip() for g in text.split(",") if g.strip()]
    if not gpus or any(not g.isdigit() for g in gpus) or len(set(gpus)) != len(gpus):
        raise GrpoError(
            f"{flag} {text!r}: not a list of GPU indices", f"give them as in {flag} 0 or {flag} 0,1"
        )
    return gpus


def server_gpus(
    wanted: int, gpus: str | None, visible: str | None, gpu_count: int | None
) -> list[str]:
    """The WANTED GPUs the server runs on: --gpus GPUS, else the first of CUDA_VISIBLE_DEVICES
    (VISIBLE), else the first of the machine's. vLLM takes the first tensor x data parallel
    visible GPUs, so the visible ones are narrowed to those: the others stay free to train on."""
    if gpus is not None:
        chosen = parse_gpus(gpus)
        if len(chosen) != wanted:
            raise GrpoError(
                f"--gpus {gpus} names {len(chosen)} GPU(s), and the server uses {wanted} "
                "(--tensor-parallel-size x --data-parallel-size)",
                f"name {wanted} GPU(s), or change the parallel sizes",
            )
    elif visible is not None and visible.strip():
        chosen = [g.strip() for g in visible.split(",") if g.strip()][:wanted]
        if len(chosen) < wanted:
            raise GrpoError(
                f"CUDA_VISIBLE_DEVICES={visible} shows {len(chosen)} GPU(s), and the server "
                f"uses {wanted} (--tensor-parallel-size x --data-parallel-size)",
                "show more GPUs, or lower the parallel sizes",
            )
    else:
        chosen = [str(i) for i in range(wanted)]
    if gpu_count is not None and gpu_count > 0:
        missing = [g for g in chosen if g.isdigit() and int(g) >= gpu_count]
        if missing:
            raise GrpoError(
                f"GPU {', '.join(missing)}: this machine has {gpu_count} GPU(s), numbered 0 to "
                f"{gpu_count - 1}",
                "name GPUs of this machine with --gpus",
            )
    return chosen


def training_gpus(
    server: list[str], visible: str | None, gpu_count: int | None
) -> list[str] | None:
    """The GPUs left to train on beside the SERVER's: the rest of CUDA_VISIBLE_DEVICES (VISIBLE)
    when it shows more than the server takes (the user set aside those), else the rest of the
    machine's GPU_COUNT; None when that number is unknown."""
    shown = [g.strip() for g in (visible or "").split(",") if g.strip()]
    if len(shown) > len(server):
        return shown[len(server) :]
    if gpu_count is None or gpu_count < 1 or not all(g.isdigit() for g in server):
        return None
    return [str(i) for i in range(gpu_count) if str(i) not in server]


def grpo_command(command: str, config: str, overrides: list[str]) -> list[str]:
    """`grpo COMMAND CONFIG` with the --set OVERRIDES the user gave, in their order."""
    argv = ["grpo", command, config]
    for item in overrides:
        argv += ["--set", item]
    return argv


def train_command(
    config: str, overrides: list[str], cfg: GrpoConfig, host: str, port: int
) -> list[str]:
    """`grpo train CONFIG` with the user's --set and the settings that point it at the server,
    each only where the config does not say so already. Server mode is a trl-backend feature
    (config/checks.py refuses vllm.use with backend unsloth)."""
    argv = grpo_command("train", config, overrides)
    wanted: list[tuple[str, Any, Any]] = [
        ("model.backend", cfg.model.backend, "trl"),
        ("model.fast_inference", cfg.model.fast_inference, False),
        ("vllm.use", cfg.vllm.use, True),
        ("vllm.mode", cfg.vllm.mode, "server"),
        ("vllm.server_host", cfg.vllm.server_host, host),
        ("vllm.server_port", cfg.vllm.server_port, port),
    ]
    for key, now, value in wanted:
        if now != value:
            text = str(value).lower() if isinstance(value, bool) else str(value)
            argv += ["--set", f"{key}={text}"]
    return argv


def serve_command(
    cfg: GrpoConfig,
    config: str,
    overrides: list[str],
    *,
    tensor_parallel_size: int = 1,
    data_parallel_size: int = 1,
    gpus: str | None = None,
    visible: str | None = None,
    gpu_count: int | None = None,
    host: str | None = None,
    port: int | None = None,
) -> ServeCommand:
    """The vLLM server for CFG (CONFIG with OVERRIDES, as the user wrote them), through TRL's
    own command builder, on its GPUs; VISIBLE is CUDA_VISIBLE_DEVICES and GPU_COUNT the
    machine's GPUs, as nvidia-smi counts them (None: unknown). It listens on HOST, by default
    the config's vllm.server_host, where the trainer connects: TRL's default, 0.0.0.0, would
    open the weight-update endpoints of dev mode to the whole network."""
    from trl.scripts.vllm_serve import ScriptArguments, build_command

    model, revision = served_model(cfg)
    host = cfg.vllm.server_host if host is None else host
    port = cfg.vllm.server_port if port is None else port
    if not 0 < port < 65536:
        raise GrpoError(f"--port {port}: not a port", "give one from 1 to 65535, e.g. --port 8000")
    chosen = server_gpus(tensor_parallel_size * data_parallel_size, gpus, visible, gpu_count)
    args = ScriptArguments(
        model=model,
        revision=revision,
        tensor_parallel_size=tensor_parallel_size,
        data_parallel_size=data_parallel_size,
        host=host,
        port=port,
        dtype=VLLM_DTYPES[cfg.model.dtype],
        # the longest prompt + completion of the run: vLLM would size its KV cache for the
        # model's whole context otherwise
        max_model_len=cfg.model.max_seq_length,
        trust_remote_code=cfg.model.trust_remote_code,
    )
    # extra arguments go to `vllm serve` as they are (build_command: extra_args)
    argv = build_command(args, quantization_args(cfg))
    # the endpoints the trainer's weight sync calls exist only in vLLM's dev mode (trl main();
    # vllm/entrypoints/serve/dev/rlhf/api_router.py attach_router)
    env = {"VLLM_SERVER_DEV_MODE": "1", "CUDA_VISIBLE_DEVICES": ",".join(chosen)}
    train_gpus = training_gpus(chosen, None if gpus is not None else visible, gpu_count)
    client_host = "127.0.0.1" if host in ANY_ADDRESS else host
    train = train_command(config, overrides, cfg, client_host, port)
    if train_gpus is not None and len(train_gpus) > 1:
        train = [*train[:3], "--processes", str(len(train_gpus)), *train[3:]]
    line = shlex.join(train)
    if train_gpus:
        line = f"CUDA_VISIBLE_DEVICES={','.join(train_gpus)} {line}"
    return ServeCommand(argv, env, chosen, train_gpus, line)


# --- the check before training ------------------------------------------------------------------


def server_url(cfg: GrpoConfig) -> str:
    return f"http://{cfg.vllm.server_host}:{cfg.vllm.server_port}"


def serve_hint(config: str, overrides: list[str]) -> str:
    """The `grpo serve` command for CONFIG with the user's OVERRIDES (model.name among them)."""
    return shlex.join(grpo_command("serve", config, overrides))


def refuse_unusable_server(
    cfg: GrpoConfig, config: str, overrides: list[str], timeout: float = ANSWER_TIMEOUT
) -> None:
    """With vllm.mode server, refuse in seconds a server that does not answer, serves another
    model, or lacks the weight-sync endpoints the trainer calls, naming the `grpo serve` command
    for CONFIG and OVERRIDES that starts the right one. TRL's trainer asks the same three
    things, slower and after the model has loaded (trl/generation/vllm_client.py: check_server
    GET /health, then GET /v1/models data[0].id, then init_communicator GET /get_world_size).
    vLLM does not report the revision it loaded: a model is compared by name only."""
    error = server_problem(cfg, config, overrides, timeout)
    if error is not None:
        raise error


def server_problem(
    cfg: GrpoConfig, config: str, overrides: list[str], timeout: float = ANSWER_TIMEOUT
) -> GrpoError | None:
    """What is wrong with the config's vLLM server, or None (also when it uses no server)."""
    if not (cfg.vllm.use and cfg.vllm.mode == "server"):
        return None
    hint = serve_hint(config, overrides)
    url = server_url(cfg)
    where = f"vllm.mode server: the vLLM server at {url}"
    start = (
        f"start it first, in another shell on a GPU of its own: {hint}; when it says "
        "'Application startup complete', train again (or set vllm.mode: colocate)"
    )
    status, _ = _get(url + "/health", timeout)
    if isinstance(status, str):
        return GrpoError(f"{where} does not answer ({status})", start)
    if status != 200:
        return GrpoError(f"{where} is not ready (/health answered HTTP {status})", start)
    status, body = _get(url + "/v1/models", timeout)
    served = _served_names(body) if status == 200 else []
    if not served:
        return GrpoError(
            f"{where} answers, but not as a vLLM server: GET /v1/models gave "
            f"{status if isinstance(status, str) else f'HTTP {status}'}",
            f"another program uses port {cfg.vllm.server_port}: set vllm.server_port to the "
            f"server's, or start one with {hint}",
        )
    model, _ = served_model(cfg)
    if model not in served:
        return GrpoError(
            f"{where} serves {served[0]}, and this config trains {model}",
            f"stop that server and start one for this config: {hint}",
        )
    status, body = _get(url + "/get_world_size", timeout)
    if status != 200 or not isinstance(_json(body).get("world_size"), int):
        return GrpoError(
            f"{where} serves {model} without the weight-sync endpoints training needs "
            "(/get_world_size: "
            f"{status if isinstance(status, str) else f'HTTP {status}'}): it was started "
            "without VLLM_SERVER_DEV_MODE=1",
            f"restart it with {hint}",
        )
    return None


def _served_names(body: bytes) -> list[str]:
    """The model names a vLLM /v1/models answer lists: each entry's id (--served-model-name,
    by default the model as given) and root (the model's path or Hub id)."""
    data = _json(body).get("data")
    names: list[str] = []
    for entry in data if isinstance(data, list) else []:
        if isinstance(entry, dict):
            names += [str(entry[k]) for k in ("id", "root") if entry.get(k)]
    return names


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _get(url: str, timeout: float) -> tuple[int | str, bytes]:
    """(HTTP status, body) of GET URL, or (why it failed, b"") when nothing answered in
    TIMEOUT seconds."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http only)
            return response.status, response.read(1 << 20)
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            return f"no answer in {timeout:g} s", b""
        if isinstance(reason, ConnectionRefusedError):
            return "connection refused: nothing listens on that port", b""
        return str(reason), b""
    except TimeoutError:
        return f"no answer in {timeout:g} s", b""
    except OSError as exc:
        return str(exc) or type(exc).__name__, b""
