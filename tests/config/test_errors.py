"""Every kind of config mistake: the file, the line, the key, what was expected, what was found,
and a did-you-mean where one helps."""

from __future__ import annotations

import pytest

from grpo_cli.config import load_config
from tests.conftest import MINIMAL, config_problems


def only_problem(path, overrides=()):
    problems = config_problems(path, overrides)
    assert len(problems) == 1, problems
    return problems[0]


def test_misspelled_section_suggests_the_right_one(write):
    path = write("c.yaml", MINIMAL + "trainig:\n  learning_rate: 1.0e-5\n")
    problem = only_problem(path)
    assert problem.key == "trainig"
    assert problem.line == 5
    assert problem.source.endswith("c.yaml")
    assert "unknown key 'trainig'" in problem.message
    assert "Did you mean 'training'?" in problem.message


def test_misspelled_nested_key_suggests_within_its_section(write):
    path = write("c.yaml", MINIMAL + "training:\n  learning_rat: 1.0e-5\n")
    problem = only_problem(path)
    assert (problem.key, problem.line) == ("training.learning_rat", 6)
    assert "Did you mean 'learning_rate'?" in problem.message


@pytest.mark.parametrize(
    ("section", "key", "suggestion"),
    [
        ("lora", "rank", "r"),
        ("lora", "lora_alpha", "alpha"),
        ("training", "lr", "learning_rate"),
        ("training", "per_device_train_batch_size", "prompts_per_step"),
        ("model", "load_in_4bit", "quantization: 4bit"),
    ],
)
def test_names_from_other_tools_map_to_ours(write, section, key, suggestion):
    text = f"model:\n  name: gpt2\nrewards: [correctness]\n{section}:\n  {key}: 1\n"
    if section == "model":
        text = f"model:\n  name: gpt2\n  {key}: 1\nrewards: [correctness]\n"
    path = write("c.yaml", text)
    problem = only_problem(path)
    assert problem.key == f"{section}.{key}"
    assert f"Did you mean '{suggestion}'?" in problem.message
    if suggestion == "prompts_per_step":  # a TRL user learns how the two batch sizes relate
        assert "prompts_per_step x num_generations" in problem.message


def test_key_in_the_wrong_section_names_its_home(write):
    path = write(
        "c.yaml", "model:\n  name: gpt2\n  learning_rate: 1.0e-5\nrewards: [correctness]\n"
    )
    problem = only_problem(path)
    assert (problem.key, problem.line) == ("model.learning_rate", 3)
    assert "belongs under training.learning_rate" in problem.message


def test_unknown_training_key_points_to_the_trl_passthrough(write):
    path = write("c.yaml", MINIMAL + "training:\n  scale_rewards: batch\n")
    assert "go under training.trl" in only_problem(path).message


def test_enum_typo_lists_choices_and_suggests(write):
    path = write("c.yaml", "model:\n  name: gpt2\n  quantization: 4-bit\nrewards: [correctness]\n")
    problem = only_problem(path)
    assert (problem.key, problem.line) == ("model.quantization", 3)
    assert "expected one of none, 4bit, 8bit, fp8" in problem.message
    assert "found '4-bit'" in problem.message
    assert "Did you mean '4bit'?" in problem.message


def test_wrong_type_says_expected_and_found(write):
    path = write("c.yaml", MINIMAL + "training:\n  learning_rate: fast\n  max_steps: 1.5\n")
    problems = {p.key: p for p in config_problems(path)}
    assert problems["training.learning_rate"].line == 6
    assert "expected number; found 'fast' (text)" in problems["training.learning_rate"].message
    assert "found 1.5 (a number)" in problems["training.max_steps"].message


def test_text_key_given_a_number(write):
    path = write("c.yaml", MINIMAL + "data:\n  split: 2024\n")
    assert "expected text; found 2024 (a number)" in only_problem(path).message


def test_out_of_range_value(write):
    path = write("c.yaml", MINIMAL + "training:\n  top_p: 1.5\n")
    problem = only_problem(path)
    assert problem.key == "training.top_p"
    assert "must be less than or equal to 1; found 1.5" in problem.message


def test_missing_required_keys(write):
    path = write("c.yaml", "training:\n  max_steps: 3\n")
    problems = {p.key: p.message for p in config_problems(path)}
    assert "required section is missing" in problems["model"]
    assert "required" in problems["rewards"]
    path = write("d.yaml", "model:\n  revision: main\nrewards: [correctness]\n")
    problem = only_problem(path)
    assert (problem.key, problem.line) == ("model.name", 1)
    assert "required key is missing" in problem.message and "Hub id" in problem.message


def test_a_union_key_reports_once_at_the_key(write):
    path = write("c.yaml", MINIMAL + "lora:\n  target_modules: [1, q_proj]\n")
    problem = only_problem(path)
    assert (problem.key, problem.line) == ("lora.target_modules", 6)
    assert "expected list of text or one of all-linear; found [1, 'q_proj']" in problem.message


def test_empty_reward_list(write):
    path = write("c.yaml", "model: {name: gpt2}\nrewards: []\n")
    assert "list at least one reward" in only_problem(path).message


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("model:\n  name: x\n bad: [\n", 3, 2),
        ("model: {name: x\nrewards: [correctness]\n", 2, 8),
        ("model:\n\tname: x\n", 2, 1),
        ("model: !!python/object:os.system {}\n", 1, 8),  # unsafe tags are refused, located
    ],
)
def test_invalid_yaml_shows_line_and_column(write, text, line, column):
    problem = only_problem(write("c.yaml", text))
    assert problem.message.startswith("invalid YAML")
    assert (problem.line, problem.column) == (line, column)
    assert problem.location.endswith(f"c.yaml:{line}:{column}")


@pytest.mark.parametrize(
    ("text", "needle"),
    [("", "is empty"), ("# only a comment\n", "is empty"), ("- a\n- b\n", "must be a mapping")],
)
def test_files_that_are_not_configs(write, text, needle):
    assert needle in only_problem(write("c.yaml", text)).message


def test_missing_file(tmp_path):
    problem = only_problem(tmp_path / "absent.yaml")
    assert problem.message == "file not found"


def test_duplicate_key_is_an_error_not_a_silent_overwrite(write):
    path = write("c.yaml", MINIMAL + "training:\n  seed: 1\n  seed: 2\n")
    problem = only_problem(path)
    assert (problem.key, problem.line) == ("training.seed", 7)
    assert "written twice (first on line 6)" in problem.message


def test_all_problems_of_a_file_are_reported_at_once(write):
    path = write(
        "c.yaml",
        """\
        model:
          name: gpt2
          quantization: 3bit
        rewards: [correctness]
        trainig: {}
        training:
          learning_rate: -1
          temperature: hot
        vllm:
          gpu_memory_utilization: 2
        data:
          prompt_style: custom
        """,
    )
    problems = config_problems(path)
    assert [p.key for p in problems] == [
        "model.quantization",
        "trainig",
        "training.learning_rate",
        "training.temperature",
        "vllm.gpu_memory_utilization",
        "data.system_prompt",  # a cross-field check of a valid section still runs
    ]
    assert [p.line for p in problems] == [3, 5, 7, 8, 10, 11]  # in file order


def test_cross_field_checks_skip_sections_that_are_invalid(write):
    # max_seq_length is invalid, so the length check (which reads it) must not guess a default;
    # the geometry check reads only the valid training section and still reports.
    path = write(
        "c.yaml",
        "model:\n  name: gpt2\n  max_seq_length: big\nrewards: [correctness]\n"
        "training:\n  max_completion_length: 4000\n  generation_batch_size: 6\n",
    )
    assert [p.key for p in config_problems(path)] == [
        "model.max_seq_length",
        "training.generation_batch_size",
    ]


def test_error_in_a_parent_file_names_the_parent_and_its_line(write):
    write("base.yaml", MINIMAL + "training:\n  warmup_ratio: 2\n")
    child = write("child.yaml", "extends: base.yaml\nlora: {r: 4}\n")
    problem = only_problem(child)
    assert problem.source.endswith("base.yaml")
    assert (problem.key, problem.line) == ("training.warmup_ratio", 6)


@pytest.mark.parametrize(
    ("snippet", "key"),
    [
        ("model:\n  name: gpt2\n  hf_token: abc\n", "model.hf_token"),
        ("model:\n  name: gpt2\nlogging:\n  wandb_api_key: abc\n", "logging.wandb_api_key"),
        ("model:\n  name: gpt2\ntraining:\n  trl:\n    hub_token: abc\n", "training.trl.hub_token"),
    ],
)
def test_secrets_are_refused_as_keys(write, snippet, key):
    problem = only_problem(write("c.yaml", snippet + "rewards: [correctness]\n"))
    assert problem.key == key
    assert "secrets are never config keys" in problem.message and "HF_TOKEN" in problem.message


def test_tokenizer_token_names_are_not_secrets(write, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(
        "tokens.py", "def x(completions, pad_token=None, max_tokens=0, **kwargs):\n    return []\n"
    )
    path = write(
        "c.yaml",
        "model: {name: gpt2}\nrewards:\n  - name: tokens.py:x\n"
        "    params: {pad_token: '<pad>', max_tokens: 9}\n",
    )
    assert load_config(path).config.rewards[0].params == {"pad_token": "<pad>", "max_tokens": 9}


def test_a_token_pasted_as_a_value_is_refused(write):
    token = "hf_" + "a1B2c3D4e5" * 4
    path = write("c.yaml", MINIMAL + f"output:\n  run_name: {token}\n")
    problem = only_problem(path)
    assert "looks like a Hugging Face token" in problem.message
    assert token not in problem.message


@pytest.mark.parametrize(
    ("snippet", "key", "needle"),
    [
        ("model:\n  name: not a/valid id\n", "model.name", "neither a Hub id"),
        ("model:\n  name: gpt2\noutput:\n  run_name: a/b\n", "output.run_name", "plain folder"),
        ("model:\n  name: gpt2\noutput:\n  hub_repo: justname\n", "output.hub_repo", "owner/name"),
        ("model:\n  name: gpt2\ndata:\n  source: my data\n", "data.source", "Hub dataset id"),
        ("model:\n  name: gpt2\ndata:\n  answer_tag: 'a b'\n", "data.answer_tag", "tag name"),
        ("model:\n  name: gpt2\nlora:\n  target_modules: []\n", "lora.target_modules", "at least"),
    ],
)
def test_value_checks(write, snippet, key, needle):
    problem = only_problem(write("c.yaml", snippet + "rewards: [correctness]\n"))
    assert problem.key == key
    assert needle in problem.message


@pytest.mark.parametrize("weight", [".nan", ".inf", "-.inf"])
def test_reward_weights_must_be_finite(write, weight):
    path = write(
        "c.yaml", f"model: {{name: gpt2}}\nrewards:\n  - name: correctness\n    weight: {weight}\n"
    )
    problem = only_problem(path)
    assert problem.key == "rewards[0].weight"
    assert "finite" in problem.message


@pytest.mark.parametrize(
    "override",
    [
        "training.learning_rate=[1, 2",  # ParserError
        "training.trl.x={a: 1",
        "training.trl.x=!!python/object:os.system",  # ConstructorError: tags are refused
        "training.trl.x=!!binary 12",
        "training.trl.x=*alias",  # ComposerError: no such anchor
        "training.trl.x=a: b: c",  # ScannerError
        "training.trl.x='open",
        "training.trl.x={[1]: 2}",  # unhashable key
        "training.trl.x=1\n---\n2",  # two documents
        "model.fast_inference=@x",
    ],
)
def test_a_set_value_that_is_not_yaml_is_located_at_the_set(write, override, cli):
    path = write("c.yaml", MINIMAL)
    problem = only_problem(path, [override])
    assert problem.source == f"--set {override}"
    assert problem.key == override.split("=")[0]
    assert "not valid YAML" in problem.message and "quote" in problem.message
    result = cli("config", "validate", path, "--set", override)
    assert result.code == 2 and "Error: unexpected" not in result.err
    assert result.err.startswith(f"Error: --set {override}")


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("trainig.lr=1", "trainig"),  # a section the file lacks, created by the override
        ("trainig.a.b.c=1", "trainig"),
        ("training.lr=1", "training.lr"),
        ("model.foo.bar.baz=1", "model.foo"),
        ("rewards.0.paramz.x=1", "rewards[0].paramz"),
        ("rewards.0.weigth=1", "rewards[0].weigth"),
    ],
)
def test_an_unknown_key_made_by_a_set_blames_the_set(write, override, key):
    problem = only_problem(write("c.yaml", MINIMAL), [override])
    assert (problem.source, problem.key) == (f"--set {override}", key)
    assert "unknown key" in problem.message


def test_a_set_into_a_section_the_file_has_still_blames_the_file_for_its_keys(write):
    path = write("c.yaml", MINIMAL + "trainig:\n  seed: 1\n")
    problem = only_problem(path, ["trainig.lr=1"])
    assert problem.source.endswith("c.yaml") and problem.line == 5


def test_thousands_of_problems_are_counted_not_all_listed(write, cli):
    keys = "".join(f"  k{i}: 1\n" for i in range(20_000))  # 230 KB, just below the size cap
    path = write("c.yaml", MINIMAL + "training:\n" + keys)
    result = cli("config", "validate", path)
    assert result.code == 2
    assert "20000 problems in" in result.err
    assert result.err.count("unknown key") == 20  # the first ones, in file order
    assert "training.k0:" in result.err and "k19:" in result.err and "k20:" not in result.err
    assert "... and 19980 more problems" in result.err
    assert len(result.err) < 20_000


@pytest.mark.parametrize(
    ("snippet", "key"),
    [
        (
            "data:\n  prompt_style: custom\n  system_prompt: 'Use {t} to log in.'\n",
            "data.system_prompt",
        ),
        ("output:\n  run_name: x\n  dir: 'runs/{t}'\n", "output.dir"),
        ("lora:\n  target_modules: [q_proj, 'token={t}']\n", "lora.target_modules[1]"),
        ("training:\n  trl:\n    {t}: 1\n", "training.trl.hf_***"),
        ("training:\n  trl:\n    x: {{note: 'Bearer {t}'}}\n", "training.trl.x.note"),
    ],
)
def test_a_token_anywhere_in_the_config_is_refused_and_never_echoed(write, cli, snippet, key):
    token = "hf_" + "aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3h"  # 34 characters, as the Hub issues
    path = write("c.yaml", MINIMAL + snippet.format(t=token))
    problem = only_problem(path)
    assert problem.key == key
    assert "looks like a Hugging Face token" in problem.message
    result = cli("config", "validate", path)
    assert result.code == 2 and token not in result.err


def test_a_token_in_a_set_is_refused_and_masked_in_the_location(write, cli):
    token = "hf_" + "aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3h"
    override = f"data.system_prompt=Use {token} here"
    path = write("c.yaml", MINIMAL + "data:\n  prompt_style: custom\n")
    problem = only_problem(path, [override])
    assert problem.source == "--set data.system_prompt=Use hf_*** here"
    result = cli("config", "validate", path, "--set", override)
    assert result.code == 2 and token not in result.err


@pytest.mark.parametrize("text", ["hf_token_name", "hf_home", "use hf_transfer", "hf_" + "a" * 20])
def test_names_that_start_with_hf_are_not_tokens(write, text):
    path = write("c.yaml", MINIMAL + f"data:\n  prompt_style: custom\n  system_prompt: {text}\n")
    assert load_config(path).config.data.system_prompt == text


def test_the_token_pattern_is_one_for_configs_and_run_files():
    from grpo_cli.config import loader, schema
    from grpo_cli.modelcard import mask_secrets as card_mask
    from grpo_cli.training.rundir import mask_secrets as run_mask

    assert card_mask is schema.mask_secrets is run_mask  # one pattern, one masking function
    assert not hasattr(loader, "_SECRET_VALUE")
