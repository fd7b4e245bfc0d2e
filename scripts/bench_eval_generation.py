"""Examples per second of `grpo eval`'s batched generation against one prompt at a time, on the
tiny model on CPU with GSM8K test questions (greedy, same prompts, same token budget).

    python scripts/bench_eval_generation.py [--rows 64] [--batch-size 32] [--max-new-tokens 64]

Prints both rates and their ratio. The tiny model is built in a temporary folder unless
--model names one; GSM8K comes from $GSM8K_DIR or ../shared/data/gsm8k.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--model", type=Path, default=None)
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from grpo_cli.data.prompts import PromptFormat
    from grpo_cli.evaluation.generate import Sampling, TransformersEngine
    from grpo_cli.tiny_model import build_tiny_model

    torch.set_num_threads(os.cpu_count() or 1)
    gsm8k = Path(os.environ.get("GSM8K_DIR") or REPO.parent / "shared" / "data" / "gsm8k")
    lines = (gsm8k / "test.jsonl").read_text().splitlines()[: args.rows]
    fmt = PromptFormat()
    prompts = [fmt.messages(json.loads(line)["question"]) for line in lines]

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or build_tiny_model(Path(tmp) / "tiny-qwen2", seed=0)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        tokenizer.padding_side = "left"
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        engine = TransformersEngine(model, tokenizer)
        sampling = Sampling(max_new_tokens=args.max_new_tokens)
        engine.generate(prompts[:2], sampling)  # warm-up

        def rate(batch_size: int) -> tuple[float, int]:
            started = time.perf_counter()
            tokens = 0
            for i in range(0, len(prompts), batch_size):
                for out in engine.generate(prompts[i : i + batch_size], sampling):
                    tokens += out[0].tokens
            return len(prompts) / (time.perf_counter() - started), tokens

        one, one_tokens = rate(1)
        batched, batched_tokens = rate(args.batch_size)
    print(
        f"rows {len(prompts)}, max_new_tokens {args.max_new_tokens}, CPU threads "
        f"{torch.get_num_threads()}"
    )
    print(f"one by one:         {one:7.2f} examples/s ({one_tokens} tokens generated)")
    print(
        f"batched ({args.batch_size:>3}):      {batched:7.2f} examples/s "
        f"({batched_tokens} tokens generated)"
    )
    print(f"ratio batched / one by one: {batched / one:.2f}")


if __name__ == "__main__":
    main()
