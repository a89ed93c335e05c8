"""The embedding store folder: exact round trips, atomic writes, --force/--append rules, and clear errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from blip_core.tasks import embedding_store
from blip_core.tasks.embedding_store import StoreError, make_store, read_store, write_store

META = {"model": "/models/itm", "framework": "pt", "protocol": "transformers"}


def unit(rows: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def sample_store(images: int = 5, texts: int = 3, seed: int = 0):
    parts = {"images": ([f"/photos/{i}.jpg" for i in range(images)], unit(images, seed=seed))}
    if texts:
        parts["texts"] = ([f"caption {i} é" for i in range(texts)], unit(texts, seed=seed + 1))
    return make_store(META, **parts)


@pytest.mark.parametrize("mmap", [False, True])
def test_round_trip_is_exact(tmp_path, mmap):
    store = sample_store()
    write_store(tmp_path / "index", store)
    back = read_store(tmp_path / "index", mmap=mmap)
    assert back.kinds == ("images", "texts")
    for kind in back.kinds:
        assert back.ids[kind] == store.ids[kind]
        assert np.asarray(back.vectors[kind]).dtype == np.float32
        np.testing.assert_array_equal(np.asarray(back.vectors[kind]), store.vectors[kind])
    assert back.metadata == {**META, "dimension": 8} and back.dimension == 8
    table = json.loads((tmp_path / "index" / "store.json").read_text(encoding="utf-8"))
    assert table["metadata"]["counts"] == {"images": 5, "texts": 3}
    assert sorted(os.listdir(tmp_path)) == ["index"]  # no temporaries left


def test_rows_are_normalised_and_checked():
    raw = np.array([[3.0, 4.0], [0.0, 2.0]])
    store = make_store(META, texts=(["a", "b"], raw))
    np.testing.assert_allclose(store.vectors["texts"], [[0.6, 0.8], [0.0, 1.0]], atol=1e-7)
    with pytest.raises(StoreError, match="row 1 is all zeros"):
        make_store(META, images=(["a", "b"], [[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(StoreError, match="NaN"):
        make_store(META, images=(["a"], [[np.nan, 1.0]]))
    with pytest.raises(StoreError, match="images ids: 2 for 1"):
        make_store(META, images=(["a", "b"], [[1.0, 0.0]]))
    with pytest.raises(StoreError, match="duplicate texts ids"):
        make_store(META, texts=(["a", "a"], unit(2)))
    with pytest.raises(StoreError, match="differ in dimension"):
        make_store(META, images=(["a"], unit(1, 8)), texts=(["b"], unit(1, 4)))


def test_existing_store_needs_force_and_force_replaces(tmp_path):
    target = tmp_path / "index"
    write_store(target, sample_store(seed=0))
    with pytest.raises(FileExistsError, match="--force"):
        write_store(target, sample_store(seed=5))
    np.testing.assert_array_equal(read_store(target).vectors["images"], sample_store(seed=0).vectors["images"])
    write_store(target, sample_store(images=2, texts=0, seed=5), mode="force")
    back = read_store(target)
    assert back.kinds == ("images",) and back.count("images") == 2
    np.testing.assert_array_equal(back.vectors["images"], sample_store(images=2, texts=0, seed=5).vectors["images"])
    assert not (target / "text_embeddings.npy").exists()


def test_a_folder_that_is_not_a_store_is_never_replaced(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.jpg").write_bytes(b"the user's photo")
    for mode in ("new", "force", "append"):
        with pytest.raises(FileExistsError, match="not an embedding store"):
            write_store(photos, sample_store(), mode=mode)
    assert os.listdir(photos) == ["cat.jpg"]
    empty = tmp_path / "empty"
    empty.mkdir()
    write_store(empty, sample_store())  # an empty folder made for the store is fine
    assert read_store(empty).count("images") == 5


def test_failed_write_keeps_the_old_store(tmp_path, monkeypatch):
    target = tmp_path / "index"
    write_store(target, sample_store(seed=0))
    before = {name: (target / name).read_bytes() for name in os.listdir(target)}
    saved = []

    def failing_save(file, array):
        saved.append(file)
        if len(saved) == 2:
            raise OSError(28, "No space left on device")
        with open(file, "wb") as stream:
            np.lib.format.write_array(stream, array)

    monkeypatch.setattr(embedding_store.np, "save", failing_save)
    with pytest.raises(OSError, match="No space"):
        write_store(target, sample_store(seed=9), mode="force")
    assert {name: (target / name).read_bytes() for name in os.listdir(target)} == before
    assert sorted(os.listdir(tmp_path)) == ["index"]


def test_append_adds_entries_and_refuses_another_model(tmp_path):
    target = tmp_path / "index"
    first = sample_store(images=3, texts=0, seed=0)
    write_store(target, first, mode="append")  # creates it
    extra = make_store(META, images=(["/photos/new.jpg"], unit(1, seed=7)), texts=(["new text"], unit(1, seed=8)))
    write_store(target, extra, mode="append")
    back = read_store(target)
    assert back.ids["images"] == [*first.ids["images"], "/photos/new.jpg"] and back.ids["texts"] == ["new text"]
    np.testing.assert_array_equal(back.vectors["images"], np.concatenate([first.vectors["images"], unit(1, seed=7)]))
    with pytest.raises(StoreError, match="dimension 8, not 4"):
        write_store(target, make_store(META, images=(["/x.jpg"], unit(1, 4))), mode="append")
    with pytest.raises(StoreError, match="model '/models/itm', not '/models/other'"):
        write_store(target, make_store({**META, "model": "/models/other"}, images=(["/x.jpg"], unit(1))), "append")
    with pytest.raises(StoreError, match="duplicate images ids"):
        write_store(target, make_store(META, images=(["/photos/new.jpg"], unit(1))), mode="append")
    assert read_store(target).count("images") == 4


def test_reading_bad_stores_names_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="no embedding store at"):
        read_store(tmp_path / "missing")
    with pytest.raises(StoreError, match="has no store.json"):
        read_store(tmp_path)
    target = tmp_path / "index"
    write_store(target, sample_store())
    table_path = target / "store.json"
    table = json.loads(table_path.read_text(encoding="utf-8"))
    for change, message in [
        ({"version": 2}, "store version 2"),
        ({"format": "other"}, "is not a blip-dual-embedding-store table"),
        ({"images": {"count": 5, "ids": ["a"] * 5}}, "duplicate images ids"),
        ({"images": {"count": 4, "ids": ["a", "b", "c", "d"]}}, "images ids: 4 for 5"),
        ({"metadata": {"model": "m", "dimension": 16}}, r"expected float32 \(N, 16\)"),
    ]:
        table_path.write_text(json.dumps({**table, **change}), encoding="utf-8")
        with pytest.raises(StoreError, match=message):
            read_store(target)
    table_path.write_text("{not json", encoding="utf-8")
    with pytest.raises(StoreError, match="not valid JSON"):
        read_store(target)
    table_path.write_text(json.dumps(table), encoding="utf-8")
    np.save(target / "image_embeddings.npy", np.zeros((5, 8), np.float64))
    with pytest.raises(StoreError, match="holds float64"):
        read_store(target)
    (target / "image_embeddings.npy").write_bytes(b"junk")
    with pytest.raises(StoreError, match="not a NumPy array file"):
        read_store(target)
    (target / "image_embeddings.npy").unlink()
    with pytest.raises(FileNotFoundError, match="image_embeddings.npy is missing"):
        read_store(target)
