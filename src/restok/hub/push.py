"""Publishing to the Hugging Face Hub: a saved model folder uploaded to a repo."""

from __future__ import annotations

import os
import tempfile
from typing import Any

from ..runtime.network import OFFLINE_VARIABLES, OfflineError, offline

__all__ = ["push_folder_to_hub", "temporary_folder"]


def push_folder_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    commit_message: str,
    private: bool = False,
    token: str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
) -> str:
    """Create (if needed) the Hub repo ``repo_id`` and upload ``folder`` to it; returns the repo URL."""
    from huggingface_hub import HfApi

    if offline():
        raise OfflineError(f"cannot push to the Hub repo {repo_id}: offline ({' or '.join(OFFLINE_VARIABLES)} is set)")
    api = HfApi(token=token)
    url = api.create_repo(repo_id, private=private, exist_ok=True)
    kwargs: dict[str, Any] = {"commit_message": commit_message}
    if revision is not None:
        kwargs["revision"] = revision
    if create_pr:
        kwargs["create_pr"] = True
    api.upload_folder(repo_id=repo_id, folder_path=str(folder), **kwargs)
    return str(url)


def temporary_folder() -> tempfile.TemporaryDirectory:
    """A temporary folder for an upload."""
    return tempfile.TemporaryDirectory(prefix="restok-upload-")
