"""Training internals behind `grpo train`: run directory, models, TRL settings, callbacks."""
