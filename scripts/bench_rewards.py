"""Completions per second of the default GSM8K reward set, on one core.

The completions are the 1,319 GSM8K test solutions written in the xml format (a right answer
each), plus the same with a wrong final number, scored in batches the way GRPOTrainer calls the
rewards. The answer caches are cleared between passes, so every pass does the full work.

    python scripts/bench_rewards.py [PASSES]      (target: >= 50,000 completions/s)
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from grpo_cli.config.schema import RewardSpec
from grpo_cli.data.formatters import split_gsm8k_solution
from grpo_cli.data.prompts import PromptFormat
from grpo_cli.rewards.builtin import DEFAULT_REWARDS, gold_value, strict_value
from grpo_cli.rewards.runner import RewardContext, build_rewards

BATCH = 64  # completions per reward call: e.g. 8 prompts x 8 generations


def completions(gsm8k_dir: Path) -> tuple[list[str], list[str]]:
    fmt = PromptFormat()
    texts, golds = [], []
    for line in (gsm8k_dir / "test.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        reasoning, final = split_gsm8k_solution(row["answer"])
        wrong = str(int(final.replace(",", "")) + 7)
        for written in (final, wrong):
            texts.append(fmt.target(reasoning, written))
            golds.append(row["answer"])
    return texts, golds


def main() -> None:
    passes = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    here = Path(__file__).resolve().parents[1]
    gsm8k = Path(os.environ.get("GSM8K_DIR") or here.parent / "shared" / "data" / "gsm8k")
    texts, golds = completions(gsm8k)
    rewards = build_rewards([RewardSpec(name=n) for n in DEFAULT_REWARDS], RewardContext())
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    rates = []
    for _ in range(passes):
        strict_value.cache_clear()
        gold_value.cache_clear()
        start = time.perf_counter()
        for i in range(0, len(texts), BATCH):
            batch, answer = texts[i : i + BATCH], golds[i : i + BATCH]
            for reward in rewards:
                reward(batch, answer=answer)
        rates.append(len(texts) / (time.perf_counter() - start))
    rates.sort()
    print(
        f"default reward set ({', '.join(DEFAULT_REWARDS)}) on {len(texts)} GSM8K completions, "
        f"batches of {BATCH}, one core: median {rates[len(rates) // 2]:,.0f} completions/s "
        f"(min {rates[0]:,.0f}, max {rates[-1]:,.0f}; {passes} passes)"
    )


if __name__ == "__main__":
    main()
