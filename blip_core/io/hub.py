"""Turn a `name_or_path` into local files: a folder as it is, a Hub id through
`huggingface_hub` (its cache, `HF_HUB_OFFLINE`, `revision`).

Weights are looked for in the order `transformers` uses: `model.safetensors`
(or its sharded index), then `pytorch_model.bin` (or its index), then
`tf_model.h5` (or its index), because most Salesforce repos have no
safetensors on main; then Keras 3's `model.weights.h5` (or its sharded
`model.weights.json`), which `blip-convert to-keras` and `save_weights` write.
"""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blip_core.io.hub_errors import (
    MISSES,
    HubEntryNotFoundError,
    HubError,
    HubFileNotFoundError,
    HubGatedRepoError,
    HubHTTPError,
    HubNotCachedError,
    HubRepositoryNotFoundError,
    HubRevisionNotFoundError,
    HubUnreachableError,
    LocalPathNotFoundError,
    NotAFolderError,
)

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
PT_WEIGHTS_NAME = "pytorch_model.bin"
PT_WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"
TF_WEIGHTS_NAME = "tf_model.h5"
TF_WEIGHTS_INDEX_NAME = "tf_model.h5.index.json"
KERAS_WEIGHTS_NAME = "model.weights.h5"
KERAS_WEIGHTS_INDEX_NAME = "model.weights.json"
ALL_FORMATS = ("safetensors", "bin", "h5", "keras")

# (format, single-file name, index name), in order of preference.
WEIGHT_CANDIDATES: tuple[tuple[str, str, str], ...] = (
    ("safetensors", SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME),
    ("bin", PT_WEIGHTS_NAME, PT_WEIGHTS_INDEX_NAME),
    ("h5", TF_WEIGHTS_NAME, TF_WEIGHTS_INDEX_NAME),
    ("keras", KERAS_WEIGHTS_NAME, KERAS_WEIGHTS_INDEX_NAME),
)

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")

# The Hub options every `from_pretrained` takes (models, configs, processors, tokenizers, image
# processors, generation configs, pipelines' `model_kwargs`), as `resolve_file` receives them.
HUB_OPTIONS = ("revision", "cache_dir", "local_files_only", "token", "force_download", "subfolder")
# Accepted for `transformers` programs and without effect here, each for a reason:
INERT_HUB_OPTIONS = (
    "use_auth_token",  # the old name of `token`: renamed, not dropped (see `split_hub_options`)
    "resume_download",  # huggingface_hub always resumes interrupted downloads (transformers ignores it too)
    "proxies",  # huggingface_hub >= 1.0 takes no per-call proxies: set HTTPS_PROXY in the environment
    "trust_remote_code",  # nothing from a checkpoint is ever run: BLIP's code is this library's
    "mirror",  # removed from transformers long ago; it ignores it
    "_from_auto",  # transformers' telemetry markers
    "_from_pipeline",
    "_commit_hash",  # transformers' cache bookkeeping; huggingface_hub resolves the revision itself
)


@dataclass(frozen=True)
class WeightFiles:
    """The weight files chosen for a model: their format and local paths (shards in order)."""

    format: str
    paths: tuple[Path, ...]


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _looks_like_repo_id(name: str) -> bool:
    return bool(_REPO_ID.match(name)) and not name.startswith((".", "/", "~")) and ".." not in name


@functools.lru_cache(maxsize=4)
def hub_reachable(endpoint: str) -> bool:
    """Whether the Hub's host accepts a connection (asked once per process: `huggingface_hub` would
    otherwise retry each file with back-off for half a minute). Behind a proxy, assume it does."""
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urllib.parse.urlsplit(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=5).close()
        return True
    except OSError:
        return False


# huggingface_hub error -> (our error, message); the first match wins, so subclasses come before their bases.
_HUB_FAILURES: tuple[tuple[str, type[HubError], str], ...] = (
    ("EntryNotFoundError", HubEntryNotFoundError, "{filename} not found in Hub repo {repo!r} at revision {revision!r}"),
    (
        "GatedRepoError",
        HubGatedRepoError,
        "{repo!r} is a gated repo: accept its conditions on its Hub page, then pass a token (token=... or "
        "`hf auth login`)",
    ),
    (
        "RepositoryNotFoundError",
        HubRepositoryNotFoundError,
        "{repo!r} is neither a local folder nor a model repository on the Hub (or it is private: pass token=... "
        "or run `hf auth login`)",
    ),
    (
        "RevisionNotFoundError",
        HubRevisionNotFoundError,
        "revision {revision!r} does not exist in {repo!r} (a branch, tag or commit id)",
    ),
    ("HfHubHTTPError", HubHTTPError, "the Hub refused {filename!r} from {repo!r}: {error}"),
    (
        "HFValidationError",
        LocalPathNotFoundError,
        "{repo} is neither an existing folder nor a valid Hub repo id: {error}",
    ),
    ("OSError", HubError, "cannot fetch {filename!r} from {repo!r}: {error}"),
)


def split_hub_options(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Hub options for `resolve_file`, the other keyword arguments) of a `from_pretrained` call.

    `use_auth_token` becomes `token`; the inert options of `INERT_HUB_OPTIONS` are dropped.

    Raises:
        ValueError: both `token` and `use_auth_token` given (as `transformers` raises).
    """
    hub = {key: value for key, value in kwargs.items() if key in HUB_OPTIONS}
    rest = {key: value for key, value in kwargs.items() if key not in HUB_OPTIONS and key not in INERT_HUB_OPTIONS}
    legacy_token = kwargs.get("use_auth_token")
    if legacy_token is not None:
        if hub.get("token") is not None:
            raise ValueError("`token` and `use_auth_token` are both specified; pass only `token`")
        hub["token"] = legacy_token
    if hub.get("subfolder") is not None and not isinstance(hub["subfolder"], (str, os.PathLike)):
        raise TypeError(f"subfolder must be a string, got {type(hub['subfolder']).__name__}")
    return hub, rest


def add_variant(filename: str, variant: str | None) -> str:
    """`transformers`' variant file name: `model.safetensors` -> `model.fp16.safetensors`,
    `model.safetensors.index.json` -> `model.safetensors.index.fp16.json`."""
    if not variant:
        return filename
    stem, extension = filename.rsplit(".", 1)
    return f"{stem}.{variant}.{extension}"


def _hub_download(repo_id: str, filename: str, **options) -> Path:
    """Fetch one file from the Hub (or its cache); each failure as its typed `HubError` (see `hub_errors`)."""
    import huggingface_hub
    from huggingface_hub import constants, errors

    local_only = options.pop("local_files_only", False) or is_offline()
    if options.get("force_download") and local_only:
        raise ValueError(
            f"force_download=True cannot fetch {filename!r} from {repo_id!r}: downloads are off (local_files_only "
            "or HF_HUB_OFFLINE)"
        )
    unreachable = not local_only and not hub_reachable(constants.ENDPOINT)
    if unreachable and options.get("force_download"):
        raise HubUnreachableError(
            f"cannot reach the Hugging Face Hub to download {filename!r} of {repo_id!r} again (force_download=True)"
        )
    try:
        return Path(
            huggingface_hub.hf_hub_download(repo_id, filename, local_files_only=local_only or unreachable, **options)
        )
    except errors.LocalEntryNotFoundError as err:  # a subclass of EntryNotFoundError: test it first
        if not local_only:  # the network failed (now, or at the reachability check)
            raise HubUnreachableError(
                f"cannot reach the Hugging Face Hub to fetch {filename!r} from {repo_id!r}, and it is not in the "
                f"local cache; connect to the network or pre-download it with `hf download {repo_id}`",
                err,
            ) from err
        raise HubNotCachedError(
            f"{filename} of {repo_id!r} is not in the local Hugging Face cache and downloads are off "
            f"(HF_HUB_OFFLINE or local_files_only); download it first: `hf download {repo_id}`",
            err,
        ) from err
    except (errors.EntryNotFoundError, errors.HfHubHTTPError, errors.HFValidationError, OSError) as err:
        # every error caught here matches a row: the last one is OSError
        error_class, message = next((c, m) for name, c, m in _HUB_FAILURES if isinstance(err, _error_type(name)))
        text = message.format(repo=repo_id, filename=filename, revision=options.get("revision") or "main", error=err)
        raise error_class(text, err) from err


def _error_type(name: str) -> type[BaseException]:
    """A `huggingface_hub` error class by name (OSError for the built-in)."""
    from huggingface_hub import errors

    return OSError if name == "OSError" else getattr(errors, name)


def _local_dir(name_or_path: str | os.PathLike) -> Path | None:
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    if path.exists():
        raise NotAFolderError(f"{name} is a file; pass the folder that holds it")
    if not _looks_like_repo_id(name):
        raise LocalPathNotFoundError(f"{name} is neither an existing folder nor a Hub repo id (organisation/name)")
    return None


def resolve_file(
    name_or_path: str | os.PathLike,
    filename: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    force_download: bool = False,
    subfolder: str | os.PathLike | None = None,
    required: bool = True,
) -> Path | None:
    """Local path of `filename` in a folder or Hub repo (under `subfolder`); None if absent and not required.

    Raises the typed `HubError`s of `blip_core.io.hub_errors`: a missing file is a `FileNotFoundError` (local
    folder), an `EntryNotFoundError` (Hub) or a `LocalEntryNotFoundError` (offline, not cached); a missing
    repo, revision or access right is the matching `huggingface_hub` error. All are `OSError`s.
    """
    folder = _local_dir(name_or_path)
    subfolder = _checked_subfolder(subfolder)
    try:
        if folder is None:
            return _hub_download(
                str(name_or_path),
                filename,
                revision=revision,
                cache_dir=cache_dir,
                local_files_only=local_files_only,
                token=token,
                force_download=force_download,
                subfolder=subfolder or None,
            )
        path = folder / subfolder / filename
        if not path.is_file():
            where = f"{name_or_path}/{subfolder}" if subfolder else str(name_or_path)
            raise HubFileNotFoundError(f"{filename} not found in folder {where}")
        return path
    except MISSES:
        if required:
            raise
        return None


def _checked_subfolder(subfolder: str | os.PathLike | None) -> str:
    """A relative folder inside the model folder or repo ("" for none); no `..`, no absolute path."""
    text = str(subfolder or "").replace("\\", "/").strip("/")
    if text and (Path(str(subfolder)).is_absolute() or ".." in text.split("/")):
        raise ValueError(f"subfolder must be a relative folder inside the model folder or repo, got {subfolder!r}")
    return text


def weight_formats(use_safetensors: bool | None, formats: tuple[str, ...] = ALL_FORMATS) -> tuple[str, ...]:
    """The formats `from_pretrained` may read: safetensors only (`use_safetensors=True`), all but
    safetensors (`False`), or all (`None`), as `transformers` decides.

    Raises:
        TypeError: `use_safetensors` is not None or a bool.
    """
    if use_safetensors is None:
        return formats
    if not isinstance(use_safetensors, bool):
        raise TypeError(f"use_safetensors must be True, False or None, got {use_safetensors!r}")
    return tuple(fmt for fmt in formats if (fmt == "safetensors") == use_safetensors)


def resolve_weights(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    force_download: bool = False,
    subfolder: str | os.PathLike | None = None,
    formats: tuple[str, ...] = ALL_FORMATS,
    variant: str | None = None,
) -> WeightFiles:
    """Pick the weight files of a model: the first of `WEIGHT_CANDIDATES` (of the `formats` given) it
    holds, named for `variant` when one is given (`model.fp16.safetensors`, ...).

    Raises:
        HubError (an OSError): no candidate found; the message names the folder or repo and the files.
        ValueError: a `variant` that is not a plain name.
    """
    if variant is not None and (not isinstance(variant, str) or not re.fullmatch(r"[\w\-]+", variant)):
        raise ValueError(f"variant must be a name such as 'fp16' (letters, digits, '_' or '-'), got {variant!r}")
    options = dict(
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        token=token,
        force_download=force_download,
        subfolder=subfolder,
    )
    unreachable: HubUnreachableError | None = None
    miss: HubError | None = None
    for fmt, single, index in WEIGHT_CANDIDATES:
        if fmt not in formats:
            continue
        for name in (add_variant(single, variant), add_variant(index, variant)):
            try:
                path = resolve_file(name_or_path, name, **options)
            except HubUnreachableError as err:  # a later candidate may be in the cache
                unreachable = unreachable or err
                continue
            except MISSES as err:
                miss = miss or err
                continue
            if name == add_variant(single, variant):
                return WeightFiles(fmt, (path,))
            return WeightFiles(fmt, tuple(resolve_file(name_or_path, shard, **options) for shard in shard_names(path)))
    if unreachable is not None:
        raise unreachable
    names = ", ".join(add_variant(single, variant) for fmt, single, _ in WEIGHT_CANDIDATES if fmt in formats)
    where = f"{name_or_path}/{_checked_subfolder(subfolder)}" if subfolder else str(name_or_path)
    only = " (use_safetensors=True: safetensors only)" if formats == ("safetensors",) else ""
    message = f"no weights found in {where}: expected one of {names} (or a sharded index){only}"
    if miss is None:
        raise HubFileNotFoundError(message)
    raise type(miss)(message, miss.__cause__) from miss.__cause__


def shard_names(index_path: Path) -> list[str]:
    """Shard file names listed by a `*.index.json` (or Keras' `model.weights.json`), in first-appearance order.

    A Keras index may list several shards for one layer.
    """
    try:
        weight_map = json.loads(Path(index_path).read_text(encoding="utf-8"))["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{index_path} is not a valid shard index (needs a 'weight_map'): {err}") from None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"{index_path}: 'weight_map' must be a non-empty object")
    names: list[str] = []
    for shards in weight_map.values():
        for shard in shards if isinstance(shards, list) else [shards]:
            if not isinstance(shard, str) or not shard or "/" in shard or "\\" in shard or shard.startswith("."):
                raise ValueError(f"{index_path}: invalid shard file name {shard!r}")
            if shard not in names:
                names.append(shard)
    return names
