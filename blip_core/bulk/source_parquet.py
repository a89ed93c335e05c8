"""Parquet files (one, or a folder of them): images as bytes, paths or Hugging Face `datasets` Image structs.

Read with pyarrow in streaming batches (`ParquetFile.iter_batches`), never the whole table. One conversion
(`convert_batch`) turns a batch of the file's columns into record columns, locally and inside Ray's `map_batches`,
so both engines produce the same keys, images, paths and texts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blip_core.bulk.records import require
from blip_core.bulk.source_common import common_root, file_entries, record_schema, table_records

IMAGE_COLUMNS = ("image", "jpg", "png", "webp", "image_bytes", "image_path", "path", "file", "filepath")
TEXT_COLUMNS = ("text", "caption", "txt", "alt_text")
BATCH_ROWS = 256  # rows per streamed batch: a batch of encoded images stays a few tens of MB


@dataclass(frozen=True)
class Columns:
    """The columns a Parquet source reads. `key` None: keys from path images, else `"<file name>:<row>"`."""

    image: str
    text: str | None
    key: str | None

    def names(self) -> list[str]:
        return [name for name in (self.image, self.text, self.key) if name is not None]


def _pick(names: list[str], given: str | None, candidates: tuple[str, ...], what: str, path: Path) -> str | None:
    if given is not None:
        if given not in names:
            raise ValueError(f"{path} has no {what} column {given!r}; its columns are {names}")
        return given
    return next((name for name in candidates if name in names), None)


def _image_kind(field_type: Any, name: str, path: Path) -> str:
    """'bytes', 'path', 'struct' (Hugging Face Image) or 'null' for the image column's Arrow type."""
    pa = require("pyarrow")
    types = pa.types
    if types.is_binary(field_type) or types.is_large_binary(field_type) or types.is_fixed_size_binary(field_type):
        return "bytes"
    if types.is_string(field_type) or types.is_large_string(field_type):
        return "path"
    if types.is_struct(field_type) and {"bytes", "path"} & {field.name for field in field_type}:
        return "struct"
    if types.is_null(field_type):
        return "null"
    raise ValueError(
        f"{path}: the image column {name!r} is {field_type}; expected binary (encoded image), string (a path) or "
        "a struct with 'bytes'/'path' fields"
    )


def resolve_columns(path: Path, schema: Any, image: str | None, text: str | None, key: str | None) -> Columns:
    """The columns to read from a file of `schema` (explicit names or auto-detected); ValueError naming the
    file and listing its columns when one is missing or of the wrong type."""
    pa = require("pyarrow")
    names = list(schema.names)
    image_name = _pick(names, image, IMAGE_COLUMNS, "image", path)
    if image_name is None:
        raise ValueError(
            f"{path} has no image column (looked for {list(IMAGE_COLUMNS)}); its columns are {names}: name one with "
            "--image-column (image_column=...)"
        )
    _image_kind(schema.field(image_name).type, image_name, path)
    text_name = _pick(names, text, TEXT_COLUMNS, "text", path)
    if text_name is not None:
        text_type = schema.field(text_name).type
        if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type) or pa.types.is_null(text_type)):
            raise ValueError(f"{path}: the text column {text_name!r} is {text_type}; expected strings")
    key_name = _pick(names, key, ("key",), "key", path)
    return Columns(image=image_name, text=text_name, key=key_name)


def _resolve(base: str, value: str | None) -> str | None:
    if value is None or value == "":
        return None
    return value if os.path.isabs(value) else os.path.join(base, value)


def _images(column: Any, kind: str, base: str) -> tuple[list[bytes | None], list[str | None], list[str | None]]:
    """(bytes, resolved paths, raw paths) of an image column."""
    size = len(column)
    if kind == "null":
        return [None] * size, [None] * size, [None] * size
    if kind == "bytes":
        return column.to_pylist(), [None] * size, [None] * size
    if kind == "path":
        raw = column.to_pylist()
        return [None] * size, [_resolve(base, value) for value in raw], raw
    images, paths, raw = [], [], []
    for entry in column.to_pylist():
        entry = entry or {}
        data, where = entry.get("bytes"), entry.get("path")
        images.append(data if data is not None else None)
        paths.append(None if data is not None else _resolve(base, where))
        raw.append(where)
    return images, paths, raw


def _column_keys(batch: Any, name: str, where: str) -> list[str]:
    """The key column cast to strings; ValueError for a column that is not text-like or holds a null."""
    pa = require("pyarrow")
    try:
        keys = batch.column(name).cast(pa.string()).to_pylist()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise ValueError(f"{where}: the key column {name!r} cannot be read as text: {err}") from None
    if None in keys:
        raise ValueError(f"{where}: the key column {name!r} has a null key")
    return keys


def convert_batch(batch: Any, columns: Columns, base: str, where: str, first_row: int | None, by_path: bool) -> Any:
    """A pyarrow batch/table of a Parquet file's columns -> a table of the record columns (`record_schema()`).

    `base`: the folder relative image paths are resolved against; `where`: names the file in errors and (with
    `first_row`, the batch's first row index in its file) in `"<file name>:<row>"` keys; `by_path`: keys are the
    image path strings. `first_row` None (Ray) with neither key column nor path keys raises ValueError."""
    pa = require("pyarrow")
    kind = _image_kind(batch.schema.field(columns.image).type, columns.image, Path(where))
    images, paths, raw = _images(batch.column(columns.image), kind, base)
    if columns.key is not None:
        keys = _column_keys(batch, columns.key, where)
    elif by_path:
        if any(path is None for path in raw):
            raise ValueError(f"{where}: a row has a null image path and there is no key column; give key_column")
        keys = list(raw)
    elif first_row is None:
        raise ValueError(f"{where}: rows have no key column and no image path; give key_column")
    else:
        keys = [f"{where}:{first_row + row}" for row in range(batch.num_rows)]
    texts = batch.column(columns.text).cast(pa.string()).to_pylist() if columns.text else [None] * len(keys)
    table = {"key": keys, "image": images, "path": paths, "text": texts}
    return pa.table(table, schema=record_schema())


class ParquetSource:
    """The rows of Parquet files, file by file in the given order, each read in streamed batches."""

    kind = "parquet"

    def __init__(
        self, files: list[Path], image_column: str | None, text_column: str | None, key_column: str | None
    ) -> None:
        """Reads every file's footer (schema, row count) now; ValueError for a bad or missing column, OSError
        for a file that is not Parquet."""
        pq = require("pyarrow.parquet")
        pa = require("pyarrow")
        self.files = [Path(os.path.abspath(path)) for path in files]
        self.root = common_root(self.files)
        self.rows = 0
        found: set[Columns] = set()
        for path in self.files:
            try:
                metadata = pq.read_metadata(path)
            except (pa.ArrowInvalid, OSError) as err:
                raise OSError(f"{path}: not a readable Parquet file ({err})") from None
            self.rows += metadata.num_rows
            found.add(resolve_columns(path, metadata.schema.to_arrow_schema(), image_column, text_column, key_column))
        if len(found) > 1:
            raise ValueError(
                f"the Parquet files name their columns differently ({sorted(found, key=str)}): "
                "give image_column/text_column/key_column"
            )
        self.columns = found.pop()
        first = pq.read_schema(self.files[0])
        self.by_path = (
            self.columns.key is None
            and _image_kind(first.field(self.columns.image).type, self.columns.image, self.files[0]) == "path"
        )

    def __iter__(self) -> Iterator[Any]:
        pq = require("pyarrow.parquet")
        for path in self.files:
            first_row = 0
            stream = pq.ParquetFile(path)
            for batch in stream.iter_batches(batch_size=BATCH_ROWS, columns=self.columns.names()):
                table = convert_batch(batch, self.columns, str(path.parent), path.name, first_row, self.by_path)
                first_row += batch.num_rows
                yield from table_records(table)

    def count(self) -> int:
        """The row count from the files' metadata (no data read)."""
        return self.rows

    def fingerprint(self) -> dict[str, Any]:
        """The columns read and every file with its size and mtime (the images a path column names are not
        listed: stat-ing millions of files up front would cost more than the check is worth)."""
        options = {"image_column": self.columns.image, "text_column": self.columns.text, "key_column": self.columns.key}
        return {"kind": self.kind, "options": options, "files": file_entries(self.root, self.files)}

    def ray_dataset(self) -> Any:
        """`ray.data.read_parquet` per folder of files, converted in `map_batches`. ValueError when the keys would
        need row indices (no key column and bytes images): give `key_column`."""
        ray = require("ray")
        if self.columns.key is None and not self.by_path:
            raise ValueError(
                f"{self.files[0]}: the images are bytes and there is no key column, so the keys would be row "
                "indices, which Ray's reader cannot know: give key_column (img2dataset writes a 'key' column)"
            )
        folders: dict[Path, list[str]] = {}
        for path in self.files:
            folders.setdefault(path.parent, []).append(str(path))
        parts = []
        for folder, paths in folders.items():
            found = ray.data.read_parquet(paths, partitioning=None).select_columns(self.columns.names())
            convert = _ParquetBatch(self.columns, str(folder), self.by_path)
            parts.append(found.map_batches(convert, batch_format="pyarrow"))
        return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]


class _ParquetBatch:
    """Ray `map_batches` function: `convert_batch` over one folder's files."""

    def __init__(self, columns: Columns, base: str, by_path: bool) -> None:
        self.columns, self.base, self.by_path = columns, base, by_path

    def __call__(self, batch: Any) -> Any:
        return convert_batch(batch, self.columns, self.base, self.base, None, self.by_path)
