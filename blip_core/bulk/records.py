"""One input record of a bulk job and the protocol every input reader follows.

A record has a stable `key` (unique within its source: the same key on every run and under every engine, so
outputs resume and compare record by record), its image as encoded bytes or as a file path, and the web text
that came with it (alt text, caption), if any.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

RAY_COLUMNS = ("key", "image", "path", "text")  # the columns of `Source.ray_dataset()`, in this order


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require(module: str, extra: str = "scale") -> Any:
    """`import module`, or a MissingExtraError naming `pip install 'blip-dual[extra]'`."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(
            f"{module} is not installed: bulk captioning needs it; install it with pip install 'blip-dual[{extra}]'"
        ) from err


@dataclass(frozen=True)
class Record:
    """One image and its web text. Exactly one of `image` (encoded bytes) and `path` (a file) is set, except for
    a record whose image is missing from its source (both None: reported as a failure, never dropped)."""

    key: str
    image: bytes | None = None
    path: str | None = None
    text: str | None = None


class Source(Protocol):
    """A dataset of records in a fixed order (the same on every run)."""

    def __iter__(self) -> Iterator[Record]:
        """Every record, in the source's fixed order."""
        ...

    def count(self) -> int | None:
        """How many records there are (from listings and metadata, without decoding), or None when unknown."""
        ...

    def fingerprint(self) -> dict[str, Any]:
        """JSON-able identity of the input (kind, options, every file with its size and mtime): a resumed job
        refuses to continue over a changed input."""
        ...

    def ray_dataset(self) -> Any:
        """The same records as a `ray.data.Dataset` with the columns `RAY_COLUMNS` (key string, image binary or
        null, path string or null, text string or null), read with Ray's own readers."""
        ...


@dataclass
class BulkSummary:
    """What a bulk call did. `counts`: records, failed (and for CapFilt: web_texts, web_kept, captions,
    captions_kept) over the whole output; `processed`: records run by this call (0 when it was already complete);
    `rows`: the output rows in input order when no folder was given."""

    counts: dict[str, int]
    processed: int
    out_dir: str | None = None
    engine: str = "local"
    rows: list[dict[str, Any]] | None = field(default=None, repr=False)
