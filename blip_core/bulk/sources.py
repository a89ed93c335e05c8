"""Opening a bulk job's input: a folder of images, Parquet files, or WebDataset `.tar` shards, as a `Source`.

`open_source` takes one path or a list: a folder, `.parquet` files or a folder of them, `.tar` shards or a folder
of them, a brace/glob pattern (`shards/{00000..00009}.tar`, `data/*.parquet`), or image files. A folder is
WebDataset when it holds `.tar` files (the `.parquet` files img2dataset writes beside each shard, same name, are
its metadata and are ignored), Parquet when it holds
`.parquet` files and no shards (images beside them are what their path columns name, not records), and images
otherwise (recursive, hidden files skipped). A folder mixing `.tar` shards with images or other Parquet files
raises ValueError.

The readers: `source_folder.ImageFolderSource`, `source_parquet.ParquetSource`, `source_tar.WebDatasetSource`.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from blip_core.bulk.records import Source, require
from blip_core.bulk.source_common import IMAGE_SUFFIXES, common_root, walk_files
from blip_core.bulk.source_folder import ImageFolderSource
from blip_core.bulk.source_parquet import ParquetSource
from blip_core.bulk.source_tar import WebDatasetSource

__all__ = ["ImageFolderSource", "ParquetSource", "WebDatasetSource", "open_source"]


def _expand(pattern: str) -> list[Path]:
    """A path, or the sorted matches of a brace (`{0..9}`, `{a,b}`) and/or glob pattern. OSError when a
    pattern matches nothing or a path does not exist."""
    if os.path.exists(pattern):
        return [Path(pattern)]
    names = [pattern]
    if "{" in pattern and "}" in pattern:
        names = list(require("braceexpand").braceexpand(pattern))
    found: list[str] = []
    for name in names:
        found += sorted(glob.glob(name)) if glob.has_magic(name) else ([name] if os.path.exists(name) else [])
    if not found:
        raise FileNotFoundError(f"no such input: {pattern}")
    if len(names) > 1 and len(found) < len(names) and not glob.has_magic(pattern):
        missing = next(name for name in names if not os.path.exists(name))
        raise FileNotFoundError(f"{pattern}: {missing} does not exist")
    return [Path(name) for name in found]


def _folder_kind(folder: Path) -> tuple[str, list[Path]]:
    """('parquet' | 'webdataset' | 'folder', the data files) of a folder, by what it holds."""
    files = walk_files(folder)
    tars = [path for path in files if path.suffix.lower() == ".tar"]
    parquets = [path for path in files if path.suffix.lower() == ".parquet"]
    images = [path for path in files if path.suffix.lower() in IMAGE_SUFFIXES]
    if tars:
        stems = {path.with_suffix("") for path in tars}
        strays = [path for path in parquets if path.with_suffix("") not in stems] + images
        if strays:
            raise ValueError(
                f"{folder} mixes .tar shards ({tars[0].name}) with other inputs ({strays[0].name}): give a folder "
                "holding one kind of input"
            )
        return "webdataset", tars
    if parquets:  # images beside Parquet files are what their path columns name
        return "parquet", parquets
    if not images:
        raise ValueError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}), .parquet or .tar files")
    return "folder", images


def _file_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    if suffix == ".tar":
        return "webdataset"
    if suffix in IMAGE_SUFFIXES:
        return "images"
    raise ValueError(f"{path}: not an input this reads (a folder, .parquet, .tar or image file)")


def _classify(inputs: str | os.PathLike | list | tuple) -> tuple[str, list[Path], Path | None]:
    """(kind, files, the image folder or None) of the inputs; errors for mixed kinds and repeated files."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if not isinstance(inputs, (list, tuple)) or not inputs:
        raise TypeError(f"inputs must be a path or a non-empty list of paths, got {inputs!r}")
    kinds: set[str] = set()
    files: list[Path] = []
    folders: list[Path] = []
    for given in inputs:
        if not isinstance(given, (str, os.PathLike)):
            raise TypeError(f"inputs must be paths (str or os.PathLike), got {given!r}")
        for path in _expand(os.fspath(given)):
            path = Path(os.path.abspath(path))
            if path.is_dir():
                kind, found = _folder_kind(path)
                folders += [path] if kind == "folder" else []
            else:
                kind, found = _file_kind(path), [path]
            kinds.add(kind)
            files += found
    if len(kinds) > 1:
        raise ValueError(f"the inputs mix kinds ({', '.join(sorted(kinds))}): give one kind of input")
    repeated = next((path for index, path in enumerate(files) if path in files[:index]), None)
    if repeated is not None:
        raise ValueError(f"{repeated} is given twice in the inputs")
    kind = kinds.pop()
    if kind == "folder" and (len(folders) > 1 or len(inputs) > 1):
        raise ValueError("give one image folder (or image files, without a folder)")
    return kind, files, folders[0] if folders else None


def open_source(
    inputs: str | os.PathLike | list | tuple,
    *,
    image_column: str | None = None,
    text_column: str | None = None,
    key_column: str | None = None,
) -> Source:
    """The records of `inputs` (see the module docstring) as a `Source`.

    `image_column`, `text_column`, `key_column` name Parquet columns (auto-detected when None; see
    `source_parquet`); they are refused for other inputs. Raises FileNotFoundError (an OSError) for a missing
    path, ValueError for mixed or unsupported inputs, bad columns or a bad captions file, TypeError for inputs
    that are not paths, and `MissingExtraError` (an ImportError naming `blip-dual[scale]`) when pyarrow or
    webdataset is needed and not installed."""
    kind, files, folder = _classify(inputs)
    if kind == "parquet":
        return ParquetSource(files, image_column, text_column, key_column)
    named = {"image_column": image_column, "text_column": text_column, "key_column": key_column}
    given = [name for name, value in named.items() if value is not None]
    if given:
        raise ValueError(f"{', '.join(given)} name Parquet columns; the inputs are {kind} files")
    if kind == "webdataset":
        require("webdataset")
        return WebDatasetSource(files)
    if folder is not None:
        return ImageFolderSource(folder, files, captions=True)
    return ImageFolderSource(common_root(files), files, captions=False)
