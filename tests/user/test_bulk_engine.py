"""The local bulk engine end to end (embedded demo models): every input format gives the same rows, inline and
spawned workers agree, a record's row does not depend on its batch companions (greedy, sampled, CapFilt floats),
the output-folder rules (refusals naming what differs, overwrite, stale temporaries, JSONL = Parquet) and the
argument errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from blip_core.bulk import capfilt, caption_dataset, read_output
from blip_core.bulk.engine import DuplicateKeyError
from blip_core.bulk.records import MissingExtraError
from blip_core.bulk.shards import OutputExistsError
from blip_core.io.atomic import is_temp_name
from tests.helpers import bulk_data
from tests.helpers.bulk_scenes import CAPTIONER


def _listed(folder) -> list[str]:
    """The visible files of an output folder (not its hidden lock file)."""
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


OTHER_MODEL = CAPTIONER + "/"  # the same checkpoint named otherwise: a different job to the manifest

pytestmark = pytest.mark.filterwarnings("ignore:no model given")

FORMATS = {
    "folder_jsonl": lambda root: bulk_data.write_folder(root, "jsonl"),
    "folder_csv": lambda root: bulk_data.write_folder(root, "csv"),
    "folder_plain": lambda root: bulk_data.write_folder(root, ""),
    "parquet_bytes": bulk_data.write_parquet_bytes,
    "parquet_paths": bulk_data.write_parquet_paths,
    "parquet_hf": bulk_data.write_parquet_hf,
    "webdataset": bulk_data.write_tars,
}
ERRORS = {  # item number -> the reason its row names (the same whether the image came as a path or as bytes)
    26: "OSError: image file is truncated",
    27: "UnidentifiedImageError: cannot identify image file",
    28: "UnidentifiedImageError: cannot identify image file",
    29: "ValueError: the source has no image for this record",
}
SMALL = dict(batch_size=4, shard_size=5, workers=0)


def item_numbers(expected: list[bulk_data.Expected]) -> list[int]:
    """Each expected record's item number in `bulk_data.items()`, from its key (a name like `000000012`, as a file
    stem or alone, or a Hugging Face row `hf.parquet:12`); two photos share their bytes, so bytes cannot tell."""
    numbers = [int(re.fullmatch(r".*?(\d+)(\.\w+)?", entry.key).group(1)) for entry in expected]
    items = bulk_data.items()
    for number, entry in zip(numbers, expected, strict=True):
        file = Path(entry.path) if entry.path else None
        data = entry.data if entry.data is not None else file.read_bytes() if file and file.exists() else None
        assert (items[number].data, items[number].broken) == (data, entry.broken), entry.key
    return numbers


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("bulk_engine_inputs")
    return {name: writer(root) for name, writer in FORMATS.items()}


@pytest.fixture(scope="module")
def reference(datasets):
    """item number -> (caption, error) from one in-memory run over the Parquet bytes input."""
    path, expected = datasets["parquet_bytes"]
    summary = caption_dataset(path, **SMALL)
    assert summary.out_dir is None and summary.processed == 30
    assert [row["key"] for row in summary.rows] == [entry.key for entry in expected]
    pairs = zip(item_numbers(expected), summary.rows, strict=True)
    return {number: (row["caption"], row["error"]) for number, row in pairs}


def _small_parquet(path: Path, numbers: list[int], keys: list[str] | None = None) -> Path:
    """A Parquet file of the given items (keys: their names unless given), in the given order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    chosen = [bulk_data.items()[number] for number in numbers]
    table = pa.table(
        {
            "key": keys or [item.name for item in chosen],
            "jpg": pa.array([item.data for item in chosen], pa.binary()),
            "caption": pa.array([item.text for item in chosen], pa.string()),
        }
    )
    pq.write_table(table, path)
    return path


def test_reference_captions_are_per_image(reference):
    captions = [reference[number][0] for number in range(26)]
    assert all(isinstance(caption, str) and caption.strip() for caption in captions)
    assert len(set(captions)) >= 5  # each image captioned on its own, not one caption for all
    assert {number: reference[number] for number in ERRORS} == {
        number: (None, reference[number][1]) for number in ERRORS
    }
    for number, reason in ERRORS.items():
        assert reference[number][1].startswith(reason), (number, reference[number][1])
    assert all(reference[number][1] is None for number in range(26))


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_format_gives_the_same_rows(datasets, reference, name, tmp_path):
    path, expected = datasets[name]
    summary = caption_dataset(path, tmp_path / "out", **SMALL)
    rows = read_output(tmp_path / "out")
    assert [row["key"] for row in rows] == [entry.key for entry in expected]  # input order, each record once
    numbers = item_numbers(expected)
    wanted = [reference[number] for number in numbers]
    if name == "parquet_paths":  # its missing image is a path naming no file: that is the reason given
        assert numbers[-1] == 29 and rows[-1]["error"].startswith("FileNotFoundError: [Errno 2] No such file")
        wanted[-1] = (None, rows[-1]["error"])
    assert [(row["caption"], row["error"]) for row in rows] == wanted
    assert [row["text"] for row in rows] == [entry.text for entry in expected]
    broken = sum(entry.broken for entry in expected)
    assert summary.counts == {"records": len(expected), "failed": broken}
    assert (summary.processed, len(expected), broken) == ((29, 29, 3) if name == "folder_plain" else (30, 30, 4))
    shards = _listed(tmp_path / "out")
    assert shards == ["manifest.json"] + [f"part-{i:05d}.parquet" for i in range(-(-len(expected) // 5))]


def test_spawned_workers_write_the_same_rows_as_inline(datasets, tmp_path):
    path, _ = datasets["parquet_paths"]
    inline = caption_dataset(path, tmp_path / "inline", **SMALL)
    spawned = caption_dataset(path, tmp_path / "spawned", batch_size=4, shard_size=5, workers=2)
    assert spawned.counts == inline.counts == {"records": 30, "failed": 4}
    assert read_output(tmp_path / "spawned") == read_output(tmp_path / "inline")


SUBSET = [25, 2, 17, 28, 9, 0, 21, 13, 6]  # other companions in every batch of 4, another order, a broken one


@pytest.mark.parametrize("sampled", [False, True], ids=["greedy", "sampled"])
def test_caption_does_not_depend_on_batch_companions(datasets, reference, sampled, tmp_path):
    options = {"do_sample": True, "top_p": 0.9} if sampled else {}
    full = caption_dataset(datasets["parquet_bytes"][0], **SMALL, **options).rows
    subset = caption_dataset(_small_parquet(tmp_path / "subset.parquet", SUBSET), **SMALL, **options).rows
    by_key = {row["key"]: row for row in full}
    assert [row["key"] for row in subset] == [f"{number:09d}" for number in SUBSET]
    assert subset == [by_key[row["key"]] for row in subset]
    if sampled:  # sampling really sampled: some caption differs from the greedy one
        greedy = [reference[number][0] for number in SUBSET if number not in ERRORS]
        assert [row["caption"] for row in subset if row["error"] is None] != greedy


def test_capfilt_rows_do_not_depend_on_batch_companions(datasets, tmp_path):
    options = dict(SMALL, num_captions=2, threshold=0.0005)
    full = capfilt(datasets["parquet_bytes"][0], **options)
    subset = capfilt(_small_parquet(tmp_path / "subset.parquet", SUBSET), **options).rows
    by_key = {row["key"]: row for row in full.rows}
    floats = ("text_itm", "captions_itm", "text_itc", "captions_itc")
    for row in subset:  # texts and decisions exactly; scores to float32 rounding (a GEMM kernel may round a row
        other = by_key[row["key"]]  # differently by its position in the batch, on some CPUs)
        assert {k: v for k, v in row.items() if k not in floats} == {k: v for k, v in other.items() if k not in floats}
        for name in floats:
            mine, theirs = np.array(row[name], float), np.array(other[name], float)  # None: nan
            assert np.allclose(mine, theirs, rtol=0, atol=2e-6, equal_nan=True), name
    good = [row for row in full.rows if row["error"] is None]
    assert len(good) == 26 and all(len(row["captions"]) == len(row["captions_itm"]) == 2 for row in good)
    assert any(row["captions"][0] != row["captions"][1] for row in good)  # nucleus sampling, two draws
    assert full.counts["records"] == 30 and full.counts["failed"] == 4 and full.counts["captions"] == 52
    assert full.counts["web_texts"] == sum(row["text"] is not None for row in good)
    kept = sum(row["text_itm"] > 0.0005 for row in good if row["text"] is not None)
    assert full.counts["web_kept"] == kept


# Output-folder rules.
@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A finished 6-record caption output (shard size 2) and the input it came from."""
    root = tmp_path_factory.mktemp("bulk_rules")
    source = _small_parquet(root / "six.parquet", [0, 1, 2, 3, 26, 9])
    out = root / "out"
    summary = caption_dataset(source, out, batch_size=4, shard_size=2, workers=0)
    assert summary.counts == {"records": 6, "failed": 1} and summary.processed == 6
    return source, out, read_output(out)


def test_non_empty_folder_without_manifest_is_refused(small_run, tmp_path):
    source, _, rows = small_run
    (tmp_path / "notes.txt").write_text("mine\n")
    with pytest.raises(OutputExistsError, match="not empty and holds no bulk-job manifest") as caught:
        caption_dataset(source, tmp_path, batch_size=4, shard_size=2, workers=0)
    assert isinstance(caught.value, FileExistsError)
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]  # nothing written
    summary = caption_dataset(source, tmp_path, batch_size=4, shard_size=2, workers=0, overwrite=True)
    assert summary.processed == 6 and read_output(tmp_path) == rows


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"prompt": "a picture of"}, "prompt"),
        ({"num_beams": 2}, "generate"),
        ({"batch_size": 3}, "batch_size"),
        ({"seed": 1}, "seed"),
        ({"model": OTHER_MODEL}, "model"),
        ({"shard_size": 3}, "shard_size"),
        ({"output_format": "jsonl"}, "format"),
    ],
)
def test_a_different_job_is_refused_naming_what_differs(small_run, change, named):
    source, out, rows = small_run
    options = {"batch_size": 4, "shard_size": 2, "workers": 0, **change}
    with pytest.raises(OutputExistsError, match=rf"different job \(differs in {named}\b"):
        caption_dataset(source, out, **options)
    assert read_output(out) == rows


def test_capfilt_into_a_caption_output_is_refused(small_run):
    source, out, _ = small_run
    with pytest.raises(OutputExistsError, match="different job"):
        capfilt(source, out, batch_size=4, shard_size=2, workers=0)


def test_changed_input_is_refused_and_overwrite_replaces(small_run, tmp_path):
    _, _, rows = small_run
    folder = tmp_path / "images"
    folder.mkdir()
    for number in (0, 1, 9):
        item = bulk_data.items()[number]
        (folder / f"{item.name}{item.suffix}").write_bytes(item.data)
    out = tmp_path / "out"
    caption_dataset(folder, out, batch_size=4, shard_size=2, workers=0)
    before = read_output(out)
    assert [row["key"] for row in before] == ["000000000.jpg", "000000001.jpg", "000000009.png"]
    (folder / "000000002.jpg").write_bytes(bulk_data.items()[2].data)  # a file added
    with pytest.raises(OutputExistsError, match="input changed"):
        caption_dataset(folder, out, batch_size=4, shard_size=2, workers=0)
    (folder / "000000002.jpg").unlink()
    caption_dataset(folder, out, batch_size=4, shard_size=2, workers=0)  # the same input again: fine
    (folder / "000000001.jpg").write_bytes(bulk_data.items()[3].data)  # a file modified
    with pytest.raises(OutputExistsError, match="input changed"):
        caption_dataset(folder, out, batch_size=4, shard_size=2, workers=0)
    assert read_output(out) == before
    replaced = caption_dataset(folder, out, batch_size=4, shard_size=5, workers=0, overwrite=True)
    assert replaced.processed == 3 and _listed(out) == ["manifest.json", "part-00000.parquet"]
    after = read_output(out)
    assert after[1] == {**before[1], "caption": rows[3]["caption"]}  # now holds item 3's image
    assert [after[0], after[2]] == [before[0], before[2]]


def test_stale_temporaries_are_removed_on_resume(small_run, tmp_path):
    source, _, rows = small_run
    out = tmp_path / "out"
    caption_dataset(source, out, batch_size=4, shard_size=2, workers=0)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = [f".part-00001.parquet.blip-tmp-{pid}-0badc0de", f".manifest.json.blip-tmp-{pid}-12345678"]
    for name in stale:
        assert is_temp_name(name)
        (out / name).write_bytes(b"half a file")
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name not in stale}
    summary = caption_dataset(source, out, batch_size=4, shard_size=2, workers=0)
    assert summary.processed == 0 and summary.counts == {"records": 6, "failed": 1}
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes  # temporaries gone, nothing rewritten
    assert read_output(out) == rows


def test_jsonl_output_has_the_same_rows_as_parquet(small_run, tmp_path):
    source, _, rows = small_run
    summary = caption_dataset(source, tmp_path, batch_size=4, shard_size=2, workers=0, output_format="jsonl")
    assert _listed(tmp_path) == ["manifest.json"] + [f"part-0000{i}.jsonl" for i in range(3)]
    assert summary.counts == {"records": 6, "failed": 1}
    assert read_output(tmp_path) == rows


# Errors.
def test_duplicate_keys_name_both_records(tmp_path):
    source = _small_parquet(tmp_path / "dup.parquet", [0, 1, 2, 9], keys=["a", "b", "c", "a"])
    with pytest.raises(DuplicateKeyError, match=r"records 0 and 3 of the input share the key 'a'") as caught:
        caption_dataset(source, tmp_path / "out", workers=0)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("batch_size", 0),
        ("batch_size", -2),
        ("batch_size", 2.5),
        ("batch_size", True),
        ("shard_size", 0),
        ("shard_size", "5"),
        ("workers", -1),
        ("workers", 1.5),
        ("workers", True),
    ],
)
@pytest.mark.parametrize("to_folder", [False, True], ids=["memory", "folder"])
def test_bad_sizes_and_workers_are_refused_before_anything_is_written(small_run, tmp_path, option, value, to_folder):
    source, _, _ = small_run
    out = tmp_path / "out" if to_folder else None
    with pytest.raises(ValueError, match=rf"{option} must be a (positive|non-negative) integer, got {value!r}"):
        caption_dataset(source, out, **{"workers": 0, option: value})
    assert not (tmp_path / "out").exists()


def test_missing_pyarrow_names_the_extra_for_parquet_output(tmp_path, monkeypatch):
    folder = tmp_path / "images"
    folder.mkdir()
    for number in (0, 9):
        item = bulk_data.items()[number]
        (folder / f"{item.name}{item.suffix}").write_bytes(item.data)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    extra = r"pyarrow is not installed.*pip install 'blip-dual\[scale\]'"
    with pytest.raises(MissingExtraError, match=extra) as caught:
        caption_dataset(folder, tmp_path / "out", workers=0)
    assert isinstance(caught.value, ImportError) and not (tmp_path / "out").exists()
    summary = caption_dataset(folder, tmp_path / "out", workers=0, output_format="jsonl")  # JSONL needs no pyarrow
    assert summary.counts == {"records": 2, "failed": 0}
    assert [row["key"] for row in read_output(tmp_path / "out")] == ["000000000.jpg", "000000009.png"]


@pytest.mark.parametrize(
    ("option", "value"), [("ray_actors", 2), ("ray_address", "auto"), ("num_gpus", 1.0), ("actor_cpus", 1.0)]
)
def test_ray_options_with_the_local_engine_are_refused(small_run, tmp_path, option, value):
    source, _, _ = small_run
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused before any model is loaded
        with pytest.raises(ValueError, match=rf"{option} apply to engine='ray'"):
            caption_dataset(source, tmp_path / "out", workers=0, model=CAPTIONER, **{option: value})
    assert not (tmp_path / "out").exists()
