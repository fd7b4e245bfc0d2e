"""Reward functions: the registry, the built-ins, and how a config's rewards are bound and run."""

from grpo_cli.rewards.builtin import completion_text
from grpo_cli.rewards.registry import RewardInfo, registered, reward

__all__ = ["RewardInfo", "completion_text", "registered", "reward"]
