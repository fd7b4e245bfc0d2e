"""Loading configs: extends chains, deep merge, overrides of every type, defaults."""

from __future__ import annotations

import re

import pytest
import yaml

from grpo_cli.config import dump_config, load_config
from grpo_cli.config.loader import format_key, parse_key
from grpo_cli.errors import ConfigError
from tests.conftest import MINIMAL


def test_minimal_config_gets_every_default(write):
    cfg = load_config(write("c.yaml", MINIMAL)).config
    assert cfg.model.backend == "auto"
    assert cfg.training.num_generations == 8
    assert cfg.training.learning_rate == pytest.approx(5e-6)
    assert cfg.rewards[0].name == "correctness"
    assert cfg.rewards[0].weight is None  # the reward's own default weight
    assert cfg.rewards[0].params == {}
    assert cfg.output.private is True


def test_yaml_1_2_exponents_are_numbers(write):
    # PyYAML alone reads `1e-5` as the string "1e-5"; configs are written that way all the time.
    path = write("c.yaml", MINIMAL + "training:\n  learning_rate: 1e-5\n  beta: 4E-2\n")
    cfg = load_config(path).config
    assert cfg.training.learning_rate == pytest.approx(1e-5)
    assert cfg.training.beta == pytest.approx(0.04)


def test_extends_chain_merges_deeply_child_wins(write):
    write(
        "base.yaml",
        """\
        model:
          name: Qwen/Qwen2.5-3B-Instruct
          quantization: 4bit
        lora: {r: 32, alpha: 32}
        rewards: [correctness, soft_format]
        training: {learning_rate: 1.0e-5, max_steps: 100}
        """,
    )
    write(
        "mid/mid.yaml",
        """\
        extends: ../base.yaml
        lora: {r: 8}
        training: {max_steps: 50}
        """,
    )
    top = write(
        "mid/top.yaml",
        """\
        extends: mid.yaml
        training:
          seed: 1
        """,
    )
    loaded = load_config(top)
    cfg = loaded.config
    assert cfg.model.quantization == "4bit"  # from base, two levels up
    assert (cfg.lora.r, cfg.lora.alpha) == (8, 32)  # r from mid, alpha from base
    assert cfg.training.max_steps == 50
    assert cfg.training.learning_rate == pytest.approx(1e-5)
    assert cfg.training.seed == 1
    assert [r.name for r in cfg.rewards] == ["correctness", "soft_format"]
    assert [f.rsplit("/", 1)[-1] for f in loaded.files] == ["top.yaml", "mid.yaml", "base.yaml"]


def test_lists_are_replaced_not_appended(write):
    write("base.yaml", MINIMAL + "lora:\n  target_modules: [q_proj, k_proj, v_proj]\n")
    child = write("child.yaml", "extends: base.yaml\nlora:\n  target_modules: [o_proj]\n")
    assert load_config(child).config.lora.target_modules == ["o_proj"]


def test_child_null_overrides_parent_value(write):
    write("base.yaml", MINIMAL + "training:\n  max_steps: 10\n")
    child = write("child.yaml", "extends: base.yaml\ntraining:\n  max_steps: null\n")
    assert load_config(child).config.training.max_steps is None


def test_extends_cycle_is_rejected_with_the_chain(write):
    write("a.yaml", "extends: b.yaml\n" + MINIMAL)
    write("b.yaml", "extends: c.yaml\n")
    write("c.yaml", "extends: a.yaml\n")
    with pytest.raises(ConfigError) as err:
        load_config(write("top.yaml", "extends: a.yaml\n"))
    message = err.value.message
    assert re.search(
        r"cycle: \S*top\.yaml -> \S*a\.yaml -> \S*b\.yaml -> \S*c\.yaml -> \S*a\.yaml", message
    )


def test_self_extension_is_a_cycle(write):
    path = write("self.yaml", "extends: self.yaml\n" + MINIMAL)
    with pytest.raises(ConfigError, match="cycle"):
        load_config(path)


def test_missing_extends_file_names_file_line_and_where_it_looked(write):
    path = write("c.yaml", MINIMAL + "extends: nowhere.yaml\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    problem = err.value.problems[0]
    assert problem.key == "extends"
    assert problem.line == 5
    assert "nowhere.yaml" in problem.message and "relative to the file" in problem.message


@pytest.mark.parametrize(
    ("override", "attr", "expected"),
    [
        ("training.max_steps=30", ("training", "max_steps"), 30),
        ("training.learning_rate=1e-5", ("training", "learning_rate"), 1e-5),
        ("training.learning_rate=2.5e-6", ("training", "learning_rate"), 2.5e-6),
        ("model.fast_inference=true", ("model", "fast_inference"), True),
        ("output.private=false", ("output", "private"), False),
        ("lora.target_modules=[q_proj, v_proj]", ("lora", "target_modules"), ["q_proj", "v_proj"]),
        ("lora.target_modules=all-linear", ("lora", "target_modules"), "all-linear"),
        ("lora.gradient_checkpointing=unsloth", ("lora", "gradient_checkpointing"), "unsloth"),
        ("training.max_steps=null", ("training", "max_steps"), None),
        ("model.revision=null", ("model", "revision"), None),
        # text keys stay text even when the value reads as a number or boolean
        ("output.run_name=2024", ("output", "run_name"), "2024"),
        ("model.revision=1234abcd", ("model", "revision"), "1234abcd"),
        ("data.split=true", ("data", "split"), "true"),
        ("rewards.0.weight=0.5", ("rewards", 0, "weight"), 0.5),
    ],
)
def test_overrides_are_typed_by_the_schema(write, override, attr, expected):
    cfg = load_config(write("c.yaml", MINIMAL + "training: {max_steps: 5}\n"), [override]).config
    value = cfg
    for part in attr:
        value = value[part] if isinstance(part, int) else getattr(value, part)
    assert value == (pytest.approx(expected) if isinstance(expected, float) else expected)
    assert type(value) is type(expected)


def test_override_into_passthrough_mapping_reads_yaml(write):
    path = write("c.yaml", MINIMAL)
    cfg = load_config(path, ["training.trl.scale_rewards=batch", "training.trl.top_k=50"]).config
    assert cfg.training.trl == {"scale_rewards": "batch", "top_k": 50}


def test_override_creates_a_section_the_file_lacks(write):
    cfg = load_config(write("c.yaml", MINIMAL), ["vllm.use=true"]).config
    assert cfg.vllm.use is True


def test_later_override_wins(write):
    path = write("c.yaml", MINIMAL)
    cfg = load_config(path, ["training.seed=1", "training.seed=2"]).config
    assert cfg.training.seed == 2


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("training.learning_rate", "expected KEY=VALUE"),
        ("=3", "expected KEY=VALUE"),
        ("training..seed=3", "expected KEY=VALUE"),
        ("rewards.7.weight=1", "rewards has 1 entries; use an index from 0 to 0"),
        ("model.name.x=1", "model.name is a single value"),
    ],
)
def test_malformed_overrides_are_reported(write, override, needle):
    with pytest.raises(ConfigError) as err:
        load_config(write("c.yaml", MINIMAL), [override])
    assert needle in err.value.message
    assert err.value.problems[0].source == f"--set {override}"


def test_override_with_wrong_type_names_the_override(write):
    with pytest.raises(ConfigError) as err:
        load_config(write("c.yaml", MINIMAL), ["training.max_steps=many"])
    problem = err.value.problems[0]
    assert problem.source == "--set training.max_steps=many"
    assert problem.key == "training.max_steps"
    assert "expected integer or null; found 'many'" in problem.message


def test_resolved_config_round_trips(write, tmp_path):
    path = write("c.yaml", MINIMAL + "training:\n  learning_rate: 3e-6\n  trl: {top_k: 20}\n")
    cfg = load_config(path, ["lora.r=4"]).config
    dumped = tmp_path / "dumped.yaml"
    dumped.write_text(yaml.safe_dump(dump_config(cfg), sort_keys=False))
    assert load_config(dumped).config == cfg


@pytest.mark.parametrize("key", ["rewards[2].weight", "training.trl.top_k", "model"])
def test_key_paths_format_and_parse_back(key):
    assert format_key(parse_key(key)) == key
