"""The errors of file and Hub resolution, typed for the programs that catch them.

`transformers` wraps every Hub failure in a plain `OSError` (chained to the `huggingface_hub` error), and
lets `huggingface_hub`'s `HFValidationError` (a `ValueError`) through for a model path that is neither a
folder nor a repo id. Each error here is a `HubError` (an `OSError`), is chained to the original error,
and is also an instance of the matching `huggingface_hub` type, so that `except OSError`,
`except RepositoryNotFoundError`, `except EntryNotFoundError`, ... all work, while the message names the
repo or folder, the file and what to do.

    try:
        BlipForConditionalGeneration.from_pretrained("Salesforce/no-such-model")
    except RepositoryNotFoundError:  # or OSError, as for transformers
        ...
"""

from __future__ import annotations

from typing import Any

from huggingface_hub import errors as hf_errors

# huggingface_hub 1.x calls the Hub's "no such file" error RemoteEntryNotFoundError; 0.x EntryNotFoundError.
_REMOTE_ENTRY_NOT_FOUND = getattr(hf_errors, "RemoteEntryNotFoundError", hf_errors.EntryNotFoundError)
# Attributes `huggingface_hub`'s HTTP errors carry; a caller may read `err.response.status_code`.
_HTTP_ATTRIBUTES = ("response", "server_message", "request_id", "repo_id", "repo_type")


class HubError(OSError):
    """A file could not be found or fetched; the message is one clear sentence.

    `cause` (the `huggingface_hub` error, when there is one) becomes `__cause__`, and its HTTP details
    (`response`, `server_message`, `request_id`) are kept on this error.
    """

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        OSError.__init__(self, message)  # not the huggingface_hub constructors: they need an HTTP response
        if isinstance(self, hf_errors.HfHubHTTPError):
            for name in _HTTP_ATTRIBUTES:
                setattr(self, name, getattr(cause, name, None))
        self.__cause__ = cause

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:  # huggingface_hub's needs a `response` argument
        return type(self), (str(self),)


class HubFileNotFoundError(HubError, FileNotFoundError):
    """A local folder lacks the file."""


class LocalPathNotFoundError(HubFileNotFoundError, hf_errors.HFValidationError):
    """Neither an existing folder nor a Hub repo id (transformers lets `HFValidationError` through here)."""


class NotAFolderError(HubError, NotADirectoryError, hf_errors.HFValidationError):
    """A file was given where a folder or repo id is expected."""


class HubEntryNotFoundError(HubError, _REMOTE_ENTRY_NOT_FOUND, FileNotFoundError):
    """The Hub repo exists but has no such file (at this revision)."""


class HubNotCachedError(HubError, hf_errors.LocalEntryNotFoundError):
    """Offline (`HF_HUB_OFFLINE`, `local_files_only`) and the file is not in the local cache."""


class HubUnreachableError(HubError, hf_errors.LocalEntryNotFoundError):
    """The Hub could not be reached and the file is not in the local cache (not a miss: the file may exist)."""


class HubRepositoryNotFoundError(HubError, hf_errors.RepositoryNotFoundError):
    """No such repo on the Hub, or a private one without a token that may read it."""


class HubGatedRepoError(HubRepositoryNotFoundError, hf_errors.GatedRepoError):
    """A gated repo whose conditions this token has not accepted."""


class HubRevisionNotFoundError(HubError, hf_errors.RevisionNotFoundError):
    """No such branch, tag or commit in the repo."""


class HubHTTPError(HubError, hf_errors.HfHubHTTPError):
    """Any other refusal by the Hub (401, 403, 5xx ...)."""


# File-level misses: `resolve_file(..., required=False)` answers None for these.
MISSES: tuple[type[HubError], ...] = (HubFileNotFoundError, HubEntryNotFoundError, HubNotCachedError)
