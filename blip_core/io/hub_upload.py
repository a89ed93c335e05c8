"""`push_to_hub` and `save_pretrained(..., push_to_hub=True)` for every saveable object, in both trees.

Models, configs, generation configs, tokenizers, image processors and processors take this mixin. Pushing
saves the object (into a temporary folder for `push_to_hub`, into the caller's folder for
`save_pretrained(push_to_hub=True)`), creates the repo if needed and commits the saved files plus a model
card (`README.md`: the repo's own card with `tags` added, or a new one) in one commit, through
`huggingface_hub`, with `transformers`' arguments. Offline (`HF_HUB_OFFLINE`) it is an `OSError`.

    model.push_to_hub("me/blip-finetuned", private=True, commit_message="epoch 3")
    processor.save_pretrained("out", push_to_hub=True, repo_id="me/blip-finetuned")
"""

from __future__ import annotations

import functools
import inspect
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from huggingface_hub import errors as hf_errors

from blip_core.io.hub import is_offline
from blip_core.io.hub_errors import HubError

# Keyword arguments of save_pretrained(push_to_hub=True) that concern the upload, not the files.
UPLOAD_OPTIONS = ("repo_id", "commit_message", "commit_description", "private", "create_pr", "revision", "tags")
_DEPRECATED = ("use_auth_token", "organization")
CARD_NAME = "README.md"
_CARD_TEXT = (
    "This model card was written by blip-dual's `push_to_hub`. The files are those `transformers` reads "
    "(`config.json`, `model.safetensors`, processor and tokenizer files), so both libraries load this repo.\n"
)


class HubOfflineError(HubError, hf_errors.OfflineModeIsEnabled):
    """Pushing needs the Hub, and `HF_HUB_OFFLINE` is set (an `OSError`, as `huggingface_hub`'s error)."""


class HubUploadError(HubError):
    """The Hub could not be reached while pushing (an `OSError`); the original error is chained."""


class PushToHubMixin:
    """`push_to_hub(repo_id, ...)`, and `push_to_hub=True` for the class's own `save_pretrained`.

    Subclasses set `push_save_options`: the `save_pretrained` arguments `push_to_hub` passes on (models:
    `max_shard_size`, `safe_serialization`, `variant`); others are accepted and unused, as `transformers`
    ignores `max_shard_size` outside models.
    """

    push_save_options: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("save_pretrained")
        if own is not None and not getattr(own, "_uploads", False):
            cls.save_pretrained = _uploading(own)

    def push_to_hub(
        self,
        repo_id: str,
        use_temp_dir: bool | None = None,
        commit_message: str | None = None,
        private: bool | None = None,
        token: bool | str | None = None,
        max_shard_size: int | str | None = "5GB",
        create_pr: bool = False,
        safe_serialization: bool = True,
        revision: str | None = None,
        commit_description: str | None = None,
        tags: list[str] | None = None,
        variant: str | None = None,
        **deprecated: Any,
    ) -> Any:
        """Save into a temporary folder and commit its files and a model card to `repo_id` (created if missing,
        `private` then). `use_temp_dir=False` saves into `./<repo name>` instead and keeps it. Returns
        `huggingface_hub`'s `CommitInfo`.

        Raises:
            OSError: offline (`HF_HUB_OFFLINE`) or the Hub unreachable; `huggingface_hub`'s HTTP errors
                (also `OSError`s) pass through.
            ValueError: `token` and `use_auth_token` both given; a repo id that is not a string.
            TypeError: an argument `push_to_hub` does not take.
        """
        token, repo_id = _deprecated_options(repo_id, token, deprecated, type(self).__name__)
        wanted = {"max_shard_size": max_shard_size, "safe_serialization": safe_serialization, "variant": variant}
        save_options = {k: v for k, v in wanted.items() if k in self.push_save_options and v is not None}
        upload = {
            "token": token,
            "private": private,
            "create_pr": create_pr,
            "revision": revision,
            "commit_message": commit_message,
            "commit_description": commit_description,
            "tags": tags,
        }
        check_online(self, repo_id)
        if use_temp_dir is False:
            folder = Path(repo_id.split("/")[-1])
            before = _timestamps(folder)
            self.save_pretrained(folder, **save_options)
            return upload_folder_files(self, folder, _changed(folder, before), repo_id, **upload)
        with tempfile.TemporaryDirectory() as temporary:
            self.save_pretrained(temporary, **save_options)
            return upload_folder_files(self, Path(temporary), _changed(Path(temporary), {}), repo_id, **upload)


def _deprecated_options(repo_id: Any, token: Any, deprecated: dict[str, Any], owner: str) -> tuple[Any, str]:
    """`use_auth_token` (the old `token`) and `organization` (a repo-id prefix), as `transformers` reads them."""
    unknown = sorted(set(deprecated) - set(_DEPRECATED))
    if unknown:
        raise TypeError(f"{owner}.push_to_hub() got unexpected keyword argument(s) {unknown}")
    if not isinstance(repo_id, str) or not repo_id:
        raise ValueError(f"{owner}.push_to_hub: repo_id must be a repo name such as 'me/my-model', got {repo_id!r}")
    old_token = deprecated.get("use_auth_token")
    if old_token is not None:
        warnings.warn("use_auth_token is deprecated: pass token=", FutureWarning, stacklevel=3)
        if token is not None:
            raise ValueError("`token` and `use_auth_token` are both specified. Please set only the argument `token`.")
        token = old_token
    organization = deprecated.get("organization")
    if organization is not None and not repo_id.startswith(organization):
        repo_id = f"{organization}/{repo_id.split('/')[-1]}"
    return token, repo_id


def _uploading(save: Any) -> Any:
    """`save` (a class's own `save_pretrained`), which with `push_to_hub=True` also commits what it wrote."""
    signature = inspect.signature(save)
    extra_name = next((p.name for p in signature.parameters.values() if p.kind is p.VAR_KEYWORD), None)

    @functools.wraps(save)
    def save_pretrained(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError:  # let the method itself report its argument error
            return save(self, *args, **kwargs)
        if not bound.arguments.get("push_to_hub"):
            return save(self, *args, **kwargs)
        extra = dict(bound.arguments.get(extra_name) or {})
        upload = {key: extra.pop(key) for key in UPLOAD_OPTIONS if key in extra}
        deprecated = {key: extra.pop(key) for key in _DEPRECATED if key in extra}
        token = bound.arguments.get("token", extra.pop("token", None))
        folder = Path(bound.arguments["save_directory"])
        repo_id = upload.pop("repo_id", None) or folder.resolve().name
        token, repo_id = _deprecated_options(repo_id, token, deprecated, type(self).__name__)
        bound.arguments["push_to_hub"] = False
        if extra_name is not None:
            bound.arguments[extra_name] = extra
        if bound.arguments.get("is_main_process") is False:  # only the main process writes and uploads
            return save(*bound.args, **bound.kwargs)
        check_online(self, repo_id)
        before = _timestamps(folder)
        result = save(*bound.args, **bound.kwargs)
        upload_folder_files(self, folder, _changed(folder, before), repo_id, token=token, **upload)
        return result

    save_pretrained._uploads = True
    return save_pretrained


def _timestamps(folder: Path) -> dict[str, float]:
    """Modification time of each file under `folder` (relative POSIX paths); {} when it does not exist."""
    if not folder.is_dir():
        return {}
    return {path.relative_to(folder).as_posix(): path.stat().st_mtime for path in folder.rglob("*") if path.is_file()}


def _changed(folder: Path, before: dict[str, float]) -> list[str]:
    """Files under `folder` written since `before` was taken (all of them for an empty `before`)."""
    return sorted(name for name, stamp in _timestamps(folder).items() if before.get(name) != stamp)


def commit_message_for(owner: Any) -> str:
    """`transformers`' default commit message, chosen from the class name."""
    name = type(owner).__name__
    for word, message in (
        ("Model", "Upload model"),
        ("Config", "Upload config"),
        ("Tokenizer", "Upload tokenizer"),
        ("Processor", "Upload processor"),
    ):
        if word in name:
            return message
    return f"Upload {name}"


def upload_folder_files(
    owner: Any,
    folder: Path,
    names: list[str],
    repo_id: str,
    *,
    token: bool | str | None = None,
    private: bool | None = None,
    create_pr: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    commit_description: str | None = None,
    tags: list[str] | None = None,
) -> Any:
    """Create `repo_id` if needed (and the `revision` branch), then commit `names` (paths under `folder`) and
    the model card in one commit. Returns `huggingface_hub`'s `CommitInfo`.

    Raises:
        OSError: offline or the Hub unreachable (`huggingface_hub`'s HTTP errors pass through).
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    check_online(owner, repo_id)
    api = HfApi(token=token)
    try:
        repo_id = api.create_repo(repo_id, token=token, private=private, exist_ok=True).repo_id
        if revision is not None and not revision.startswith("refs/pr"):
            api.create_branch(repo_id, branch=revision, token=token, exist_ok=True)
        card = model_card(api, repo_id, tags, revision)
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name in names]
        operations.append(CommitOperationAdd(path_in_repo=CARD_NAME, path_or_fileobj=card.encode("utf-8")))
        return api.create_commit(
            repo_id,
            operations,
            commit_message=commit_message or commit_message_for(owner),
            commit_description=commit_description,
            token=token,
            revision=revision,
            create_pr=create_pr,
        )
    except hf_errors.HfHubHTTPError:
        raise
    except Exception as err:
        if not _is_network_error(err):
            raise
        message = f"cannot push {type(owner).__name__} to {repo_id!r}: the Hub is unreachable ({err})"
        raise HubUploadError(message, err) from err


def check_online(owner: Any, repo_id: str) -> None:
    """Checked before anything is saved, so that an upload that cannot happen writes nothing.

    Raises:
        HubOfflineError: `HF_HUB_OFFLINE` is set (an `OSError`).
    """
    if is_offline():
        raise HubOfflineError(
            f"cannot push {type(owner).__name__} to {repo_id!r}: HF_HUB_OFFLINE is set; unset it to upload, or "
            f"keep the files with save_pretrained alone"
        )


def _is_network_error(err: BaseException) -> bool:
    """A connection failure of `huggingface_hub`'s HTTP client (requests' are OSErrors, httpx's are not)."""
    return isinstance(err, OSError) or type(err).__module__.split(".")[0] in ("httpx", "httpcore", "requests")


def model_card(api: Any, repo_id: str, tags: list[str] | None, revision: str | None = None) -> str:
    """The repo's `README.md` with `tags` added, or a new card (library `transformers`, the files' reader).

    Raises:
        ValueError: `tags` not a list of strings.
    """
    from huggingface_hub import ModelCard, ModelCardData

    if tags is not None and (not isinstance(tags, (list, tuple)) or not all(isinstance(t, str) for t in tags)):
        raise ValueError(f"tags must be a list of strings, got {tags!r}")
    try:
        path = api.hf_hub_download(repo_id, CARD_NAME, revision=revision)
        card = ModelCard(Path(path).read_text(encoding="utf-8"))
    except (hf_errors.EntryNotFoundError, hf_errors.RevisionNotFoundError):
        data = ModelCardData(tags=list(tags or []), library_name="transformers")
        card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n# {repo_id.split('/')[-1]}\n\n{_CARD_TEXT}")
    if tags:
        card.data.tags = list(card.data.tags or [])
        card.data.tags += [tag for tag in tags if tag not in card.data.tags]
    return str(card)


# Keyword arguments `transformers` uses only with push_to_hub=True (ignored by it otherwise, and here).
PUSH_OPTIONS = (
    "commit_message",
    "commit_description",
    "repo_id",
    "create_pr",
    "private",
    "tags",
    "revision",
    "use_temp_dir",
    "organization",
    "ignore_metadata_errors",
    "use_auth_token",
)


def check_save_kwargs(owner: str, push_to_hub: bool, kwargs: Mapping[str, Any], inert: tuple[str, ...] = ()) -> None:
    """The checks every `save_pretrained` shares (models, configs, processors, tokenizers, image processors,
    generation configs): `push_to_hub=True` is refused; the Hub-upload options it would use are accepted and
    unused, as `transformers` ignores them without it; so are `inert` ones; anything else is a TypeError.

    Raises:
        ValueError: push_to_hub=True. TypeError: an argument `save_pretrained` does not take.
    """
    if push_to_hub:
        raise ValueError(
            f"{owner}.save_pretrained: push_to_hub=True is not supported (blip-dual never writes to the Hub); "
            "save locally, then upload the folder with huggingface_hub.upload_folder"
        )
    unknown = sorted(key for key in kwargs if key not in PUSH_OPTIONS and key not in inert)
    if unknown:
        raise TypeError(f"{owner}.save_pretrained() got unexpected keyword argument(s) {unknown}")
