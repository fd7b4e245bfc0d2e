"""What `grpo merge` does below the command: weights, staging, model card facts, Hub."""
