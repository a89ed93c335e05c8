"""Turn a `name_or_path` into local files: a folder as it is, a Hub id through
`huggingface_hub` (its cache, `HF_HUB_OFFLINE`, `revision`).

Weights are looked for in the order `transformers` uses: `model.safetensors`
(or its sharded index), then `pytorch_model.bin` (or its index), then
`tf_model.h5`, because most Salesforce repos have no safetensors on main.
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

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
PT_WEIGHTS_NAME = "pytorch_model.bin"
PT_WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"
TF_WEIGHTS_NAME = "tf_model.h5"

# (format, single-file name, index name), in order of preference.
WEIGHT_CANDIDATES: tuple[tuple[str, str, str | None], ...] = (
    ("safetensors", SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME),
    ("bin", PT_WEIGHTS_NAME, PT_WEIGHTS_INDEX_NAME),
    ("h5", TF_WEIGHTS_NAME, None),
)

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


class HubError(OSError):
    """A file could not be found or fetched; the message is one clear sentence."""


class HubUnreachableError(HubError):
    """The Hub could not be reached and the file is not in the local cache."""


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


def _hub_download(repo_id: str, filename: str, **options) -> Path | None:
    """Fetch one file from the Hub (or its cache); None when the repo lacks it."""
    try:
        import huggingface_hub
        from huggingface_hub import constants, errors
    except ImportError:  # pragma: no cover - a core dependency
        raise HubError("huggingface_hub is not installed; `pip install huggingface_hub`") from None
    local_only = options.pop("local_files_only", False) or is_offline()
    unreachable = not local_only and not hub_reachable(constants.ENDPOINT)
    local_only = local_only or unreachable
    try:
        return Path(huggingface_hub.hf_hub_download(repo_id, filename, local_files_only=local_only, **options))
    except errors.LocalEntryNotFoundError:  # a subclass of EntryNotFoundError: test it first
        if local_only and not unreachable:
            return None
        raise HubUnreachableError(
            f"cannot reach the Hugging Face Hub to fetch {filename!r} from {repo_id!r}, and it is "
            "not in the local cache; connect to the network or pre-download it with "
            f"`huggingface-cli download {repo_id}`"
        ) from None
    except errors.EntryNotFoundError:
        return None
    except errors.RepositoryNotFoundError:
        raise HubError(
            f"{repo_id!r} is neither a local folder nor a model repository on the Hub "
            "(or it is private: pass token=...)"
        ) from None
    except errors.RevisionNotFoundError:
        raise HubError(f"revision {options.get('revision')!r} does not exist in {repo_id!r}") from None
    except errors.HfHubHTTPError as err:
        raise HubError(f"the Hub refused {filename!r} from {repo_id!r}: {err}") from None
    except OSError as err:
        raise HubError(f"cannot fetch {filename!r} from {repo_id!r}: {err}") from None


def _local_dir(name_or_path: str | os.PathLike) -> Path | None:
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    if path.exists():
        raise HubError(f"{name} is a file; pass the folder that holds it")
    if not _looks_like_repo_id(name):
        raise HubError(f"{name} is neither an existing folder nor a Hub repo id (organisation/name)")
    return None


def resolve_file(
    name_or_path: str | os.PathLike,
    filename: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    required: bool = True,
) -> Path | None:
    """Local path of `filename` in a folder or Hub repo; None if absent and not required."""
    folder = _local_dir(name_or_path)
    if folder is not None:
        path = folder / filename
        found = path if path.is_file() else None
    else:
        found = _hub_download(
            str(name_or_path),
            filename,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
        )
    if found is None and required:
        where = "folder" if folder is not None else "Hub repo (or its offline cache)"
        raise HubError(f"{filename} not found in {where} {name_or_path}")
    return found


def resolve_weights(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    formats: tuple[str, ...] = ("safetensors", "bin", "h5"),
) -> WeightFiles:
    """Pick the weight files of a model, safetensors first, then `.bin`, then `.h5`."""
    options = dict(revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token)
    unreachable: HubUnreachableError | None = None
    for fmt, single, index in WEIGHT_CANDIDATES:
        if fmt not in formats:
            continue
        for name in (single, index):
            if name is None:
                continue
            try:
                path = resolve_file(name_or_path, name, required=False, **options)
            except HubUnreachableError as err:  # a later candidate may be in the cache
                unreachable = unreachable or err
                continue
            if path is None:
                continue
            if name == single:
                return WeightFiles(fmt, (path,))
            return WeightFiles(fmt, tuple(resolve_file(name_or_path, shard, **options) for shard in shard_names(path)))
    if unreachable is not None:
        raise unreachable
    names = ", ".join(single for fmt, single, _ in WEIGHT_CANDIDATES if fmt in formats)
    raise HubError(f"no weights found in {name_or_path}: expected one of {names} (or a sharded index)")


def shard_names(index_path: Path) -> list[str]:
    """Shard file names listed by a `*.index.json`, in first-appearance order."""
    try:
        weight_map = json.loads(Path(index_path).read_text(encoding="utf-8"))["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{index_path} is not a valid shard index (needs a 'weight_map'): {err}") from None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"{index_path}: 'weight_map' must be a non-empty object")
    names: list[str] = []
    for shard in weight_map.values():
        if not isinstance(shard, str) or "/" in shard or "\\" in shard or shard.startswith("."):
            raise ValueError(f"{index_path}: invalid shard file name {shard!r}")
        if shard not in names:
            names.append(shard)
    return names
