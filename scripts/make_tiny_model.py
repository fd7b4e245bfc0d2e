"""Build the tiny random-weight Qwen2 model the CPU smoke config trains, with no network.

Usage: python scripts/make_tiny_model.py OUT_DIR [--seed N] [--size smoke|learn] [--overwrite]

--size learn builds the learning demo's larger model (configs/learn_cpu_sft.yaml): 1.1M parameters,
hidden 128, 4 layers, rotary base 10,000 (the smoke model keeps Qwen2.5's 1,000,000).

Running it again is harmless: a directory that already holds this seed's model is kept.
"""

import argparse
import sys
import time

from grpo_cli.errors import GrpoError
from grpo_cli.tiny_model import SIZES, write_tiny_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "out_dir", help="directory to write: new, empty, or holding this seed's model (kept)"
    )
    parser.add_argument("--seed", type=int, default=0, help="weight initialisation seed")
    parser.add_argument(
        "--size",
        choices=sorted(SIZES),
        default="smoke",
        help="smoke: the smoke run's model (default); learn: the learning demo's",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace another model directory built before"
    )
    args = parser.parse_args(argv)

    start = time.perf_counter()
    try:
        outcome = write_tiny_model(
            args.out_dir, args.seed, overwrite=args.overwrite, sizes=SIZES[args.size]
        )
    except GrpoError as err:
        print(err.render(), file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start

    # Loading it back counts the parameters and proves the directory is complete.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = args.out_dir
    params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(path).parameters())
    vocab = len(AutoTokenizer.from_pretrained(path))
    what = {
        "built": f"built in {seconds:.1f} s",
        "replaced": f"built in {seconds:.1f} s, replacing the model that was there",
        "kept": f"already holds the model seed {args.seed} builds; kept",
    }[outcome]
    print(f"{path}: {params:,} parameters, vocabulary {vocab:,}, {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
