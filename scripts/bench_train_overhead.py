"""Wall time of `grpo train` against the equivalent plain TRL script, on the tiny model on CPU.

Both run in fresh processes with the same model, data, rewards, LoRA, batch settings, steps and
seed; the plain script is what a user would write by hand with TRL + PEFT (plus the plain-torch
log-prob kernel that CPU torch needs). Prints the median wall time of each and their ratio
(target: <= 1.05).

    python scripts/bench_train_overhead.py [--steps 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PLAIN = r"""
import sys
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig, GRPOTrainer
from datasets import Dataset

from grpo_cli.answers import gold_answer
from grpo_cli.data.prompts import PromptFormat
from grpo_cli.data.synthetic import synthetic_rows
from grpo_cli.rewards import builtin
from grpo_cli.training.cpu_kernels import install_if_missing

model_dir, out, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
install_if_missing()
tokenizer = AutoTokenizer.from_pretrained(model_dir)
tokenizer.padding_side = "left"
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
torch.manual_seed(3407)
modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
lora = LoraConfig(r=8, lora_alpha=16, task_type="CAUSAL_LM", target_modules=modules)
model = get_peft_model(model, lora)
fmt = PromptFormat()
rows = [{"prompt": fmt.messages(r["question"]), "answer": gold_answer(r["answer"])}
        for r in synthetic_rows(64, seed=3407)]
rewards = [builtin.xml_count, builtin.soft_format, builtin.strict_format, builtin.integer_answer,
           builtin.correctness, builtin.length_penalty]
args = GRPOConfig(output_dir=out, use_cpu=True, bf16=False, learning_rate=1e-4, warmup_steps=0.0,
    lr_scheduler_type="cosine", optim="adamw_torch", adam_beta1=0.9, adam_beta2=0.99,
    weight_decay=0.1, max_grad_norm=1.0, per_device_train_batch_size=8, num_generations=4,
    gradient_accumulation_steps=1, generation_batch_size=8, max_completion_length=32,
    max_steps=steps, save_steps=steps, logging_steps=1, seed=3407, data_seed=3407,
    report_to=[], gradient_checkpointing=False, loss_type="dapo", beta=0.0,
    dataloader_num_workers=0)
trainer = GRPOTrainer(model=model, reward_funcs=rewards, args=args,
                      train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
trainer.train()
trainer.save_model(out + "/adapter")
"""


def timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    opts = parser.parse_args()
    grpo = str(Path(sys.executable).with_name("grpo"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run(
            [sys.executable, str(REPO / "scripts" / "make_tiny_model.py"), str(work / "tiny")],
            check=True,
            capture_output=True,
        )
        script = work / "plain_trl.py"
        script.write_text(PLAIN)
        ours, plain = [], []
        for i in range(opts.repeats):
            ours.append(
                timed(
                    [
                        grpo,
                        "train",
                        str(REPO / "configs" / "smoke_cpu.yaml"),
                        "--set",
                        f"model.name={work / 'tiny'}",
                        "--set",
                        f"output.dir={work / 'runs'}",
                        "--set",
                        f"output.run_name=r{i}",
                        "--set",
                        "data.heldout_size=0",
                        "--set",
                        "eval.every_steps=null",
                        "--set",
                        f"training.max_steps={opts.steps}",
                        "--set",
                        f"training.save_steps={opts.steps}",
                    ],
                    work,
                )
            )
            plain.append(
                timed(
                    [
                        sys.executable,
                        str(script),
                        str(work / "tiny"),
                        str(work / f"plain{i}"),
                        str(opts.steps),
                    ],
                    work,
                )
            )
    a, b = statistics.median(ours), statistics.median(plain)
    print(
        f"{opts.steps} GRPO steps on the tiny model, CPU, median of {opts.repeats} fresh "
        f"processes: grpo train {a:.2f} s, plain TRL script {b:.2f} s, ratio {a / b:.3f} "
        "(target <= 1.05)"
    )


if __name__ == "__main__":
    main()
