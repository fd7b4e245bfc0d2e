"""How long an uncached Hub model or dataset takes to fail when the Hub cannot be reached, by
the kind of failure, for the commands that load one, beside how long the ML libraries take to
import (grpo train imports torch and trl before it refuses: it reports what the machine cannot
run first, and asks the Hub meanwhile).

Each case runs `grpo` in a fresh process with an empty Hugging Face cache and HF_ENDPOINT
pointed at a closed local port (refused) or at a port that never answers (a firewall that drops
packets); `this machine` keeps the real endpoint (on the build machine: no DNS).

    python scripts/bench_offline.py            (about a minute)
    python scripts/bench_offline.py --before   also the libraries alone on this machine's
                                               network, as before the probe (their retries:
                                               about 80 s more)
    target: every grpo case refused with exit code 2 in under 5 s
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "smoke_cpu.yaml"
UNCACHED = "Qwen/Qwen2.5-0.5B-Instruct"


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def silent_server() -> tuple[socket.socket, str]:
    """A port that takes connections (the kernel's backlog) and never answers: what a firewall
    that drops packets looks like to a client, without needing one."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    return server, f"http://127.0.0.1:{server.getsockname()[1]}"


# `wall` is the whole process, as /usr/bin/time sees it; `in grpo` is main() alone, without the
# interpreter's start-up.
TIMED = """
import sys, time
from grpo_cli.cli import main
started = time.perf_counter()
code = main(sys.argv[1:])
print(f"TIMED {time.perf_counter() - started:.2f}", file=sys.stderr)
sys.exit(code)
"""
LIBRARY = """
import sys, time
import datasets, transformers
started = time.perf_counter()
try:
    exec(sys.argv[1])
except Exception as exc:
    print(f"Error: {type(exc).__name__}: {str(exc).splitlines()[0]}", file=sys.stderr)
print(f"TIMED {time.perf_counter() - started:.2f}", file=sys.stderr)
"""


def run(args: list[str], env: dict[str, str]) -> tuple[float, float, int, str]:
    """(wall seconds, seconds in grpo's main, exit code, the Error: line)"""
    started = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - started
    lines = done.stderr.splitlines()
    timed = next((float(x.split()[1]) for x in lines if x.startswith("TIMED ")), float("nan"))
    errors = [line for line in lines if line.startswith("Error:")]
    return wall, timed, done.returncode, (errors[-1] if errors else "")[:100]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-offline-") as cache:  # gone when it ends
        return measure(cache, before="--before" in sys.argv[1:])


def measure(cache: str, before: bool) -> int:
    base = {**os.environ, "HF_HOME": cache, "HF_HUB_CACHE": f"{cache}/hub"}
    base |= {"HF_DATASETS_CACHE": f"{cache}/datasets", "PYTHONPATH": str(REPO / "src")}
    base.pop("HF_HUB_OFFLINE", None)
    from grpo_cli.tiny_model import build_tiny_model

    tiny = build_tiny_model(Path(cache) / "tiny-qwen2", seed=0)  # a local model: only data to fetch
    grpo = [sys.executable, "-c", TIMED]
    model = ["--set", f"model.name={UNCACHED}"]
    dataset = ["--set", f"model.name={tiny}", "--set", "data.source=openai/gsm8k"]
    dataset += ["--set", "data.subset=main", "--set", "data.formatter=gsm8k"]
    commands = {
        "grpo train --dry-run (model)": [*grpo, "train", str(CONFIG), *model, "--dry-run"],
        "grpo train --dry-run (dataset)": [*grpo, "train", str(CONFIG), *dataset, "--dry-run"],
        "grpo eval (model)": [*grpo, "eval", str(CONFIG), *model, "-n", "2"],
        "grpo eval (dataset)": [*grpo, "eval", str(CONFIG), *dataset, "-n", "2"],
    }
    if before:
        tokenizer = f"transformers.AutoTokenizer.from_pretrained({UNCACHED!r})"
        commands["AutoTokenizer alone"] = [sys.executable, "-c", LIBRARY, tokenizer]
        rows = "datasets.load_dataset('openai/gsm8k', 'main', split='train')"
        commands["load_dataset alone"] = [sys.executable, "-c", LIBRARY, rows]
    silent, blackhole = silent_server()
    networks = [("this machine", None), ("refused", closed_port()), ("no answer", blackhole)]
    print(f"{'network':13} {'case':30} {'wall':>7} {'in grpo':>8}  exit  error")
    for network, endpoint in networks:
        env = dict(base) if endpoint is None else {**base, "HF_ENDPOINT": endpoint}
        for name, args in commands.items():
            if name.endswith(" alone") and endpoint is not None:
                continue  # behind a silent firewall each of their requests waits 10 s, 6 times
            wall, timed, code, error = run(args, env)
            print(f"{network:13} {name:30} {wall:6.1f}s {timed:7.2f}s  {code:4}  {error}")
    silent.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
