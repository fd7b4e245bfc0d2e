"""`grpo merge` on a smoke run of the tiny model: merged logits equal base + adapter, the merged
folder loads with transformers and keeps its chat template, the model card, publishing (through
fakes of the Hub API, no network), GGUF refusals, overwrite protection and the crash-safe write."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from grpo_cli.cli import main
from grpo_cli.commands import merge as merge_command
from grpo_cli.merging import weights as merge_weights

from ..conftest import smoke_args

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

PROMPTS = ("What is 12 plus 30?", "A shop sells 7 apples a day. How many in a week?", "3x = 21")
FAKE_TOKEN = "hf_" + "A1b2C3d4E5f6G7h8I9j0" * 2
MERGED_FILES = [
    "README.md",
    "chat_template.jinja",
    "config.json",
    "generation_config.json",
    "grpo_config.yaml",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "training.png",
]
ADAPTER_FILES = [
    "README.md",
    "adapter_config.json",
    "adapter_model.safetensors",
    "chat_template.jinja",
    "grpo_config.yaml",
    "tokenizer.json",
    "tokenizer_config.json",
    "training.png",
]
EVALS = {
    "test": {
        "rows": 200,
        "samples": 1,
        "strict_accuracy": 0.4125,
        "strict_accuracy_ci95": [0.345, 0.481],
        "flexible_accuracy": 0.5,
        "flexible_accuracy_ci95": [0.431, 0.569],
        "format_rate": 0.93,
    },
    "heldout": {"rows": 8, "samples": 4, "strict_accuracy": 0.25, "pass@4": 0.5, "maj@4": 0.375},
}


@pytest.fixture(scope="module")
def trained_run(tiny_model, tmp_path_factory) -> Path:
    """One smoke run for the module. Four steps barely move LoRA B, so it is scaled up: merged
    logits must then differ from the base by far more than the tolerance a merge is held to."""
    from safetensors.torch import load_file, save_file

    out = tmp_path_factory.mktemp("merge-run")
    assert main(smoke_args(tiny_model, out)) == 0
    run = out / "outputs" / "smoke-cpu"
    weights = run / "adapter" / "adapter_model.safetensors"
    tensors = {k: v * 50 if "lora_B" in k else v for k, v in load_file(weights).items()}
    save_file(tensors, weights, metadata={"format": "pt"})
    return run


@pytest.fixture
def run(trained_run, tmp_path) -> Path:
    """A private copy of the run, for tests that add to it or write beside it."""
    return Path(shutil.copytree(trained_run, tmp_path / "smoke-cpu"))


@pytest.fixture
def hub(monkeypatch):
    """HfApi with create_repo / create_branch / upload_folder recording their calls; a token."""
    calls: list[tuple[str, dict]] = []
    tokens: list[str | None] = []
    real_init = HfApi.__init__

    def init(self, *args, **kwargs):
        tokens.append(kwargs.get("token"))
        real_init(self, *args, **kwargs)

    def recorder(name):
        def record(self, *args, **kwargs):
            if args:
                kwargs = {"repo_id": args[0], **kwargs}
            calls.append((name, kwargs))

        return record

    monkeypatch.setattr(HfApi, "__init__", init)
    for name in ("create_repo", "create_branch", "upload_folder"):
        monkeypatch.setattr(HfApi, name, recorder(name))
    monkeypatch.setattr("huggingface_hub.get_token", lambda: FAKE_TOKEN)
    return calls, tokens


def last_logits(model_or_path, tokenizer, dtype="float32"):
    import torch
    from transformers import AutoModelForCausalLM

    model = model_or_path
    if isinstance(model_or_path, Path):
        model = AutoModelForCausalLM.from_pretrained(model_or_path, dtype=getattr(torch, dtype))
    model.eval()
    out = []
    with torch.no_grad():
        for prompt in PROMPTS:
            inputs = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}],
                add_generation_prompt=True,
                return_tensors="pt",
                return_dict=True,
            )
            out.append(model(**inputs).logits[0, -1].float())
    return out


@pytest.fixture(scope="module")
def reference_logits(trained_run, tiny_model):
    """Next-token logits of base + adapter (PEFT, unmerged, fp32), and of the base alone."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(trained_run / "adapter")
    load = lambda: AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)  # noqa: E731
    adapted = PeftModel.from_pretrained(load(), str(trained_run / "adapter"))
    return last_logits(adapted, tokenizer), last_logits(load(), tokenizer), tokenizer


def max_diff(a, b) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))


def files_in(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


# --- the merged model ---------------------------------------------------------------------------


def test_fp32_merge_gives_the_logits_of_base_plus_adapter(trained_run, reference_logits, tmp_path):
    adapted, base, tokenizer = reference_logits
    assert max_diff(adapted, base) > 0.05, "the adapter must change the logits for this to test"
    out = tmp_path / "merged"
    assert main(["merge", str(trained_run), "--dtype", "fp32", "--output", str(out)]) == 0
    merged = last_logits(out, tokenizer)
    assert max_diff(merged, adapted) <= 1e-4


def test_merge_writes_a_bf16_model_that_transformers_loads(cli, run, reference_logits):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = cli("merge", run)
    assert result.code == 0, result.err
    merged = run / "merged"
    assert files_in(merged) == MERGED_FILES
    assert "grpo merge: done" in result.err and "model.safetensors" in result.err
    model = AutoModelForCausalLM.from_pretrained(merged)
    assert model.dtype == torch.bfloat16
    tokenizer = AutoTokenizer.from_pretrained(merged)
    trained = AutoTokenizer.from_pretrained(run / "adapter")
    assert tokenizer.chat_template and tokenizer.chat_template == trained.chat_template
    generation = json.loads((merged / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [2, 0]  # the base model's, kept
    adapted, base, _ = reference_logits
    # bf16 rounding of every weight moves these logits by ~2e-3; the adapter by > 5e-2
    assert max_diff(last_logits(merged, tokenizer), adapted) < 1e-2
    assert not list(run.glob(".merged.*")), "no temporary folder is left behind"
    assert "unsloth" not in sys.modules, "a trl run is merged with PEFT, without importing unsloth"


def test_fp16_weights_on_request(cli, run, tmp_path):
    assert cli("merge", run, "--dtype", "fp16", "-o", tmp_path / "m16").code == 0
    config = json.loads((tmp_path / "m16" / "config.json").read_text())
    assert config["dtype"] == "float16"


def test_a_bare_adapter_folder_merges_beside_itself(cli, run, tmp_path):
    adapter = Path(shutil.copytree(run / "adapter", tmp_path / "elsewhere" / "my-adapter"))
    result = cli("merge", adapter)
    assert result.code == 0, result.err
    merged = tmp_path / "elsewhere" / "my-adapter-merged"
    assert "model.safetensors" in files_in(merged) and "grpo_config.yaml" not in files_in(merged)
    card = (merged / "README.md").read_text()
    assert "The run's config was not available" in card


def test_a_checkpoint_merges_with_its_own_step_and_the_runs_recipe(cli, run, tmp_path):
    result = cli("merge", run / "checkpoints" / "checkpoint-2", "-o", tmp_path / "m")
    assert result.code == 0, result.err
    card = (tmp_path / "m" / "README.md").read_text()
    assert "| optimizer steps | 2 |" in card and "| learning rate | 0.0001 |" in card


def test_a_merged_checkpoint_goes_beside_checkpoints_not_into_it(cli, run):
    # The trainer takes any `*checkpoint-N` folder in checkpoints/ for one of its own (and
    # save_total_limit deletes the oldest): a merge must never land there.
    result = cli("merge", run / "checkpoints" / "checkpoint-2")
    assert result.code == 0, result.err
    assert "model.safetensors" in files_in(run / "merged-checkpoint-2")
    assert not [p.name for p in (run / "checkpoints").iterdir() if "merged" in p.name]


# --- the model card -------------------------------------------------------------------------


def test_card_has_recipe_rewards_metrics_and_commands_and_no_token(cli, run, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    (run / "eval.json").write_text(json.dumps(EVALS))
    result = cli("merge", run)
    assert result.code == 0, result.err
    card = (run / "merged" / "README.md").read_text()
    for line in (
        "| backend | trl |",
        "| precision | fp32 |",
        "| LoRA r / alpha | 8 / 16 |",
        "| optimizer steps | 4 |",
        "| learning rate | 0.0001 |",
        "| num_generations (group size) | 4 |",
        "| prompts_per_step | 2 |",
        "| loss_type | dapo |",
        "| max_completion_length | 32 |",
        "| correctness | 1 | - |",
        "| length_penalty | 1 | - |",
        "| source | synthetic |",
        "| held-out rows (never trained on) | 8 |",
        "| test | 200 | 1 | 41.2% [34.5, 48.1] | 50.0% [43.1, 56.9] | - | - | 93.0% |",
        "| heldout | 8 | 4 | 25.0% | - | 50.0% | 37.5% | - |",
        "grpo train grpo_config.yaml",
        f"grpo merge {run}",
        "AutoModelForCausalLM.from_pretrained",
        "<reasoning>",
    ):
        assert line in card, line
    assert card.startswith("---\n") and "library_name: transformers" in card
    written = "".join(p.read_text(errors="ignore") for p in (run / "merged").iterdir())
    assert FAKE_TOKEN not in written + result.out + result.err


def test_without_eval_json_the_card_has_no_eval_section(cli, run):
    assert cli("merge", run).code == 0
    assert "## Evaluation" not in (run / "merged" / "README.md").read_text()


# --- publishing -------------------------------------------------------------------------------


def test_push_uploads_exactly_the_merged_folder(cli, run, hub):
    calls, tokens = hub
    result = cli("merge", run, "--push-to-hub", "me/tiny-grpo", "--revision", "v1", "--public")
    assert result.code == 0, result.err
    assert [name for name, _ in calls] == ["create_repo", "create_branch", "upload_folder"]
    create, branch, upload = (kwargs for _, kwargs in calls)
    assert create == {
        "repo_id": "me/tiny-grpo",
        "repo_type": "model",
        "private": False,
        "exist_ok": True,
    }
    assert branch["repo_id"] == "me/tiny-grpo" and branch["branch"] == "v1"
    assert upload["repo_id"] == "me/tiny-grpo" and upload["revision"] == "v1"
    assert upload["repo_type"] == "model" and Path(upload["folder_path"]) == run / "merged"
    assert upload["allow_patterns"] == MERGED_FILES == files_in(run / "merged")
    assert tokens == [FAKE_TOKEN]  # handed to HfApi, and nowhere else
    assert "https://huggingface.co/me/tiny-grpo/tree/v1" in result.err
    card = (run / "merged" / "README.md").read_text()
    assert "# me/tiny-grpo" in card and "--push-to-hub me/tiny-grpo" in card
    assert FAKE_TOKEN not in result.out + result.err + card


def test_adapter_only_publishes_the_adapter_with_its_own_card(cli, run, hub):
    calls, _ = hub
    result = cli("merge", run, "--adapter-only", "--push-to-hub", "me/tiny-grpo-lora")
    assert result.code == 0, result.err
    create, upload = calls[0][1], calls[-1][1]
    assert create["private"] is True  # output.private, true unless the config says otherwise
    assert upload["revision"] is None and upload["allow_patterns"] == ADAPTER_FILES
    folder = Path(upload["folder_path"])
    assert folder == run / "adapter-release" and files_in(folder) == ADAPTER_FILES
    card = (folder / "README.md").read_text()
    assert "library_name: peft" in card and "AutoPeftModelForCausalLM" in card
    assert not (run / "merged").exists()


def test_push_without_a_token_stops_before_merging(cli, run, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    result = cli("merge", run, "--push-to-hub", "me/tiny-grpo")
    assert result.code == 2
    assert "Hint:" in result.err and "hf auth login" in result.err and "HF_TOKEN" in result.err
    assert not (run / "merged").exists()


def conflict(*args, **kwargs):
    request = httpx.Request("POST", "https://huggingface.co/api/repos/create")
    raise HfHubHTTPError("409 Conflict: repo exists", response=httpx.Response(409, request=request))


def offline(*args, **kwargs):
    raise httpx.ConnectError("[Errno -2] Name or service not known")


@pytest.mark.parametrize(
    ("failure", "message"), [(conflict, "name conflict (409)"), (offline, "cannot reach the Hub")]
)
def test_hub_failures_are_user_errors_and_keep_the_merged_model(
    cli, run, hub, monkeypatch, failure, message
):
    monkeypatch.setattr(HfApi, "create_repo", failure)
    result = cli("merge", run, "--push-to-hub", "me/tiny-grpo")
    assert result.code == 2, result.err
    assert message in result.err and "Traceback" not in result.err
    assert f"hf upload me/tiny-grpo {run / 'merged'}" in result.err
    assert (run / "merged" / "model.safetensors").is_file()


@pytest.mark.parametrize(
    "args",
    [
        ["--push-to-hub", "not a repo"],
        ["--push-to-hub", "justname"],
        ["--revision", "v1"],
        ["--public"],
    ],
)
def test_bad_publishing_flags_are_refused(cli, run, args):
    result = cli("merge", run, *args)
    assert result.code == 2 and "Hint:" in result.err
    assert not (run / "merged").exists()


# --- GGUF ---------------------------------------------------------------------------------


def test_gguf_without_unsloth_says_what_to_install(cli, run, monkeypatch):
    monkeypatch.setattr(merge_weights, "unsloth_installed", lambda: False)
    result = cli("merge", run, "--gguf", "q4_k_m,q8_0")
    assert result.code == 2
    assert "pip install -e '.[gpu]'" in result.err and "llama.cpp" in result.err
    assert not (run / "merged").exists()


@pytest.mark.parametrize(
    ("gguf", "message"), [("q4_km", "Did you mean 'q4_k_m'?"), (",", "names no quantization")]
)
def test_unknown_gguf_quantization_is_refused(cli, run, gguf, message):
    result = cli("merge", run, "--gguf", gguf)
    assert result.code == 2 and message in result.err and "Hint:" in result.err


def test_gguf_and_adapter_only_do_not_go_together(cli, run):
    result = cli("merge", run, "--gguf", "q8_0", "--adapter-only")
    assert result.code == 2 and "--adapter-only" in result.err


# --- refusals, overwrite protection and the crash-safe write -----------------------------------


def test_a_non_empty_output_is_kept_without_force_and_replaced_with_it(cli, run, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    result = cli("merge", run, "-o", out)
    assert result.code == 2 and "--force" in result.err
    assert files_in(out) == ["mine.txt"] and (out / "mine.txt").read_text() == "keep me"
    assert cli("merge", run, "-o", out, "--force").code == 0
    assert files_in(out) == MERGED_FILES
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_the_run_itself_is_never_an_output(cli, run):
    for target in (run, run / "adapter", run.parent):
        result = cli("merge", run, "-o", target, "--force")
        assert result.code == 2 and "would replace the adapter" in result.err
    assert (run / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("existing", [False, True])
def test_a_crash_mid_write_leaves_no_half_written_model(cli, run, tmp_path, monkeypatch, existing):
    out = tmp_path / "out"
    if existing:
        out.mkdir()
        (out / "old.txt").write_text("previous model")

    def crash(facts):  # the weights and tokenizer are written by now
        raise RuntimeError("disk full")

    monkeypatch.setattr(merge_command, "model_card", crash)
    args = ["merge", run, "-o", out] + (["--force"] if existing else [])
    result = cli(*args)
    assert result.code == 1 and "disk full" in result.err
    if existing:
        assert files_in(out) == ["old.txt"] and (out / "old.txt").read_text() == "previous model"
    else:
        assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_sources_that_cannot_be_merged_are_refused(cli, run, tiny_model, tmp_path):
    (tmp_path / "empty").mkdir()
    shutil.rmtree(run / "adapter")
    cases = {
        tmp_path / "missing": "no such folder",
        tmp_path / "empty": "neither a run directory, an adapter folder nor a model folder",
        run: "has no adapter/ yet",
        tiny_model: "full model, not a LoRA adapter",
        run / "config.yaml": "is a file",
    }
    for source, message in cases.items():
        result = cli("merge", source)
        assert result.code == 2, source
        assert message in result.err and "Hint:" in result.err and "Traceback" not in result.err
    assert "checkpoint-4" in cli("merge", run).err  # the hint names the checkpoint to merge


def test_a_checkpoint_the_trainer_did_not_finish_is_never_merged(cli, run, monkeypatch):
    (run / "checkpoints/checkpoint-4/checkpoint_complete.json").unlink()  # stopped while saving
    result = cli("merge", run / "checkpoints" / "checkpoint-4")
    assert result.code == 2 and "did not finish writing" in result.err, result.err
    assert f"use the newest complete one: {run / 'checkpoints' / 'checkpoint-2'}" in result.err
    # the same checkpoint named from inside it is the same checkpoint
    monkeypatch.chdir(run / "checkpoints" / "checkpoint-4")
    inside = cli("merge", ".")
    assert inside.code == 2 and "did not finish writing" in inside.err, inside.err
    monkeypatch.chdir(run)
    shutil.rmtree(run / "adapter")
    hint = cli("merge", run).err.split("Hint: ")[1]
    assert "checkpoint-2" in hint and "checkpoint-4" not in hint


def bare_adapter(run: Path, tmp_path: Path, base: str) -> Path:
    adapter = Path(shutil.copytree(run / "adapter", tmp_path / "adapter"))
    meta = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(
        json.dumps({**meta, "base_model_name_or_path": base})
    )
    return adapter


def test_a_missing_local_base_is_named(cli, run, tmp_path):
    result = cli("merge", bare_adapter(run, tmp_path, "./models/gone"))
    assert result.code == 2
    assert "base model ./models/gone not found" in result.err
    assert "adapter_config.json" in result.err


def test_a_hub_base_neither_cached_nor_downloadable_is_a_user_error(
    cli, run, tmp_path, monkeypatch
):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    result = cli("merge", bare_adapter(run, tmp_path, "nobody-xyz/no-such-model"))
    assert result.code == 2, result.err
    assert "nobody-xyz/no-such-model is not (completely) in the local cache" in result.err
    assert "hf download nobody-xyz/no-such-model" in result.err
    assert not (tmp_path / "adapter-merged").exists()


def test_an_adapter_saved_on_unsloths_4bit_copy_merges_into_the_16bit_original(
    cli, run, tiny_model, reference_logits, tmp_path, monkeypatch
):
    """Unsloth records the pre-quantized copy it loaded as the adapter's base; the merge loads
    the 16-bit original instead (here from the local Hub cache, offline)."""
    repo = tmp_path / "hub" / "models--unsloth--tiny-qwen2"
    shutil.copytree(tiny_model, repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    adapter = bare_adapter(run, tmp_path, "unsloth/tiny-qwen2-unsloth-bnb-4bit")
    result = cli("merge", adapter, "--dtype", "fp32")
    assert result.code == 0, result.err
    assert (
        "base: unsloth/tiny-qwen2 (the run trained on unsloth/tiny-qwen2-unsloth-bnb-4bit; "
        "merging into the 16-bit original)"
    ) in result.err
    adapted, _, tokenizer = reference_logits
    assert max_diff(last_logits(tmp_path / "adapter-merged", tokenizer), adapted) <= 1e-4
    assert (
        "base_model: unsloth/tiny-qwen2\n"
        in (tmp_path / "adapter-merged" / "README.md").read_text()
    )


def test_refusals_load_no_ml_library(tmp_path):
    code = (
        "import sys\nfrom grpo_cli.cli import main\n"
        f"rc = main(['merge', {str(tmp_path)!r}])\n"
        "heavy = ('torch', 'transformers', 'peft', 'unsloth', 'trl')\n"
        "print('HEAVY', [m for m in heavy if m in sys.modules], rc, file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert "HEAVY [] 2" in result.stderr, result.stderr


# --- the Unsloth path ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_trained_with_unsloth_is_merged_by_unsloth(run, reference_logits, tmp_path):
    """In a subprocess: importing unsloth patches transformers for the whole process."""
    from tests.optional import require

    require("unsloth", "runs trained with Unsloth (scripts/test.sh installs it with --no-deps)")
    env_file = run / "env.json"
    env_file.write_text(json.dumps({**json.loads(env_file.read_text()), "backend": "unsloth"}))
    env = {**os.environ, "UNSLOTH_DISABLE_STATISTICS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "grpo_cli", "merge", str(run), "--dtype", "fp16"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fp16 safetensors (Unsloth merged_16bit)" in result.stderr
    merged = run / "merged"
    assert stored_dtypes(merged) == {"F16"}, "the tiny base is stored in fp32; fp16 was asked"
    assert "model.safetensors" in files_in(merged) and "README.md" in files_in(merged)
    assert "- unsloth" in (merged / "README.md").read_text()
    adapted, _, tokenizer = reference_logits
    assert max_diff(last_logits(merged, tokenizer), adapted) < 1e-2


class FakeUnsloth:
    """unsloth's FastLanguageModel as `grpo merge` uses it: from_pretrained records its kwargs;
    save_pretrained_merged records its own and writes what Unsloth writes for a base stored in
    STORED (float32 only when asked for; else the stored dtype, whatever the loaded model's)."""

    def __init__(self, stored: str, value: float = 0.5):
        self.stored, self.value = stored, value
        self.loaded: dict = {}
        self.saved: dict = {}
        self.FastLanguageModel = types.SimpleNamespace(from_pretrained=self.from_pretrained)

    def from_pretrained(self, **kwargs):
        self.loaded = kwargs
        model = types.SimpleNamespace(save_pretrained_merged=self.save_pretrained_merged)
        return model, None

    def save_pretrained_merged(self, folder, tokenizer, **kwargs):
        import torch
        from safetensors.torch import save_file

        self.saved = kwargs
        written = "float32" if kwargs.get("dtype") is torch.float32 else self.stored
        weights = {"lm_head.weight": torch.full((4, 4), self.value, dtype=getattr(torch, written))}
        save_file(weights, Path(folder) / "model.safetensors", metadata={"format": "pt"})
        loaded = str(self.loaded["dtype"]).removeprefix("torch.")
        (Path(folder) / "config.json").write_text(json.dumps({"dtype": loaded}))


@pytest.fixture
def fake_unsloth(run, monkeypatch):
    """The run marked as trained with Unsloth, and a FakeUnsloth (bf16 base) importable."""
    env_file = run / "env.json"
    env_file.write_text(json.dumps({**json.loads(env_file.read_text()), "backend": "unsloth"}))
    fake = FakeUnsloth("bfloat16")
    monkeypatch.setattr(merge_weights, "unsloth_installed", lambda: True)
    monkeypatch.setitem(sys.modules, "unsloth", fake)
    return fake


def stored_dtypes(folder: Path) -> set[str]:
    """The dtypes in the safetensors header, as written on disk."""
    raw = (folder / "model.safetensors").read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    return {v["dtype"] for k, v in header.items() if k != "__metadata__"}


@pytest.mark.parametrize(
    ("dtype", "stored", "config"),
    [("fp16", "F16", "float16"), ("bf16", "BF16", "bfloat16"), ("fp32", "F32", "float32")],
)
def test_the_unsloth_merge_writes_the_dtype_it_reports(
    cli, run, fake_unsloth, tmp_path, dtype, stored, config
):
    import torch

    out = tmp_path / "merged"
    result = cli("merge", run, "--dtype", dtype, "-o", out)
    assert result.code == 0, result.err
    assert f"{dtype} safetensors (Unsloth merged_16bit)" in result.err
    assert fake_unsloth.loaded["load_in_4bit"] is False
    assert fake_unsloth.saved["save_method"] == "merged_16bit"
    assert fake_unsloth.saved["dtype"] is getattr(torch, config)  # unsloth/save.py's kwarg
    assert stored_dtypes(out) == {stored}
    assert json.loads((out / "config.json").read_text())["dtype"] == config


def test_weights_beyond_the_fp16_range_are_refused_not_written_as_inf(
    cli, run, fake_unsloth, tmp_path
):
    fake_unsloth.value = 1e6  # fine in bf16, infinite in fp16
    result = cli("merge", run, "--dtype", "fp16", "-o", tmp_path / "m16")
    assert result.code == 2, result.err
    assert "exceeds the fp16 range" in result.err and "--dtype bf16" in result.err
    assert not (tmp_path / "m16").exists()


def dead_pid() -> int:
    """The pid of a process that has exited."""
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(child.stdout)


def test_leftovers_of_killed_merges_are_undone_and_live_ones_kept(cli, run, tmp_path):
    out, pid = tmp_path / "out", dead_pid()
    aside = tmp_path / f".out.old-{pid}-abc" / "replaced"  # killed between the two renames
    aside.mkdir(parents=True)
    (aside / "old.txt").write_text("previous model")
    (tmp_path / f".out.tmp-{pid}-def").mkdir()  # killed while writing
    live = tmp_path / f".out.tmp-{os.getpid()}-ghi"  # a merge still running
    live.mkdir()
    result = cli("merge", run, "-o", out)
    assert result.code == 2 and "--force" in result.err  # the restored model is not replaced
    assert (out / "old.txt").read_text() == "previous model"
    assert f"restored {out}" in result.err and "removed 2 folder(s)" in result.err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [live.name]


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        ("config.json", "config.json is damaged"),
        ("model.safetensors", "model.safetensors is damaged"),
    ],
)
def test_a_damaged_local_base_is_named_in_the_hint(cli, run, tiny_model, tmp_path, damage, named):
    base = Path(shutil.copytree(tiny_model, tmp_path / "base"))
    (base / damage).write_bytes((base / damage).read_bytes()[:40])  # a copy cut short
    result = cli("merge", bare_adapter(run, tmp_path, str(base)))
    assert result.code == 2, result.err
    assert named in result.err and "network" not in result.err and "Traceback" not in result.err


def test_an_adapter_without_weights_is_refused_before_loading(cli, run):
    (run / "adapter" / "adapter_model.safetensors").unlink()
    result = cli("merge", run)
    assert result.code == 2 and "no adapter_model weights" in result.err, result.err
