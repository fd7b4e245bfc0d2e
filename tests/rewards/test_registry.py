"""Registering rewards, loading plugins, resolving config references, and failing loudly."""

from __future__ import annotations

import math

import pytest

from grpo_cli.config import load_config
from grpo_cli.config.schema import RewardSpec
from grpo_cli.errors import GrpoError
from grpo_cli.plugins import PluginError, import_reference, load_file, load_plugins
from grpo_cli.rewards import registered, reward
from grpo_cli.rewards.builtin import DEFAULT_REWARDS
from grpo_cli.rewards.registry import RegistryError
from grpo_cli.rewards.runner import RewardContext, RewardError, bind, build_rewards

from ..conftest import config_problems

BUILT_INS = {*DEFAULT_REWARDS, "think_format", "length_penalty", "arithmetic"}

PLUGIN = '''
from grpo_cli.rewards import reward

@reward("shout", weight=0.25)
def shout(completions, *, bonus: float = 1.0, **kwargs):
    """Pays bonus for completions in capitals."""
    return [bonus if c.isupper() else 0.0 for c in completions]
'''


def test_every_built_in_is_registered_with_a_description():
    rewards = registered()
    assert set(rewards) >= BUILT_INS
    for name in BUILT_INS:
        assert rewards[name].description, name
        assert rewards[name].source == "built-in"


def test_the_project_example_plugin_is_loaded_from_rewards(monkeypatch):
    from tests.conftest import REPO

    monkeypatch.chdir(REPO)
    load_plugins([])
    info = registered()["reasoning_steps"]
    assert info.weight == 0.0 and info.params["per_step"] == 0.05
    assert info.source == "rewards/reasoning_steps.py"


def test_a_plugin_folder_registers_rewards_with_their_default_weight(tmp_path, write):
    write("plugins/shout.py", PLUGIN)
    load_plugins([tmp_path / "plugins"], include_project=False)
    info = registered()["shout"]
    assert (info.weight, info.params, info.description) == (
        0.25,
        {"bonus": 1.0},
        "Pays bonus for completions in capitals.",
    )
    bound = bind(RewardSpec(name="shout"), RewardContext())
    assert bound.weight == 0.25  # no weight in the config: the reward's default
    assert bound(["HI", "hi"]) == [1.0, 0.0]


def test_config_names_a_plugin_reward_and_sets_its_params(tmp_path, write, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write("more/shout.py", PLUGIN)
    path = write(
        "c.yaml",
        "model: {name: gpt2}\nreward_plugins: [more]\n"
        "rewards:\n  - {name: shout, weight: 2, params: {bonus: 3}}\n",
    )
    cfg = load_config(path).config
    (bound,) = build_rewards(cfg.rewards, RewardContext(), cfg.reward_plugins)
    assert (bound.weight, bound(["YES"])) == (2.0, [3.0])


@pytest.mark.parametrize(
    ("ref", "source"),
    [("plug/shout.py:shout", "file"), ("shout_mod:shout", "module")],
)
def test_module_and_file_references(tmp_path, write, monkeypatch, ref, source):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    write("plug/shout.py", PLUGIN)
    write("shout_mod.py", PLUGIN.replace('"shout"', '"shout2"'))
    fn = import_reference(ref)
    assert fn(["A"]) == [1.0]
    bound = bind(RewardSpec(name=ref, params={"bonus": 2.0}), RewardContext())
    assert bound(["A"]) == [2.0]


def test_an_undecorated_function_can_be_referenced(tmp_path, write, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(
        "r.py",
        "def longish(completions, **kwargs):\n"
        "    return [float(len(c) > 3) for c in completions]\n",
    )
    bound = bind(RewardSpec(name="r.py:longish"), RewardContext())
    assert (bound.__name__, bound.weight, bound(["abcd", "a"])) == ("longish", 1.0, [1.0, 0.0])


def test_unknown_reward_lists_the_registered_ones_with_a_did_you_mean(write):
    path = write("c.yaml", "model: {name: gpt2}\nrewards:\n  - correctnes\n")
    (problem,) = config_problems(path)
    assert (problem.key, problem.line) == ("rewards[0].name", 3)
    assert "unknown reward 'correctnes': did you mean 'correctness'?" in problem.message
    assert "integer_answer" in problem.message and "xml_count" in problem.message


def test_unknown_or_mistyped_params_are_config_errors(write):
    path = write(
        "c.yaml",
        "model: {name: gpt2}\nrewards:\n  - {name: correctness, params: {valu: 1}}\n"
        "  - {name: soft_format, params: {value: high}}\n"
        "  - {name: length_penalty, params: {buffer: 3}}\n",
    )
    problems = {p.key: p.message for p in config_problems(path)}
    assert "did you mean 'value'?" in problems["rewards[0].params.valu"]
    assert "its parameters are value, flexible, answer_tag" in problems["rewards[0].params.valu"]
    assert "expects a number, found 'high'" in problems["rewards[1].params.value"]
    assert "buffer must be a share between 0 and 1" in problems["rewards[2].params"]


def test_all_weights_zero_counts_default_weights(write, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write("rewards/zero.py", PLUGIN.replace("weight=0.25", "weight=0"))
    path = write(
        "c.yaml", "model: {name: gpt2}\nrewards: [shout, {name: correctness, weight: 0}]\n"
    )
    assert "nothing to train on" in config_problems(path)[0].message
    path = write("d.yaml", "model: {name: gpt2}\nrewards: [shout, correctness]\n")
    assert load_config(path)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def f(:\n    pass\n", "bad.py:1: SyntaxError"),
        ("import os\n\nraise RuntimeError('boom')\n", "bad.py:3: RuntimeError: boom"),
        ("import not_a_real_module_xyz\n", "bad.py:1: ModuleNotFoundError"),
    ],
)
def test_a_broken_plugin_names_its_file_and_line(
    tmp_path, write, monkeypatch, cli, source, expected
):
    monkeypatch.chdir(tmp_path)
    write("rewards/bad.py", source)
    path = write("c.yaml", "model: {name: gpt2}\nrewards: [correctness]\n")
    result = cli("config", "validate", path)
    assert result.code == 2
    assert expected in result.err
    assert "Traceback" not in result.err
    result = cli("rewards", "list")
    assert result.code == 2 and expected in result.err


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("def r(completions):\n    return []\n", "must accept **kwargs"),
        ("def r(texts, **kwargs):\n    return []\n", "must accept a `completions` argument"),
    ],
)
def test_signatures_are_checked_when_the_config_is_validated(
    tmp_path, write, monkeypatch, body, needle
):
    monkeypatch.chdir(tmp_path)
    write("r.py", body)
    path = write("c.yaml", "model: {name: gpt2}\nrewards: [r.py:r]\n")
    (problem,) = config_problems(path)
    assert problem.key == "rewards[0].name" and needle in problem.message


def test_a_reference_to_a_missing_function_lists_what_the_file_defines(
    tmp_path, write, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    write("r.py", "def alpha(completions, **kwargs):\n    return []\n")
    with pytest.raises(PluginError, match="r.py has no function beta; it defines alpha"):
        import_reference("r.py:beta")
    with pytest.raises(PluginError, match="cannot import module no_such_pkg"):
        import_reference("no_such_pkg.mod:fn")
    with pytest.raises(PluginError, match="not found"):
        load_file("missing.py")


def test_two_functions_cannot_claim_one_name():
    with pytest.raises(RegistryError, match="'correctness' is registered twice"):

        @reward("correctness")
        def other(completions, **kwargs):
            return []


def test_a_reward_that_raises_names_itself_the_row_and_the_exception(tmp_path, write, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(
        "r.py",
        "def picky(completions, answer, **kwargs):\n    return [1.0 / int(a) for a in answer]\n",
    )
    bound = bind(RewardSpec(name="r.py:picky"), RewardContext())
    assert bound(["x", "y"], answer=["1", "2"]) == [1.0, 0.5]
    with pytest.raises(RewardError) as err:
        bound(["x", "y", "z"], answer=["1", "0", "2"])
    assert err.value.row == 1
    assert "reward 'picky' failed on row 1 of the batch: ZeroDivisionError" in err.value.message


@pytest.mark.parametrize(
    ("returns", "needle"),
    [
        ("[math.nan for c in completions]", "returned nan"),
        ("[1.0]", "returned 1 values for 2 completions"),
        ("['1' for c in completions]", "returned '1', not a number"),
        ("None", "returned NoneType, not a list"),
    ],
)
def test_a_reward_returning_nan_or_the_wrong_shape_stops(
    tmp_path, write, monkeypatch, returns, needle
):
    monkeypatch.chdir(tmp_path)
    write("r.py", f"import math\ndef bad(completions, **kwargs):\n    return {returns}\n")
    bound = bind(RewardSpec(name="r.py:bad"), RewardContext())
    with pytest.raises(RewardError, match=needle):
        bound(["a", "b"])


def test_none_means_not_applicable_and_passes_through(tmp_path, write, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write("r.py", "def maybe(completions, **kwargs):\n    return [None, 1]\n")
    assert bind(RewardSpec(name="r.py:maybe"), RewardContext())(["a", "b"]) == [None, 1.0]


def test_context_tags_reach_the_rewards_and_params_override_them():
    context = RewardContext(answer_tag="final", reasoning_tag="think")
    text = "<think>\nx\n</think>\n<final>\n7\n</final>\n"
    assert bind(RewardSpec(name="strict_format"), context)([text]) == [0.5]
    assert bind(RewardSpec(name="correctness"), context)([text], answer=["7"]) == [2.0]
    overridden = bind(RewardSpec(name="correctness", params={"answer_tag": "answer"}), context)
    assert overridden([text], answer=["7"]) == [0.0]


def test_bound_rewards_are_named_for_trl_metrics():
    from trl.trainer.utils import get_callable_name

    bound = bind(RewardSpec(name="xml_count"), RewardContext())
    assert get_callable_name(bound) == "xml_count"
    assert not math.isnan(bound(["<answer>\n1\n</answer>"])[0])


def test_a_bad_reference_is_a_user_error_not_a_crash():
    with pytest.raises(GrpoError):
        bind(RewardSpec(name="nowhere.py:fn"), RewardContext())
