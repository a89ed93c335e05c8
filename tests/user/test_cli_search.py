"""`blip index build` and `blip search`, run as users run them (a subprocess), on the embedded demo retrieval
model, checked against a reference computed here from the model's own layers (not the code under test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blip_core.demo.tasks import DEMO_MODELS_DIR, MATCHER, held_out
from blip_core.tasks.embedding_store import make_store, read_store, write_store

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
DEMO = DEMO_MODELS_DIR / MATCHER
COUNT = 10


def blip(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "blip_core.cli", *map(str, args)], capture_output=True, text=True, env=env or ENV
    )


def records(out: subprocess.CompletedProcess) -> list[dict]:
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Held-out demo images (some in a sub-folder), an unreadable file, and the true captions."""
    root = tmp_path_factory.mktemp("corpus")
    data = held_out(COUNT, start=100)
    (root / "photos" / "more").mkdir(parents=True)
    paths = []
    for i, image in enumerate(data.images):
        path = root / "photos" / ("more" if i % 3 == 0 else "") / f"img{i:02d}.png"
        image.save(path)
        paths.append(str(path.resolve()))
    (root / "photos" / "broken.jpg").write_bytes(b"not an image")
    captions = [scene.caption for scene in data.scenes]
    (root / "captions.txt").write_text("\n".join(captions) + "\n\n", encoding="utf-8")
    return {"root": root, "paths": paths, "captions": captions, "images": data.images}


@pytest.fixture(scope="module")
def index(corpus):
    out = blip(
        "index",
        "build",
        corpus["root"] / "photos",
        "--out",
        corpus["root"] / "index",
        "--texts",
        corpus["root"] / "captions.txt",
        "--framework",
        "pt",
        "--batch-size",
        "4",
    )
    assert out.returncode == 1, out.stderr  # one unreadable image, reported and skipped
    assert "skipped" in out.stderr and "broken.jpg" in out.stderr
    assert f"{COUNT} images, {COUNT} texts (64-d" in out.stdout
    return corpus["root"] / "index"


@pytest.fixture(scope="module")
def reference(corpus):
    """Unit ITC features and ITM logits from the demo model's layers, in float64 where it matters."""
    torch = pytest.importorskip("torch")
    from blip_core import BlipProcessor
    from blip_torch import BlipForImageTextRetrieval

    model = BlipForImageTextRetrieval.from_pretrained(DEMO, torch_dtype=torch.float32).eval()
    processor = BlipProcessor.from_pretrained(DEMO)

    def unit(x):
        x = x.detach().double().numpy()
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def images(pil):
        pixels = torch.from_numpy(processor(images=pil, return_tensors="np")["pixel_values"])
        with torch.no_grad():
            return unit(model.vision_proj(model.vision_model(pixel_values=pixels).last_hidden_state[:, 0])), pixels

    def texts(strings):
        batch = processor(text=strings, padding=True, return_tensors="pt")
        with torch.no_grad():
            states = model.text_encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return unit(model.text_proj(states.last_hidden_state[:, 0])), batch

    def itm(pixels, batch):
        with torch.no_grad():
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], pixel_values=pixels)
        return out.itm_score[:, 1].double().numpy()

    image_features, pixels = images(corpus["images"])
    text_features, _ = texts(corpus["captions"])
    return {"images": image_features, "pixels": pixels, "texts": text_features, "embed_text": texts, "itm": itm}


def test_index_holds_the_reference_embeddings(index, corpus, reference):
    store = read_store(index)
    assert sorted(store.ids["images"]) == sorted(corpus["paths"]) and store.ids["texts"] == corpus["captions"]
    order = [corpus["paths"].index(name) for name in store.ids["images"]]
    np.testing.assert_allclose(store.vectors["images"], reference["images"][order], atol=1e-4)
    np.testing.assert_allclose(store.vectors["texts"], reference["texts"], atol=1e-4)
    assert store.metadata["model"] == str(DEMO.resolve()) and store.metadata["protocol"] == "transformers"


def test_text_search_ranks_by_cosine(index, corpus, reference):
    query = corpus["captions"][3]
    got = records(blip("search", index, query, "-k", "4", "--format", "jsonl"))
    cosine = reference["images"] @ reference["embed_text"]([query])[0][0]
    best = np.argsort(-cosine, kind="stable")[:4]
    assert [r["rank"] for r in got] == [1, 2, 3, 4]
    assert [r["id"] for r in got] == [corpus["paths"][i] for i in best]
    assert got[0]["id"] == corpus["paths"][3]  # the demo model finds the captioned image
    np.testing.assert_allclose([r["score"] for r in got], cosine[best], atol=1e-4)
    faiss = records(blip("search", index, query, "-k", "4", "--format", "jsonl", "--backend", "faiss"))
    assert [r["id"] for r in faiss] == [r["id"] for r in got]
    np.testing.assert_allclose([r["score"] for r in faiss], [r["score"] for r in got], atol=1e-5)


def test_rerank_scores_itm_logit_plus_cosine(index, corpus, reference):
    query = corpus["captions"][5]
    got = records(blip("search", index, query, "-k", "3", "--rerank", "6", "--format", "jsonl"))
    features, batch = reference["embed_text"]([query])
    cosine = reference["images"] @ features[0]
    pool = np.argsort(-cosine, kind="stable")[:6]
    repeated = {key: value.repeat(len(pool), 1) for key, value in batch.items()}
    scores = reference["itm"](reference["pixels"][pool], repeated) + cosine[pool]
    best = pool[np.argsort(-scores, kind="stable")[:3]]
    assert [r["id"] for r in got] == [corpus["paths"][i] for i in best]
    np.testing.assert_allclose([r["score"] for r in got], np.sort(scores)[::-1][:3], atol=1e-4)


def test_image_query_searches_texts_and_k_is_clamped(index, corpus, reference):
    got = records(blip("search", index, "--image", corpus["paths"][7], "-k", "50", "--format", "jsonl"))
    cosine = reference["texts"] @ reference["images"][7]
    assert len(got) == COUNT and [r["id"] for r in got] == [corpus["captions"][i] for i in np.argsort(-cosine)]
    np.testing.assert_allclose([r["score"] for r in got], np.sort(cosine)[::-1], atol=1e-4)
    images = records(
        blip("search", index, "--image", corpus["paths"][7], "-k", "1", "--target", "images", "--format", "jsonl")
    )
    assert images[0]["id"] == corpus["paths"][7] and abs(images[0]["score"] - 1.0) < 1e-4


def test_tensorflow_builds_and_searches_the_same(index, corpus, tmp_path):
    out = blip(
        "index",
        "build",
        *corpus["paths"],
        "--out",
        tmp_path / "tf",
        "--texts",
        corpus["root"] / "captions.txt",
        "--framework",
        "tf",
    )
    assert out.returncode == 0, out.stderr
    pt, tf = read_store(index), read_store(tmp_path / "tf")
    assert tf.metadata["framework"] == "tf" and tf.ids["texts"] == pt.ids["texts"]
    order = [pt.ids["images"].index(name) for name in tf.ids["images"]]
    np.testing.assert_allclose(tf.vectors["images"], pt.vectors["images"][order], atol=1e-4)
    np.testing.assert_allclose(tf.vectors["texts"], pt.vectors["texts"], atol=1e-4)
    args = ("search", index, corpus["captions"][2], "-k", "3", "--rerank", "5", "--format", "jsonl")
    on_pt, on_tf = records(blip(*args, "--framework", "pt")), records(blip(*args, "--framework", "tf"))
    assert [r["id"] for r in on_tf] == [r["id"] for r in on_pt]
    np.testing.assert_allclose([r["score"] for r in on_tf], [r["score"] for r in on_pt], atol=1e-4)


def test_existing_store_needs_force_or_append(index, corpus, tmp_path):
    before = (index / "store.json").read_bytes()
    out = blip("index", "build", corpus["root"] / "photos", "--out", index)
    assert out.returncode == 2 and out.stdout == "" and "--force" in out.stderr and "--append" in out.stderr
    assert (index / "store.json").read_bytes() == before
    copy = tmp_path / "copy"
    write_store(copy, read_store(index))
    extra = tmp_path / "extra.png"
    corpus["images"][0].transpose(0).save(extra)  # mirrored: a new image
    out = blip("index", "build", corpus["paths"][0], extra, "--out", copy, "--append")
    assert out.returncode == 0, out.stderr
    assert "blip: note: 1 already stored or repeated" in out.stderr
    grown = read_store(copy)
    assert grown.ids["images"][-1] == str(extra.resolve()) and grown.count("images") == COUNT + 1
    assert grown.ids["texts"] == corpus["captions"]


def test_errors_are_one_line_and_exit_2(index, corpus, tmp_path):
    cases = [
        (("search", tmp_path / "nowhere", "a dog"), "no embedding store at"),
        (("search", index, "a dog", "--image", corpus["paths"][0]), "one of them"),
        (("search", index, "a dog", "-k", "5", "--rerank", "2"), "--rerank must be at least -k (5)"),
        (
            ("search", index, "--image", corpus["paths"][0], "--target", "images", "-k", "2", "--rerank", "5"),
            "image-text pairs",
        ),
        (("search", index, "--image", tmp_path / "missing.png"), "missing.png"),
        (("index", "build", "--out", tmp_path / "empty"), "needs images"),
        (("index", "build", corpus["paths"][0], "--out", corpus["root"] / "photos"), "not an embedding store"),
    ]
    for args, message in cases:
        out = blip(*args)
        assert out.returncode == 2 and out.stdout == "", (args, out.stderr)
        assert message in out.stderr and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr


def test_store_of_another_dimension_is_refused(corpus, tmp_path):
    other = tmp_path / "other"
    write_store(other, make_store({"model": str(DEMO.resolve())}, images=(["/x.png"], np.eye(1, 32, dtype=np.float32))))
    out = blip("search", other, "a dog")
    assert out.returncode == 2 and "dimension 64 but" in out.stderr and "32-d" in out.stderr, out.stderr


def test_missing_faiss_names_the_extra(index, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "faiss.py").write_text("raise ImportError('faiss is not installed here')\n")
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(blocker), str(Path.cwd())])}
    out = blip("search", index, "a dog", "--backend", "faiss", env=env)
    assert out.returncode == 2 and "pip install 'blip-dual[search]'" in out.stderr, out.stderr


def test_original_protocol_cleans_texts_and_reranks_with_enc(corpus, reference, tmp_path):
    shouting = [caption.upper().replace(" ON ", " on: ") + "!!" for caption in corpus["captions"][:4]]
    (tmp_path / "shouting.txt").write_text("\n".join(shouting), encoding="utf-8")
    store_path = tmp_path / "original"
    out = blip(
        "index",
        "build",
        *corpus["paths"][:4],
        "--out",
        store_path,
        "--texts",
        tmp_path / "shouting.txt",
        "--protocol",
        "original",
    )
    assert out.returncode == 0, out.stderr
    store = read_store(store_path)
    assert store.ids["texts"] == shouting and store.metadata["protocol"] == "original"
    cleaned = [" ".join(text.lower().replace(":", " ").replace("!", " ").split()) for text in shouting]
    np.testing.assert_allclose(store.vectors["texts"], reference["embed_text"](cleaned)[0], atol=1e-4)
    got = records(blip("search", store_path, shouting[1], "-k", "2", "--rerank", "4", "--format", "jsonl"))
    from blip_core import BlipProcessor

    batch = BlipProcessor.from_pretrained(DEMO)(
        text=[cleaned[1]] * 4, padding="max_length", max_length=35, truncation=True, return_tensors="pt"
    )
    batch["input_ids"][:, 0] = 30523  # [ENC] in the ITM pass, as the original
    cosine = reference["images"][:4] @ reference["embed_text"]([cleaned[1]])[0][0]
    scores = reference["itm"](reference["pixels"][:4], batch) + cosine
    best = np.argsort(-scores, kind="stable")[:2]
    assert [r["id"] for r in got] == [corpus["paths"][i] for i in best]
    np.testing.assert_allclose([r["score"] for r in got], scores[best], atol=1e-4)
    out = blip("index", "build", corpus["paths"][5], "--out", store_path, "--append", "--protocol", "transformers")
    assert out.returncode == 2 and "built with --protocol original" in out.stderr, out.stderr
