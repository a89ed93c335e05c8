"""The Ray Data engine (`engine="ray"`, 2 model actors on a local Ray of 4 logical CPUs) writes, record by record,
exactly the local engine's rows: captions and CapFilt, error rows included, from a folder, Parquet and WebDataset.

Rows are compared by key: keys, captions, errors and keep decisions exactly; the ITM probabilities and ITC cosines
within 2e-6. Ray forms its own batches, and a matrix product may round a row differently at another position in
its batch (by a float32 ulp or so), so scores are equal up to float32 rounding, not bit for bit.
"""

from __future__ import annotations

import os

import pytest

from blip_core.bulk import capfilt, caption_dataset, read_output
from blip_core.bulk.shards import OutputExistsError
from tests.helpers import bulk_data
from tests.helpers.bulk_scenes import BROKEN, CAPTIONER, FILTER, assert_same_rows, write_scenes

pytestmark = pytest.mark.xdist_group("ray")  # one local Ray at a time: these share a pytest-xdist worker

ray = pytest.importorskip("ray")

CAPFILT = {"captioner": CAPTIONER, "filter_model": FILTER, "num_captions": 2, "seed": 3, "temperature": 2.0}
CAPFILT |= {"max_new_tokens": 20, "framework": "pt", "batch_size": 4}
CAPTION = {"model": CAPTIONER, "framework": "pt", "batch_size": 4, "num_beams": 2}


@pytest.fixture(scope="module", autouse=True)
def ray_session():
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray_inputs")
    scenes = write_scenes(root / "scenes", broken=True)
    parquet, _ = bulk_data.write_parquet_bytes(root)
    tars, _ = bulk_data.write_tars(root)
    return {"scenes": root / "scenes", "written": scenes, "parquet": parquet, "tars": tars}


def _by_key(out_dir) -> dict[str, dict]:
    rows = read_output(out_dir)
    by_key = {row["key"]: row for row in rows}
    assert len(by_key) == len(rows)
    return by_key


def _both(run, source, tmp_path, **options) -> tuple[dict, dict, object]:
    """(local rows by key, Ray rows by key, the Ray summary) of one job."""
    local = run(source, tmp_path / "local", workers=0, **options)
    remote = run(source, tmp_path / "ray", engine="ray", ray_actors=2, **options)
    assert remote.engine == "ray" and remote.counts == local.counts
    assert remote.processed == local.processed == local.counts["records"]
    return _by_key(tmp_path / "local"), _by_key(tmp_path / "ray"), remote


def test_capfilt_folder_ray_equals_local(inputs, tmp_path):
    local, remote, summary = _both(capfilt, inputs["scenes"], tmp_path, **CAPFILT)
    assert sorted(local) == sorted([scene.key for scene in inputs["written"]] + list(BROKEN))
    assert_same_rows(remote, local)
    for name in BROKEN:
        assert remote[name]["error"] and remote[name]["captions"] is None and remote[name]["text_itm"] is None
    assert summary.counts == {
        "records": 18,
        "failed": 2,
        "web_texts": 15,
        "web_kept": 8,
        "captions": 32,
        "captions_kept": sum(sum(row["captions_kept"]) for row in local.values() if row["error"] is None),
    }


def test_ray_output_started_again_does_nothing(inputs, tmp_path):
    """A finished Ray output: the same call does nothing and touches no file; another job is refused there."""
    out = tmp_path / "out"
    first = caption_dataset(inputs["scenes"], out, engine="ray", ray_actors=2, **CAPTION)
    files = {path.name: path.stat().st_mtime_ns for path in out.iterdir()}
    again = caption_dataset(inputs["scenes"], out, engine="ray", ray_actors=2, **CAPTION)
    assert (again.processed, again.counts) == (0, first.counts)
    assert {path.name: path.stat().st_mtime_ns for path in out.iterdir()} == files
    with pytest.raises(OutputExistsError, match=r"different job \(differs in generate: "):
        caption_dataset(inputs["scenes"], out, engine="ray", ray_actors=2, **{**CAPTION, "num_beams": 3})


def test_caption_parquet_ray_equals_local_and_overwrite(inputs, tmp_path):
    """Parquet with 4 broken images: identical rows, error rows included. A non-empty foreign folder is refused,
    then replaced with overwrite=True."""
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "notes.txt").write_text("someone else's file\n")
    with pytest.raises(OutputExistsError, match="not empty"):
        caption_dataset(inputs["parquet"], tmp_path / "ray", engine="ray", ray_actors=2, **CAPTION)
    local, remote, summary = _both(caption_dataset, inputs["parquet"], tmp_path, overwrite=True, **CAPTION)
    expected = [item for item in bulk_data.items()]
    assert sorted(remote) == [item.name for item in expected]
    assert_same_rows(remote, local)
    assert sorted(key for key, row in remote.items() if row["error"]) == [i.name for i in expected if i.broken]
    assert summary.counts == {"records": 30, "failed": 4}


def test_capfilt_webdataset_ray_equals_local(inputs, tmp_path):
    local, remote, summary = _both(capfilt, inputs["tars"], tmp_path, **CAPFILT)
    assert sorted(remote) == [item.name for item in bulk_data.items()]
    assert_same_rows(remote, local)
    assert {key: row["text"] for key, row in remote.items()} == {i.name: i.text for i in bulk_data.items()}
    assert summary.counts["failed"] == 4


def test_too_many_actors_is_a_value_error(inputs, tmp_path):
    """4 actors of 1 CPU on 4 CPUs would starve reading and preprocessing: refused before anything runs."""
    with pytest.raises(ValueError, match="4 model actors of 1 CPUs leave no CPU"):
        caption_dataset(inputs["scenes"], tmp_path / "out", engine="ray", ray_actors=4, **CAPTION)
    assert not os.path.exists(tmp_path / "out")
    with pytest.raises(ValueError, match="ray_actors must be a positive integer"):
        caption_dataset(inputs["scenes"], tmp_path / "out", engine="ray", ray_actors=0, **CAPTION)


def test_ray_needs_an_output_folder_and_local_refuses_ray_options(inputs):
    with pytest.raises(ValueError, match="give an output folder"):
        caption_dataset(inputs["scenes"], None, engine="ray", **CAPTION)
    with pytest.raises(ValueError, match="ray_actors apply to engine='ray'"):
        caption_dataset(inputs["scenes"], None, ray_actors=2, **CAPTION)


def test_duplicate_keys_stop_a_ray_run(inputs, tmp_path):
    """Ray reads in parallel, so keys are checked when the rows are back: a repeated key is a DuplicateKeyError
    naming it, and the folder gets no complete manifest (the same command then asks for overwrite)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from blip_core.bulk.engine import DuplicateKeyError
    from blip_core.bulk.shards import MANIFEST

    chosen = bulk_data.items()[:4]
    table = pa.table(
        {
            "key": ["a", "b", "c", "a"],
            "jpg": pa.array([item.data for item in chosen], pa.binary()),
            "caption": pa.array([item.text for item in chosen], pa.string()),
        }
    )
    pq.write_table(table, tmp_path / "dup.parquet")
    with pytest.raises(DuplicateKeyError, match="keys occur more than once in the input, e.g. 'a'"):
        caption_dataset(tmp_path / "dup.parquet", tmp_path / "out", engine="ray", ray_actors=2, **CAPTION)
    assert not (tmp_path / "out" / MANIFEST).exists()
    with pytest.raises(OutputExistsError, match="holds no bulk-job manifest"):
        caption_dataset(tmp_path / "dup.parquet", tmp_path / "out", engine="ray", ray_actors=2, **CAPTION)
