"""Config schema, loading (`extends:`, `--set`) and validation."""

from grpo_cli.config.loader import LoadedConfig, dump_config, load_config
from grpo_cli.config.schema import GrpoConfig

__all__ = ["GrpoConfig", "LoadedConfig", "dump_config", "load_config"]
