"""What the input readers share: the record table's Arrow schema, file listings for fingerprints, naming.

pyarrow is imported inside calls only (through `records.require`), so a missing extra names `blip-dual[scale]`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from blip_core.bulk.records import RAY_COLUMNS, Record, require

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def is_hidden(relative: Path) -> bool:
    """Whether any component of a relative path starts with a dot (hidden files and folders are skipped)."""
    return any(part.startswith(".") for part in relative.parts)


def walk_files(root: Path) -> list[Path]:
    """Every regular, non-hidden file under `root` (recursive), sorted by relative POSIX path.

    Raises OSError when a folder cannot be listed."""
    found: list[Path] = []

    def fail(err: OSError) -> None:
        raise OSError(f"cannot list {err.filename}: {err.strerror}") from err

    for folder, subfolders, names in os.walk(root, onerror=fail, followlinks=True):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        found += [Path(folder, name) for name in names if not name.startswith(".")]
    files = [path for path in found if path.is_file()]
    return sorted(files, key=lambda path: path.relative_to(root).as_posix())


def file_entries(root: Path, files: Iterable[Path]) -> list[list[Any]]:
    """`[relative POSIX path, size in bytes, mtime in ns]` of each file, for `Source.fingerprint()`."""
    entries = []
    for path in files:
        stat = path.stat()
        entries.append([relative_name(root, path), stat.st_size, stat.st_mtime_ns])
    return entries


def relative_name(root: Path, path: Path) -> str:
    """`path` relative to `root` as a POSIX string (the absolute POSIX path when it is not under `root`)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def common_root(files: list[Path]) -> Path:
    """The deepest folder holding every one of `files` (absolute)."""
    return Path(os.path.commonpath([os.path.abspath(path.parent) for path in files]))


def record_schema() -> Any:
    """The Arrow schema of `RAY_COLUMNS`: key string, image binary, path string, text string (nulls allowed)."""
    pa = require("pyarrow")
    types = {"key": pa.string(), "image": pa.binary(), "path": pa.string(), "text": pa.string()}
    return pa.schema([(name, types[name]) for name in RAY_COLUMNS])


def records_table(records: list[Record]) -> Any:
    """A `pyarrow.Table` of `records` with exactly `record_schema()`."""
    pa = require("pyarrow")
    columns = {name: [getattr(record, name) for record in records] for name in RAY_COLUMNS}
    return pa.table(columns, schema=record_schema())


def table_records(table: Any) -> Iterator[Record]:
    """The records of a table with the `RAY_COLUMNS` columns, row by row."""
    columns = [table.column(name).to_pylist() for name in RAY_COLUMNS]
    for key, image, path, text in zip(*columns, strict=True):
        yield Record(key=key, image=image, path=path, text=text)
