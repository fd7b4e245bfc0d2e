"""`grpo eval` and evaluation during training: generation engines and the metrics."""
