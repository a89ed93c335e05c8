"""The bulk input readers: a folder of images (+ captions.jsonl/.csv), Parquet (bytes, paths, Hugging Face Image
structs) and WebDataset shards yield exactly the expected keys, order, texts, bytes and paths; counts and
fingerprints; Ray Datasets with the same records; clear errors for bad input and missing extras."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from blip_core.bulk.records import RAY_COLUMNS, MissingExtraError, Record
from blip_core.bulk.sources import ImageFolderSource, ParquetSource, WebDatasetSource, open_source
from tests.helpers import bulk_data

pytestmark = pytest.mark.xdist_group("ray")  # one local Ray at a time: these share a pytest-xdist worker

WRITERS = {
    "folder_jsonl": (lambda root: bulk_data.write_folder(root, "jsonl"), ImageFolderSource),
    "folder_csv": (lambda root: bulk_data.write_folder(root, "csv"), ImageFolderSource),
    "folder_plain": (lambda root: bulk_data.write_folder(root, ""), ImageFolderSource),
    "parquet_bytes": (bulk_data.write_parquet_bytes, ParquetSource),
    "parquet_paths": (bulk_data.write_parquet_paths, ParquetSource),
    "parquet_hf": (bulk_data.write_parquet_hf, ParquetSource),
    "parquet_hf_keyed": (lambda root: bulk_data.write_parquet_hf(root, with_key=True), ParquetSource),
    "webdataset": (bulk_data.write_tars, WebDatasetSource),
}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """name -> (path to open, expected records), every format written once for the module."""
    root = tmp_path_factory.mktemp("bulk_sources")
    return {name: writer(root) for name, (writer, _) in WRITERS.items()}


def _open(name: str, path: Path):
    return open_source(path, key_column="id") if name == "parquet_hf_keyed" else open_source(path)


def _rows(records) -> list[tuple]:
    return [(record.key, record.text, record.image, record.path) for record in records]


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_records_are_exactly_the_expected_ones(datasets, name):
    path, expected = datasets[name]
    source = _open(name, path)
    assert isinstance(source, WRITERS[name][1])
    assert _rows(source) == [(entry.key, entry.text, entry.data, entry.path) for entry in expected]
    assert _rows(source) == _rows(source)  # the same order on every pass
    assert source.count() == len(expected) == (29 if name == "folder_plain" else 30)
    assert sum(entry.broken for entry in expected) == (3 if name == "folder_plain" else 4)


def test_folder_keys_texts_and_skipped_files(datasets):
    path, _ = datasets["folder_jsonl"]
    records = {record.key: record for record in open_source(path)}
    assert list(records)[:2] == ["broken/000000026.jpg", "broken/000000027.jpg"]
    assert records["photos/000000000.jpg"] == Record(
        "photos/000000000.jpg", path=str(path / "photos/000000000.jpg"), text="web text 0"
    )
    assert records["photos/000000003.jpg"].text is None  # no caption line
    assert records["synthetic/deeper/000000013.png"].text == "web text 13 — café ☕"
    assert records["broken/000000029.jpg"] == Record("broken/000000029.jpg", text="web text 29\twith a tab")
    assert not any(key.startswith(".") or "/." in key or key.endswith(".txt") for key in records)


def test_webdataset_text_from_json_and_image_members(datasets):
    path, _ = datasets["webdataset"]
    records = {record.key: record for record in open_source(path)}
    assert records["000000001"].text == "web text 1, with a comma"  # only in 000000001.json
    assert records["000000009"].image[:8] == b"\x89PNG\r\n\x1a\n"  # a .png member
    assert records["000000029"] == Record("000000029", text="web text 29\twith a tab")  # no image member


def test_parquet_explicit_columns(datasets):
    path, expected = datasets["parquet_bytes"]
    source = open_source(path, key_column="url", text_column="key")
    records = list(source)
    urls = [f"https://example.com/{item.name}{item.suffix}" for item in bulk_data.items()]
    assert [record.key for record in records] == urls
    assert [record.text for record in records] == [entry.key for entry in expected]
    assert source.fingerprint()["options"] == {"image_column": "jpg", "text_column": "key", "key_column": "url"}


def test_inputs_as_lists_patterns_and_files(datasets):
    path, expected = datasets["webdataset"]
    keys = [entry.key for entry in expected]
    for given in (str(path / "{00000..00002}.tar"), str(path / "*.tar"), sorted(path.glob("*.tar"))):
        assert [record.key for record in open_source(given)] == keys
    folder, _ = datasets["folder_plain"]
    images = [folder / "photos" / "000000001.jpg", folder / "photos" / "000000000.jpg"]
    source = open_source(images)
    assert [(record.key, record.path) for record in source] == [(p.name, str(p)) for p in sorted(images)]


@pytest.mark.parametrize("name", ["folder_jsonl", "parquet_paths", "webdataset"])
def test_fingerprint_lists_files_and_changes_with_them(tmp_path, name):
    path, _ = WRITERS[name][0](tmp_path)
    first = _open(name, path).fingerprint()
    assert json.loads(json.dumps(first)) == first
    names = [entry[0] for entry in first["files"]]
    if name == "folder_jsonl":
        assert len(names) == 30 and names[-1] == "captions.jsonl" and "photos/000000000.jpg" in names
        changed = path / "photos/000000000.jpg"
    elif name == "parquet_paths":
        assert names == ["part-00000.parquet", "part-00001.parquet"]
        changed = path / "part-00001.parquet"
    else:
        assert names == ["00000.tar", "00001.tar", "00002.tar"]
        changed = path / "00001.tar"
    assert _open(name, path).fingerprint() == first
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = _open(name, path).fingerprint()
    assert touched != first and touched["files"] != first["files"]


def test_truncated_shard_is_named(tmp_path):
    path, expected = bulk_data.write_tars(tmp_path)
    shard = path / "00001.tar"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    source = open_source(path)
    with pytest.raises(OSError, match="00001.tar"):
        source.count()
    read = []
    with pytest.raises(OSError, match=r"00001.tar: truncated or corrupt tar shard after \d+ samples"):
        for record in source:
            read.append(record.key)
    assert read[:10] == [entry.key for entry in expected[:10]]  # the first shard, whole


def test_not_a_tar_is_named(tmp_path):
    (tmp_path / "bad.tar").write_bytes(b"not a tar at all" * 100)
    source = open_source(tmp_path / "bad.tar")
    with pytest.raises(OSError, match="bad.tar"):
        source.count()
    with pytest.raises(OSError, match="bad.tar"):
        list(source)


def _folder(tmp_path: Path, captions: str, name: str = "captions.jsonl") -> Path:
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / name).write_text(captions, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    ("name", "captions", "message"),
    [
        ("captions.jsonl", '{"file": "a.jpg", "caption": "x"}\n{"file": "a.jpg"\n', r"captions.jsonl line 2: not JSON"),
        ("captions.jsonl", '\n["a.jpg"]\n', r"captions.jsonl line 2: expected an object"),
        ("captions.jsonl", '{"file": "../a.jpg", "caption": "x"}\n', r"line 1: 'file' must be a path inside"),
        ("captions.jsonl", '{"file": "a.jpg", "caption": 3}\n', r"line 1: the caption must be a string, got int"),
        (
            "captions.jsonl",
            '{"file": "a.jpg"}\n{"file": "./a.jpg"}\n',
            r"line 2: 'a.jpg' is already captioned on line 1",
        ),
        ("captions.csv", "name,caption\na.jpg,x\n", r"captions.csv line 1: expected the columns file,caption"),
        ("captions.csv", "file,caption\na.jpg,x,extra\n", r"captions.csv line 2: expected 2 fields"),
    ],
)
def test_bad_captions_file(tmp_path, name, captions, message):
    with pytest.raises(ValueError, match=message):
        open_source(_folder(tmp_path, captions, name))


def test_captions_not_utf8_and_both_formats(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "captions.jsonl").write_bytes(b'{"file": "a.jpg", "caption": "\xff"}\n')
    with pytest.raises(ValueError, match="captions.jsonl: not UTF-8"):
        open_source(tmp_path)
    (tmp_path / "captions.csv").write_text("file,caption\n")
    with pytest.raises(ValueError, match="both captions.jsonl and captions.csv"):
        open_source(tmp_path)


def test_bad_inputs(tmp_path, datasets):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        open_source(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="00003.tar does not exist"):
        open_source(str(datasets["webdataset"][0] / "{00000..00003}.tar"))
    with pytest.raises(TypeError, match="inputs must be"):
        open_source([])
    with pytest.raises(TypeError, match="inputs must be paths"):
        open_source([3])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        open_source(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="notes.txt: not an input"):
        open_source(tmp_path / "notes.txt")
    tar, parquet = datasets["webdataset"][0] / "00000.tar", datasets["parquet_bytes"][0]
    with pytest.raises(ValueError, match="the inputs mix kinds"):
        open_source([tar, parquet])
    with pytest.raises(ValueError, match="given twice"):
        open_source([tar, tar])
    with pytest.raises(ValueError, match="key_column name Parquet columns"):
        open_source(tar, key_column="key")


def test_mixed_folder(tmp_path, datasets):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "00000.tar").write_bytes((datasets["webdataset"][0] / "00000.tar").read_bytes())
    with pytest.raises(ValueError, match=r"mixes .tar shards \(00000.tar\) with other inputs \(a.jpg\)"):
        open_source(tmp_path)


def test_bad_parquet_columns(tmp_path, datasets):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = datasets["parquet_bytes"][0]
    columns = r"\['key', 'jpg', 'caption', 'url'\]"
    with pytest.raises(ValueError, match=rf"no image column 'img'; its columns are {columns}"):
        open_source(path, image_column="img")
    with pytest.raises(ValueError, match=rf"no text column 'alt'; its columns are {columns}"):
        open_source(path, text_column="alt")
    with pytest.raises(ValueError, match="the text column 'jpg' is binary; expected strings"):
        open_source(path, text_column="jpg")
    pq.write_table(pa.table({"id": [1], "width": [3]}), tmp_path / "meta.parquet")
    with pytest.raises(ValueError, match=r"has no image column \(looked for .*its columns are \['id', 'width'\]"):
        open_source(tmp_path / "meta.parquet")
    with pytest.raises(ValueError, match="the image column 'width' is int64; expected binary"):
        open_source(tmp_path / "meta.parquet", image_column="width")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(OSError, match="broken.parquet: not a readable Parquet file"):
        open_source(tmp_path / "broken.parquet")


def test_parquet_null_keys_and_int_keys(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"key": [7, 8], "jpg": [b"a", None]}), tmp_path / "ints.parquet")
    assert list(open_source(tmp_path / "ints.parquet")) == [Record("7", image=b"a"), Record("8")]
    pq.write_table(pa.table({"key": ["a", None], "jpg": [b"a", b"b"]}), tmp_path / "nulls.parquet")
    with pytest.raises(ValueError, match="the key column 'key' has a null key"):
        list(open_source(tmp_path / "nulls.parquet"))


@pytest.mark.parametrize(("module", "name"), [("pyarrow", "parquet_bytes"), ("webdataset", "webdataset")])
def test_missing_extra_names_it(monkeypatch, datasets, module, name):
    for loaded in [key for key in sys.modules if key == module or key.startswith(module + ".")]:
        monkeypatch.setitem(sys.modules, loaded, None)
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingExtraError, match=r"pip install 'blip-dual\[scale\]'"):
        list(open_source(datasets[name][0]))


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray", reason="ray[data] is not installed (pip install 'blip-dual[scale]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _content(image: bytes | None, path: str | None) -> bytes | str | None:
    """What a record's image is: its bytes, a file's bytes, or the path of a file that does not exist."""
    if image is not None:
        return image
    if path is not None and os.path.isfile(path):
        return Path(path).read_bytes()
    return path


@pytest.mark.parametrize(
    "name", ["folder_jsonl", "folder_csv", "parquet_bytes", "parquet_paths", "parquet_hf_keyed", "webdataset"]
)
def test_ray_dataset_has_the_same_records(ray_session, datasets, name):
    source = _open(name, datasets[name][0])
    dataset = source.ray_dataset()
    assert tuple(dataset.schema().names) == RAY_COLUMNS
    assert [str(kind) for kind in dataset.schema().types] == ["string", "binary", "string", "string"]
    rows = dataset.take_all()
    ray_records = sorted((row["key"], _content(row["image"], row["path"]), row["text"]) for row in rows)
    local = sorted((record.key, _content(record.image, record.path), record.text) for record in source)
    assert len(rows) == len(local) == 30
    assert ray_records == local
    if name == "parquet_paths":  # the same path strings, not only the same bytes
        assert sorted((row["key"], row["path"]) for row in rows) == sorted((r.key, r.path) for r in source)


def test_ray_needs_a_key_column_for_row_keys(ray_session, datasets):
    with pytest.raises(ValueError, match="give key_column"):
        open_source(datasets["parquet_hf"][0]).ray_dataset()
