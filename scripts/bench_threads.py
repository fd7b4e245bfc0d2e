"""Wall time of a short CPU `grpo train` with 1 and with 2 torch threads, in turn (1 2 1 2 ...)
so a machine whose load drifts weighs on both alike; prints each run, the medians and the ratio.

    python scripts/bench_threads.py MODEL_DIR [RUNS]   (MODEL_DIR: scripts/make_tiny_model.py's)

On a machine whose cores other processes also use, 2 threads wait for each other at every op:
the ratio, not the seconds, is the figure to compare across machines.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "smoke_cpu.yaml"
SETTINGS = (  # the learning demo's sampling shape, few steps
    "training.max_steps=12",
    "training.prompts_per_step=4",
    "training.num_generations=8",
    "training.max_completion_length=48",
)


def train_seconds(model: str, threads: int, out: Path) -> float:
    sets = [f"model.name={model}", f"output.dir={out}", *SETTINGS]
    argv = ["grpo", "train", str(CONFIG), "--overwrite", "--threads", str(threads)]
    for setting in sets:
        argv += ["--set", setting]
    start = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True)
    return time.monotonic() - start


def main(model: str, runs: int) -> None:
    times: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(runs):
            for threads in times:
                seconds = train_seconds(model, threads, Path(tmp))
                times[threads].append(seconds)
                print(f"run {run + 1}: {threads} thread(s) {seconds:6.1f} s", flush=True)
    one, two = (statistics.median(times[t]) for t in (1, 2))
    ratios = [a / b for a, b in zip(times[1], times[2], strict=True)]
    print(f"median: 1 thread {one:.1f} s, 2 threads {two:.1f} s")
    print(
        f"1 thread / 2 threads, pair by pair: median {statistics.median(ratios):.2f} "
        f"(min {min(ratios):.2f}, max {max(ratios):.2f})"
    )


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3)
