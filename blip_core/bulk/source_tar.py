"""WebDataset `.tar` shards as img2dataset writes them (`{key}.jpg` + `{key}.txt` + `{key}.json`).

Read with the `webdataset` library without decoding (raw bytes) or shuffling, shard by shard in name order. A
sample's key is its `__key__`; its image the first of `IMAGE_EXTENSIONS` present; its text the `.txt` member, else
the `.json` member's `"caption"`. One function (`sample_record`) makes the record, locally and inside Ray.

A truncated or corrupt shard: `count()`, which the engine calls first, lists every shard's member headers and
raises an OSError naming the broken shard before any record is processed; iteration (which streams) yields the
records read before the damage and then raises the same kind of error, naming the shard and how many samples
of it were read, so a damaged shard never passes for a short one.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from blip_core.bulk.records import Record, require
from blip_core.bulk.source_common import common_root, file_entries, records_table

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp")
_KEY_AND_SUFFIX = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # webdataset's split: key, then every extension


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) and value.strip() else None


def _json_caption(value: Any) -> str | None:
    if not isinstance(value, (bytes, str)):
        return None
    try:
        meta = json.loads(value)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return _text(meta.get("caption")) if isinstance(meta, dict) else None


def sample_record(sample: dict[str, Any]) -> Record:
    """A webdataset sample (`__key__` and raw bytes per extension, any case) -> Record (image None when no image
    member is present; text from `.txt`, else the `.json` caption, else None)."""
    members = {name.lower(): value for name, value in sample.items() if not name.startswith("__")}
    image = next((members[ext] for ext in IMAGE_EXTENSIONS if isinstance(members.get(ext), bytes)), None)
    text = _text(members.get("txt"))
    if text is None:
        text = _json_caption(members.get("json"))
    return Record(key=str(sample["__key__"]), image=image, text=text)


def count_samples(shard: Path) -> int:
    """Samples in a shard from its member headers (no data read): runs of members sharing a key, counted the
    way webdataset groups them. OSError naming the shard when it is not a tar or is truncated."""
    count, previous = 0, None
    try:
        with tarfile.open(shard, mode="r:*") as archive:
            for member in archive:
                match = _KEY_AND_SUFFIX.match(member.name)
                if not member.isreg() or match is None or re.match(r"__[^/]*__($|/)", member.name):
                    continue
                if match.group(1) != previous:
                    count, previous = count + 1, match.group(1)
    except (tarfile.TarError, EOFError) as err:
        raise OSError(f"{shard}: not a readable tar shard (truncated or corrupt: {err})") from None
    return count


class WebDatasetSource:
    """The samples of WebDataset tar shards, shard after shard in the given (sorted) order."""

    kind = "webdataset"

    def __init__(self, shards: list[Path]) -> None:
        self.shards = [Path(os.path.abspath(path)) for path in shards]
        self.root = common_root(self.shards)

    def __iter__(self) -> Iterator[Record]:
        tariterators = require("webdataset.tariterators")
        for shard in self.shards:
            read = 0
            samples = tariterators.tarfile_samples([{"url": str(shard)}])
            try:
                for sample in samples:
                    read += 1
                    yield sample_record(sample)
            except (tarfile.TarError, EOFError, OSError, ValueError) as err:
                raise OSError(f"{shard}: truncated or corrupt tar shard after {read} samples ({err})") from None

    def count(self) -> int:
        """Samples in every shard, from the tar headers. OSError naming a truncated or corrupt shard."""
        return sum(count_samples(shard) for shard in self.shards)

    def fingerprint(self) -> dict[str, Any]:
        """Every shard with its size and mtime."""
        return {"kind": self.kind, "options": {}, "files": file_entries(self.root, self.shards)}

    def ray_dataset(self) -> Any:
        """`ray.data.read_webdataset(decoder=None)` over the shards, each sample mapped by `sample_record`."""
        ray = require("ray")
        found = ray.data.read_webdataset([str(shard) for shard in self.shards], decoder=None)
        return found.map_batches(_tar_batch, batch_format="pyarrow")


def _tar_batch(batch: Any) -> Any:
    """Ray `map_batches` function: raw webdataset rows -> record rows."""
    rows = batch.to_pylist()
    return records_table([sample_record(row) for row in rows])
