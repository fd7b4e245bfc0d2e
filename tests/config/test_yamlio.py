"""What a YAML input may cost: alias expansion, nesting and size are bounded for config files,
the files they extend, `--set` values and a run's saved config, each refused with its location."""

from __future__ import annotations

import pytest
import yaml

from grpo_cli.config import load_config
from grpo_cli.config.yamlio import ALIAS_BUDGET, MAX_BYTES, load_text
from tests.conftest import MINIMAL, config_problems

# 6 levels of 9 aliases: 300 bytes that stand for 531,441 strings (9 levels: 387 million, and
# an unbounded reader never returns). Before the bound, this one was accepted after 2 s.
BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{x}: &{x} [{', '.join([f'*{p}'] * 9)}]\n" for p, x in zip("abcde", "bcdef", strict=True)
)
NESTED_BOMB = "".join(f"    {line}\n" for line in BOMB.splitlines())


def only_problem(path, overrides=()):
    problems = config_problems(path, overrides)
    assert len(problems) == 1, problems
    return problems[0]


def test_an_alias_bomb_in_a_config_is_refused_at_once(write):
    path = write("c.yaml", MINIMAL + "training:\n  trl:\n" + NESTED_BOMB)
    problem = only_problem(path)  # unbounded, this expands to billions of nodes and hangs
    assert "aliases here stand for over" in problem.message
    assert problem.source.endswith("c.yaml") and problem.line is not None


def test_an_alias_bomb_in_an_extended_file_names_that_file(write):
    write("base.yaml", MINIMAL + "training:\n  trl:\n" + NESTED_BOMB)
    problem = only_problem(write("child.yaml", "extends: base.yaml\n"))
    assert problem.source.endswith("base.yaml") and "alias" in problem.message


def test_an_alias_bomb_in_a_set_value_is_located_at_the_set(write):
    value = (
        "[" + ", ".join(["&a [x, x, x, x, x, x, x, x, x, x]"] + ["*a"] * (ALIAS_BUDGET // 9)) + "]"
    )
    problem = only_problem(write("c.yaml", MINIMAL), [f"training.trl.x={value}"])
    assert problem.source.startswith("--set training.trl.x=")
    assert problem.key == "training.trl.x" and "aliases here stand for over" in problem.message


@pytest.mark.parametrize("text", ["a: &a [*a]\n", "a: &a {b: *a}\n"])
def test_an_alias_inside_itself_is_refused(text):
    with pytest.raises(yaml.MarkedYAMLError, match="refers to a node that contains it"):
        load_text(text)


def test_deep_nesting_is_refused():
    with pytest.raises(yaml.MarkedYAMLError, match="nested deeper than"):
        load_text("[" * 200 + "]" * 200)


def test_anchors_and_merges_of_a_normal_config_still_work(write):
    path = write(
        "c.yaml",
        """\
        model: {name: gpt2}
        rewards:
          - &reward {name: correctness, weight: 2.0}
          - {<<: *reward, name: soft_format}
        training:
          trl: &shared {top_k: 20, repetition_penalty: 1.1}
        eval: {rows: 8}
        vllm: {use: false}
        logging: {project: p}
        output: {dir: runs}
        """,
    )
    cfg = load_config(path).config
    assert [(r.name, r.weight) for r in cfg.rewards] == [("correctness", 2.0), ("soft_format", 2.0)]
    assert cfg.training.trl == {"top_k": 20, "repetition_penalty": 1.1}
    assert load_text("a: &x [1, 2]\nb: *x\nc: *x\n") == {"a": [1, 2], "b": [1, 2], "c": [1, 2]}


def test_a_file_far_larger_than_any_config_is_refused_before_parsing(write, monkeypatch):
    from grpo_cli.config import yamlio

    path = write("c.yaml", MINIMAL + "".join(f"k{i}: 1\n" for i in range(MAX_BYTES // 6)))
    monkeypatch.setattr(yamlio, "compose", lambda loader: pytest.fail("the file was parsed"))
    problem = only_problem(path)
    assert "a config is a few KB" in problem.message


def test_a_key_that_is_a_list_is_a_problem_not_a_crash(write):
    problem = only_problem(write("c.yaml", MINIMAL + "? [a, b]\n: 1\n"))
    assert problem.line == 5 and "plain name" in problem.message


def test_a_run_config_with_an_alias_bomb_is_refused_by_eval_and_merge(tmp_path):
    # eval and merge read a run's config.yaml through one reader (model_source.read_run_config)
    from grpo_cli.errors import GrpoError
    from grpo_cli.model_source import read_run_config

    path = tmp_path / "config.yaml"
    path.write_text(MINIMAL + "training:\n  trl:\n" + NESTED_BOMB, encoding="utf-8")
    with pytest.raises(GrpoError, match="aliases here stand for over"):
        read_run_config(path)
