"""Print how long `grpo --help` and `grpo config validate configs/*.yaml` take (median of N runs).

Usage: python scripts/bench_startup.py [N]     (target: well under 1 s each)
"""

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
grpo = shutil.which("grpo") or str(Path(sys.executable).parent / "grpo")
configs = sorted(str(p) for p in (REPO / "configs").glob("*.yaml"))

for label, args in (
    ("grpo --help", ["--help"]),
    ("grpo config validate configs/*.yaml", ["config", "validate", *configs]),
):
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run([grpo, *args], check=True, capture_output=True, cwd=REPO)
        times.append(time.perf_counter() - start)
    print(
        f"{label}: median {statistics.median(times) * 1000:.0f} ms, "
        f"max {max(times) * 1000:.0f} ms over {RUNS} runs"
    )
