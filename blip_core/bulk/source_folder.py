"""A folder of images (recursive), with optional web texts from `captions.jsonl` or `captions.csv` at its root.

Keys are the images' paths relative to the folder, in POSIX form (`"a/b.jpg"`), sorted; records carry the file's
path (the bytes are read by the workers). A captions line naming a file that does not exist becomes a record with
neither image nor path, so the engine reports it as a failure under its key instead of dropping it silently.
"""

from __future__ import annotations

import csv
import json
import os
import posixpath
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from blip_core.bulk.records import Record, require
from blip_core.bulk.source_common import (
    IMAGE_SUFFIXES,
    file_entries,
    is_hidden,
    record_schema,
    records_table,
    walk_files,
)

CAPTION_FILES = ("captions.jsonl", "captions.csv")


def captions_file(root: Path) -> Path | None:
    """The captions file at the root of `root`, or None. ValueError when both formats are there."""
    present = [root / name for name in CAPTION_FILES if (root / name).is_file()]
    if len(present) > 1:
        raise ValueError(f"{root} holds both captions.jsonl and captions.csv: keep one of them")
    return present[0] if present else None


def _clean_text(text: Any, where: str) -> str | None:
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if not isinstance(text, str):
        raise ValueError(f"{where}: the caption must be a string, got {type(text).__name__}")
    return text


def _clean_name(name: Any, where: str) -> str:
    """A captions file's `file` field as a key: a relative POSIX path inside the folder."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}: 'file' must be a non-empty relative path, got {name!r}")
    key = posixpath.normpath(name)
    if posixpath.isabs(key) or key == ".." or key.startswith("../") or key == ".":
        raise ValueError(f"{where}: 'file' must be a path inside the folder, got {name!r}")
    return key


def _add(
    texts: dict[str, str | None], lines: dict[str, int], key: str, text: str | None, where: str, line: int
) -> None:
    if key in texts:
        raise ValueError(f"{where}: {key!r} is already captioned on line {lines[key]} (one line per image)")
    texts[key], lines[key] = text, line


def _read_jsonl(path: Path) -> dict[str, str | None]:
    texts: dict[str, str | None] = {}
    lines: dict[str, int] = {}
    with open(path, encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            where = f"{path} line {number}"
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f'{where}: not JSON ({err.msg}); expected {{"file": ..., "caption": ...}}') from None
            if not isinstance(entry, dict) or "file" not in entry:
                raise ValueError(f'{where}: expected an object {{"file": ..., "caption": ...}} (or "text")')
            text = entry["caption"] if "caption" in entry else entry.get("text")
            _add(texts, lines, _clean_name(entry["file"], where), _clean_text(text, where), where, number)
    return texts


def _read_csv(path: Path) -> dict[str, str | None]:
    texts: dict[str, str | None] = {}
    lines: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        header = reader.fieldnames or []
        column = "caption" if "caption" in header else "text"
        if "file" not in header or column not in header:
            raise ValueError(f"{path} line 1: expected the columns file,caption (or file,text), got {header}")
        for row in reader:
            where = f"{path} line {reader.line_num}"
            if None in row or row.get(column) is None:
                raise ValueError(f"{where}: expected {len(header)} fields as in the header")
            _add(texts, lines, _clean_name(row["file"], where), _clean_text(row[column], where), where, reader.line_num)
    return texts


def read_captions(path: Path) -> dict[str, str | None]:
    """key (relative POSIX path) -> web text (None when empty) from a captions.jsonl / captions.csv file.

    Raises ValueError naming the file and line for malformed lines, paths outside the folder and duplicates,
    and for a file that is not UTF-8."""
    try:
        return _read_jsonl(path) if path.suffix == ".jsonl" else _read_csv(path)
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None


class ImageFolderSource:
    """The images under a folder (or an explicit list of image files under a common root), sorted by key."""

    kind = "folder"

    def __init__(self, root: str | Path, files: list[Path] | None = None, captions: bool = True) -> None:
        """`root`: the folder; `files`: the images to read, under `root` (default: every image file under `root`,
        recursive, hidden ones skipped); `captions`: read the root's captions file, if any. Raises ValueError
        for a bad captions file."""
        self.root = Path(os.path.abspath(root))
        self.captions_path = captions_file(self.root) if captions else None
        if files is None:
            files = [path for path in walk_files(self.root) if path.suffix.lower() in IMAGE_SUFFIXES]
        self.texts = read_captions(self.captions_path) if self.captions_path else {}
        keys = {Path(path).relative_to(self.root).as_posix() for path in files}
        self.files = [self.root / key for key in sorted(keys)]
        extra = [key for key in self.texts if key not in keys]
        self.files += [self.root / key for key in extra if (self.root / key).is_file()]
        self.missing = sorted(key for key in extra if not (self.root / key).is_file())
        self.keys = sorted(keys | set(extra))

    def __iter__(self) -> Iterator[Record]:
        missing = set(self.missing)
        for key in self.keys:
            path = None if key in missing else str(self.root / key)
            yield Record(key=key, path=path, text=self.texts.get(key))

    def count(self) -> int:
        """Images plus captions lines naming missing files."""
        return len(self.keys)

    def fingerprint(self) -> dict[str, Any]:
        """The image files and the captions file, each with size and mtime."""
        files = sorted(self.files, key=lambda path: path.relative_to(self.root).as_posix())
        listed = files + ([self.captions_path] if self.captions_path else [])
        return {"kind": self.kind, "options": {}, "files": file_entries(self.root, listed)}

    def ray_dataset(self) -> Any:
        """`ray.data.read_binary_files` over the image files (bytes in `image`), texts joined by key."""
        ray = require("ray")
        parts = []
        if self.files:
            found = ray.data.read_binary_files([str(path) for path in self.files], include_paths=True)
            parts.append(found.map_batches(_FolderBatch(self.root, self.texts), batch_format="pyarrow"))
        if self.missing or not parts:
            missing = [Record(key=key, text=self.texts.get(key)) for key in self.missing]
            parts.append(ray.data.from_arrow(records_table(missing)))
        return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]


class _FolderBatch:
    """Ray `map_batches` function: (bytes, path) rows -> record rows, the text looked up by key."""

    def __init__(self, root: Path, texts: dict[str, str | None]) -> None:
        self.prefix = root.as_posix().rstrip("/") + "/"
        self.texts = texts

    def __call__(self, batch: Any) -> Any:
        pa = require("pyarrow")
        keys = []
        for path in batch.column("path").to_pylist():
            path = Path(path).as_posix()
            if not path.startswith(self.prefix):
                raise ValueError(f"Ray read {path}, which is not under {self.prefix}")
            keys.append(path[len(self.prefix) :])
        columns = {
            "key": keys,
            "image": batch.column("bytes").to_pylist(),
            "path": [None] * len(keys),
            "text": [self.texts.get(key) for key in keys],
        }
        return pa.table(columns, schema=record_schema())


def has_images(files: list[Path], root: Path) -> bool:
    """Whether any of `files` (under `root`) is a non-hidden image file."""
    return any(path.suffix.lower() in IMAGE_SUFFIXES and not is_hidden(path.relative_to(root)) for path in files)
