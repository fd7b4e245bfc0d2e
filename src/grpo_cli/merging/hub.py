"""Publishing a merged model or an adapter to the Hugging Face Hub: the flags checked and the
token found before anything is loaded, exactly the planned files uploaded, and every Hub failure
turned into the user's next step."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from grpo_cli.config.schema import is_hub_id
from grpo_cli.errors import GrpoError, first_line


@dataclass(frozen=True)
class PushPlan:
    """Exactly what goes to the Hub, decided before any network call."""

    repo_id: str
    private: bool
    revision: str | None
    folder: Path
    files: list[str]
    commit_message: str
    repo_type: str = "model"


def check_publish_flags(
    repo_id: str | None, private: bool | None, revision: str | None
) -> str | None:
    if repo_id is None:
        if revision is not None or private is not None:
            flag = "--revision" if revision is not None else "--private/--public"
            raise GrpoError(
                f"{flag} applies only with --push-to-hub",
                "add --push-to-hub OWNER/NAME, or drop the flag",
            )
        return None
    if "/" not in repo_id or not is_hub_id(repo_id):
        raise GrpoError(
            f"--push-to-hub {repo_id!r} is not a Hub repo id",
            "use OWNER/NAME: letters, digits, '-', '_' and '.', e.g. me/qwen3b-gsm8k-grpo",
        )
    return repo_id


def hub_token() -> str:
    """HF_TOKEN or the stored login; it is handed to HfApi and never printed or written."""
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise GrpoError(
            "--push-to-hub needs a Hugging Face token with write access, and none was found",
            "run `hf auth login` (stores one), or set HF_TOKEN in the environment",
        )
    return token


def push_plan(
    folder: Path, repo_id: str, private: bool, revision: str | None, adapter_only: bool
) -> PushPlan:
    files = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    what = "LoRA adapter" if adapter_only else "merged model"
    return PushPlan(repo_id, private, revision, folder, files, f"grpo merge: {what}")


def publish(plan: PushPlan, token: str) -> str:
    """create_repo (kept as it is when it exists) + create_branch for --revision +
    upload_folder of exactly the planned files."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        api.create_repo(plan.repo_id, repo_type=plan.repo_type, private=plan.private, exist_ok=True)
        if plan.revision:
            api.create_branch(
                plan.repo_id, branch=plan.revision, repo_type=plan.repo_type, exist_ok=True
            )
        api.upload_folder(
            repo_id=plan.repo_id,
            folder_path=str(plan.folder),
            repo_type=plan.repo_type,
            revision=plan.revision,
            commit_message=plan.commit_message,
            allow_patterns=plan.files,
        )
    except Exception as exc:
        error = hub_error(exc, plan)
        if error is None:
            raise
        raise error from None
    url = f"https://huggingface.co/{plan.repo_id}"
    return f"{url}/tree/{plan.revision}" if plan.revision else url


def hub_error(exc: Exception, plan: PushPlan) -> GrpoError | None:
    """A Hub failure as the user's next step; None for anything that is not a Hub failure."""
    import httpx
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    later = f"the model is saved in {plan.folder}; upload it later with `hf upload {plan.repo_id} "
    later += f"{plan.folder} .`" + (f" --revision {plan.revision}" if plan.revision else "")
    if isinstance(exc, OfflineModeIsEnabled):
        return GrpoError("--push-to-hub: HF_HUB_OFFLINE is set", f"unset it; {later}")
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else None
        first = first_line(exc)
        if status == 401:
            return GrpoError(
                f"--push-to-hub {plan.repo_id}: the Hub refused the token (401)",
                f"run `hf auth login` or set HF_TOKEN to a valid token; {later}",
            )
        if status == 403:
            return GrpoError(
                f"--push-to-hub {plan.repo_id}: no write access (403)",
                f"use a token with write access to {plan.repo_id.split('/')[0]}; {later}",
            )
        if status == 409:
            return GrpoError(
                f"--push-to-hub {plan.repo_id}: name conflict (409): {first}",
                f"choose another OWNER/NAME; {later}",
            )
        return GrpoError(f"--push-to-hub {plan.repo_id}: the Hub answered {status}: {first}", later)
    if isinstance(exc, (httpx.TransportError, ConnectionError, TimeoutError)):
        return GrpoError(
            f"--push-to-hub {plan.repo_id}: cannot reach the Hub ({type(exc).__name__}: {exc})",
            f"check the network; {later}",
        )
    return None
