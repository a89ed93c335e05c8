"""The same 30 records written in every input format of the bulk readers, and what each reader must yield.

The records: 8 real photos from `skimage.data` (downscaled to at most 160 px, JPEG), 18 synthetic images of
varied sizes and modes (RGB, L, RGBA, P; PNG and JPEG), and 4 broken ones (a truncated JPEG, a zero-byte file,
a text file named `.jpg`, and one record whose image is missing). Most have a web text (unicode, commas and
quotes included); a few have none. Every writer returns `(path to open, expected records in reading order)`.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import tarfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import PIL.Image

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "cat", "coins", "page")
MODES = ("RGB", "L", "RGBA", "P")


class Item(NamedTuple):
    """One record before it is written: `name` (a stem, unique), its file suffix, its encoded bytes (None: the
    image is missing), its web text, whether decoding it must fail."""

    name: str
    suffix: str
    data: bytes | None
    text: str | None
    broken: bool


class Expected(NamedTuple):
    """What a reader must yield for one record: key, web text, whether it is broken, the image bytes (None for
    a missing image) and the path it must carry (None when the record carries bytes or nothing)."""

    key: str
    text: str | None
    broken: bool
    data: bytes | None
    path: str | None


def _encode(image: PIL.Image.Image, suffix: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG" if suffix == ".jpg" else "PNG", quality=85)
    return buffer.getvalue()


def _photo(name: str) -> bytes:
    import skimage.data

    image = PIL.Image.fromarray(getattr(skimage.data, name)())
    image.thumbnail((160, 160))
    return _encode(image, ".jpg")


def _synthetic(index: int) -> tuple[str, bytes]:
    mode = MODES[index % len(MODES)]
    rng = np.random.RandomState(index)
    height, width = 24 + 7 * index, 96 - 3 * index
    pixels = rng.randint(0, 256, size=(height, width, 3)).astype(np.uint8)
    image = PIL.Image.fromarray(pixels).convert(mode if mode != "P" else "RGB")
    if mode == "P":
        image = image.convert("P", palette=PIL.Image.Palette.ADAPTIVE, colors=16)
    suffix = ".jpg" if mode in ("RGB", "L") and index % 2 == 0 else ".png"
    return suffix, _encode(image, suffix)


def _text(index: int) -> str | None:
    if index % 7 == 3:
        return None
    extras = ["", ", with a comma", ' and "quotes"', " — café ☕", "\twith a tab"]
    return f"web text {index}{extras[index % len(extras)]}"


@functools.lru_cache(maxsize=1)
def items() -> tuple[Item, ...]:
    """The 30 records, in a fixed order (names 000000000 ... 000000029, as img2dataset numbers them)."""
    found = [(".jpg", _photo(name), False) for name in PHOTOS]
    for index in range(18):
        suffix, data = _synthetic(index)
        found.append((suffix, data, False))
    full = found[0][1]
    found.append((".jpg", full[: len(full) // 2], True))  # truncated JPEG
    found.append((".jpg", b"", True))  # zero-byte file
    found.append((".jpg", b"this is a text file, not an image\n", True))  # text named .jpg
    found.append((".jpg", None, True))  # missing image
    return tuple(
        Item(f"{index:09d}", suffix, data, _text(index), broken) for index, (suffix, data, broken) in enumerate(found)
    )


def _subfolder(item: Item) -> str:
    number = int(item.name)
    return "photos" if number < len(PHOTOS) else "broken" if item.broken else "synthetic/deeper"


def write_folder(root: Path, captions: str = "jsonl") -> tuple[Path, list[Expected]]:
    """An image folder (three sub-folders) with `captions.jsonl` or `captions.csv` (or none: `captions=""`),
    plus hidden files and a non-image file that must be skipped. Keys: relative POSIX paths, sorted."""
    folder = root / f"folder_{captions or 'plain'}"
    expected = []
    lines = []
    for item in items():
        key = f"{_subfolder(item)}/{item.name}{item.suffix}"
        if item.data is not None:
            (folder / key).parent.mkdir(parents=True, exist_ok=True)
            (folder / key).write_bytes(item.data)
        text = item.text if captions else None
        path = str(folder / key) if item.data is not None else None
        if item.text is not None or item.data is None:
            lines.append({"file": key, "caption": item.text})
        expected.append(Expected(key, text, item.broken, None, path))
    (folder / ".hidden.jpg").write_bytes(items()[0].data)
    (folder / ".cache").mkdir()
    (folder / ".cache" / "thumb.jpg").write_bytes(items()[0].data)
    (folder / "notes.txt").write_text("not an image\n")
    if captions == "jsonl":
        text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines[::-1])
        (folder / "captions.jsonl").write_text(text, encoding="utf-8")
    elif captions == "csv":
        with open(folder / "captions.csv", "w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream)
            writer.writerow(["file", "text"])
            writer.writerows([line["file"], line["caption"] or ""] for line in lines)
    if not captions:  # without a captions file, the missing image is not a record
        expected = [entry for entry in expected if entry.path is not None]
    return folder, sorted(expected)


def write_parquet_bytes(root: Path, name: str = "data.parquet") -> tuple[Path, list[Expected]]:
    """One Parquet file as img2dataset writes it: key, jpg (bytes; null for the missing image), caption, url."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = items()
    table = pa.table(
        {
            "key": [item.name for item in rows],
            "jpg": pa.array([item.data for item in rows], pa.binary()),
            "caption": pa.array([item.text for item in rows], pa.string()),
            "url": [f"https://example.com/{item.name}{item.suffix}" for item in rows],
        }
    )
    path = root / name
    pq.write_table(table, path, row_group_size=7)
    return path, [Expected(item.name, item.text, item.broken, item.data, None) for item in rows]


def write_parquet_paths(root: Path) -> tuple[Path, list[Expected]]:
    """A folder of two Parquet files with an `image_path` column (paths relative to the folder; one names a
    missing file) and a `text` column. Keys: the path strings, in file then row order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = root / "parquet_paths"
    (folder / "images").mkdir(parents=True)
    expected = []
    rows = items()
    for part, chunk in enumerate((rows[:13], rows[13:])):
        paths = []
        for item in chunk:
            relative = f"images/{item.name}{item.suffix}"
            if item.data is not None:
                (folder / relative).write_bytes(item.data)
            paths.append(relative)
            expected.append(Expected(relative, item.text, item.broken, None, str(folder / relative)))
        table = pa.table({"image_path": paths, "text": pa.array([item.text for item in chunk], pa.string())})
        pq.write_table(table, folder / f"part-{part:05d}.parquet")
    return folder, expected


def write_parquet_hf(root: Path, with_key: bool = False) -> tuple[Path, list[Expected]]:
    """One Parquet file as Hugging Face `datasets` stores an Image feature: a struct {bytes, path}; the first
    three rows hold only a path (relative to the file's folder), the missing image is a null struct. Keys:
    `"hf.parquet:<row>"`, or with `with_key` an `id` column holding `"id-<row>"`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = root / ("hf_keyed" if with_key else "hf")
    folder.mkdir()
    structs, expected = [], []
    for row, item in enumerate(items()):
        key, path = (f"id-{row}" if with_key else f"hf.parquet:{row}"), None
        if item.data is None:
            structs.append(None)
        elif row < 3:
            (folder / f"{item.name}{item.suffix}").write_bytes(item.data)
            structs.append({"bytes": None, "path": f"{item.name}{item.suffix}"})
            path = str(folder / f"{item.name}{item.suffix}")
        else:
            structs.append({"bytes": item.data, "path": f"{item.name}{item.suffix}"})
        data = item.data if path is None else None
        expected.append(Expected(key, item.text, item.broken, data, path))
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    columns = {"image": pa.array(structs, image_type), "text": pa.array([item.text for item in items()], pa.string())}
    if with_key:
        columns["id"] = [f"id-{row}" for row in range(len(structs))]
    pq.write_table(pa.table(columns), folder / "hf.parquet")
    return folder / "hf.parquet", expected


def _add_member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o644
    archive.addfile(info, io.BytesIO(data))


def write_tars(root: Path, shards: int = 3) -> tuple[Path, list[Expected]]:
    """A folder of WebDataset shards laid out as img2dataset writes them: `{key}.jpg|png`, `{key}.txt`,
    `{key}.json` per sample (some texts only in the JSON caption; the missing image has no image member), plus
    img2dataset's `{shard}.parquet` metadata and `{shard}_stats.json` beside each shard."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = root / "shards"
    folder.mkdir()
    rows = items()
    size = -(-len(rows) // shards)
    for shard in range(shards):
        chunk = rows[shard * size : (shard + 1) * size]
        with tarfile.open(folder / f"{shard:05d}.tar", "w", format=tarfile.USTAR_FORMAT) as archive:
            for item in chunk:
                if item.data is not None:
                    _add_member(archive, f"{item.name}{item.suffix}", item.data)
                meta = {"key": item.name, "caption": item.text, "url": f"https://example.com/{item.name}"}
                _add_member(archive, f"{item.name}.json", json.dumps(meta, ensure_ascii=False).encode("utf-8"))
                if item.text is not None and int(item.name) % 5 != 1:  # some texts only in the JSON
                    _add_member(archive, f"{item.name}.txt", item.text.encode("utf-8"))
        pq.write_table(pa.table({"key": [item.name for item in chunk]}), folder / f"{shard:05d}.parquet")
        (folder / f"{shard:05d}_stats.json").write_text(json.dumps({"count": len(chunk)}))
    return folder, [Expected(item.name, item.text, item.broken, item.data, None) for item in rows]
