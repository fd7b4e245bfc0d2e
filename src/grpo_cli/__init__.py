"""grpo-cli: config-driven GRPO training of small instruct LLMs on verifiable rewards."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("grpo-cli")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
