"""Wall time per step of `grpo train` on 1 and on 2 processes (accelerate, DDP on gloo) with the
same global batch, on the tiny model on CPU, and the share of each step spent waiting on the
other process (communication, and a slower peer).

Waiting is the time a process spends blocked in a collective during TRL's training_step: the
Python-level ones (TRL's gathers of completions and rewards, grpo's stop flag) are timed by
wrapping torch.distributed's functions, DDP's gradient all-reduce by a comm hook that does the
same all-reduce, blocking and timed (on CPU, gloo overlaps little with the backward pass
anyway). A baseline for GPU runs, not a target: on 2 shared cores, two processes compete for
the same cores.

    python scripts/bench_scaling.py [--steps 8] [--prompts 4] [--generations 4]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Run in each training process before grpo_cli: counts the seconds spent in collectives.
WORKER = r"""
import atexit, json, os, sys, time
import torch
import torch.distributed as dist

clock = {"wait": 0.0, "steps": 0.0, "inside": False, "depth": 0}


def timed(function):
    def wrapper(*args, **kwargs):
        if clock["depth"] or not clock["inside"]:
            return function(*args, **kwargs)
        clock["depth"] += 1
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            clock["wait"] += time.perf_counter() - started
            clock["depth"] -= 1
    return wrapper


for name in ("all_reduce", "all_gather", "all_gather_into_tensor", "all_gather_object",
             "broadcast", "broadcast_object_list", "barrier", "gather", "gather_object",
             "reduce", "scatter"):
    if hasattr(dist, name):
        setattr(dist, name, timed(getattr(dist, name)))

from torch.nn.parallel import DistributedDataParallel

original_init = DistributedDataParallel.__init__


def blocking_allreduce(state, bucket):
    # the same sum-then-average DDP does by default, done blocking so that it can be timed
    buffer = bucket.buffer()
    dist.all_reduce(buffer)  # the wrapped one: timed when inside a step
    buffer.div_(dist.get_world_size())
    future = torch.futures.Future()
    future.set_result(buffer)
    return future


def init(self, *args, **kwargs):
    original_init(self, *args, **kwargs)
    self.register_comm_hook(None, blocking_allreduce)


DistributedDataParallel.__init__ = init

from trl import GRPOTrainer

original_step = GRPOTrainer.training_step


def training_step(self, *args, **kwargs):
    clock["inside"] = True
    started = time.perf_counter()
    try:
        return original_step(self, *args, **kwargs)
    finally:
        clock["steps"] += time.perf_counter() - started
        clock["inside"] = False


GRPOTrainer.training_step = training_step


def report():
    rank = os.environ.get("RANK", "0")
    out = os.environ["BENCH_OUT"]
    record = {"wait": clock["wait"], "steps": clock["steps"]}
    with open(f"{out}/wait-{rank}.json", "w") as f:
        json.dump(record, f)


atexit.register(report)
from grpo_cli.cli import main

code = main(sys.argv[1:])
report()
sys.exit(code)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(processes: int, model: Path, folder: Path, args: argparse.Namespace) -> dict[str, float]:
    out = folder / f"p{processes}"
    out.mkdir()
    worker = folder / "worker.py"
    worker.write_text(WORKER)
    train = [
        "train",
        str(REPO / "configs" / "smoke_cpu.yaml"),
        *("--set", f"model.name={model}", "--set", f"output.dir={out}"),
        *("--set", f"training.max_steps={args.steps}", "--set", "training.save_steps=1000"),
        *("--set", f"training.prompts_per_step={args.prompts}"),
        *("--set", f"training.num_generations={args.generations}"),
        *("--set", "eval.every_steps=null", "--set", "logging.completion_samples=0"),
        *("--threads", "1"),
    ]
    env = {**os.environ, "BENCH_OUT": str(out), "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    if processes == 1:
        command = [sys.executable, str(worker), *train]
    else:
        command = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(REPO / "configs" / "accelerate" / "ddp.yaml"),
            *("--num_processes", str(processes), "--main_process_port", str(free_port())),
            *("--log_dir", str(out / "launcher-logs")),  # not a torchelastic_* folder in /tmp
            str(worker),
            *train,
        ]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"{processes} process(es) failed:\n{done.stderr[-3000:]}")
    rows = [json.loads(x) for x in (out / "smoke-cpu" / "metrics.jsonl").read_text().splitlines()]
    times = [r["step_time"] for r in rows[1:]]  # the first step warms up
    waits = [json.loads(p.read_text()) for p in out.glob("wait-*.json")]
    share = statistics.mean(w["wait"] / w["steps"] for w in waits if w["steps"])
    return {
        "step": statistics.median(times),
        "share": share,
        "wall": wall,
        "completions": rows[-1]["completions"],
        "processes": processes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--generations", type=int, default=4)
    args = parser.parse_args()
    from grpo_cli.tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        folder = Path(tmp)
        model = build_tiny_model(folder / "tiny-qwen2", seed=0)
        results = [run(n, model, folder, args) for n in (1, 2)]
    print(
        f"tiny Qwen2 on CPU, {args.prompts} prompts x {args.generations} generations per step, "
        f"{args.steps} steps, 1 thread per process, {os.cpu_count()} cores"
    )
    header = ("processes", "completions/step", "s/step", "waiting", "run s")
    print("  ".join(f"{h:>{w}}" for h, w in zip(header, (9, 16, 7, 7, 6), strict=True)))
    for r in results:
        print(
            f"{r['processes']:>9}  {r['completions']:>16}  {r['step']:>7.3f}  "
            f"{r['share']:>7.1%}  {r['wall']:>6.1f}"
        )
    one, two = results
    print(f"2 processes: {one['step'] / two['step']:.2f}x the steps per second of 1")


if __name__ == "__main__":
    main()
