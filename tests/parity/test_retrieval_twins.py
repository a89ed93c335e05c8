"""Twin tests of retrieval (issue 15 items 3-4): the ITC/ITM feature methods of `BlipForImageTextRetrieval`, and
`blip_core.tasks.retrieval` run through blip_torch and blip_tf from one checkpoint, every output compared."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import tensorflow as tf
import torch

import blip_tf
import blip_torch
from blip_core import BlipImageProcessor, BlipProcessor, BlipTokenizer
from blip_core.checkpoints.sources import save_safetensors
from blip_core.processing.tokenization import BUNDLED_VOCAB_FILE
from blip_core.tasks.retrieval import embed_images, embed_texts, rerank, retrieve
from blip_core.weights import saved_names
from tests.helpers.compare import assert_outputs_close
from tests.helpers.tiny import seeded_weights, tiny_config

NAME = "BlipForImageTextRetrieval"
TEXTS = [
    "A red square on a BLUE background.",
    "two green circles",
    "a dog (brown) on a beach!",
    "three yellow triangles; small",
    "a cat",
    "an empty white picture with nothing in it at all",
    "a red square",
]


def _images(count: int, size: int = 48) -> list[PIL.Image.Image]:
    rng = np.random.RandomState(7)
    return [PIL.Image.fromarray(rng.randint(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(count)]


@pytest.fixture(scope="module")
def tiny_twins(tiny_checkpoints):
    folder = tiny_checkpoints[NAME]
    return blip_torch.BlipForImageTextRetrieval.from_pretrained(
        folder
    ), blip_tf.TFBlipForImageTextRetrieval.from_pretrained(folder)


def write_seeded_retrieval(folder: Path) -> Path:
    """A tiny seeded retrieval checkpoint with the real vocabulary size (so [ENC] 30523 exists) and its processor."""
    config = tiny_config(text_config={"vocab_size": 30524, "bos_token_id": 30522, "sep_token_id": 102})
    weights = seeded_weights(NAME, config, seed=5)
    folder.mkdir(parents=True, exist_ok=True)
    save_safetensors(
        folder / "model.safetensors", {name: weights[name] for name in saved_names(list(weights), NAME, config)}
    )
    config.architectures = [NAME]
    config.save_pretrained(folder)
    BlipProcessor(BlipImageProcessor(size=40), BlipTokenizer(vocab_file=BUNDLED_VOCAB_FILE)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def small_twins(tmp_path_factory):
    folder = write_seeded_retrieval(tmp_path_factory.mktemp("seeded_retrieval"))
    return (
        blip_torch.BlipForImageTextRetrieval.from_pretrained(folder),
        blip_tf.TFBlipForImageTextRetrieval.from_pretrained(folder),
        BlipProcessor.from_pretrained(folder),
    )


def _tiny_inputs() -> dict[str, np.ndarray]:
    rng = np.random.RandomState(3)
    ids = rng.randint(4, 97, size=(3, 6)).astype(np.int64)
    mask = np.ones((3, 6), np.int64)
    mask[1, 4:] = 0
    mask[2, 2:] = 0
    return {"pixel_values": rng.randn(3, 3, 40, 40).astype(np.float32), "input_ids": ids, "attention_mask": mask}


def _both(tiny_twins, method: str, **arrays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    torch_model, tf_model = tiny_twins
    with torch.no_grad():
        expected = getattr(torch_model, method)(**{k: torch.from_numpy(v.copy()) for k, v in arrays.items()})
    actual = getattr(tf_model, method)(**{k: tf.constant(v) for k, v in arrays.items()})
    return expected.numpy(), actual.numpy()


def test_feature_methods_twin_and_equal_forward(tiny_twins):
    inputs = _tiny_inputs()
    text = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
    image_pt, image_tf = _both(tiny_twins, "get_image_features", pixel_values=inputs["pixel_values"])
    text_pt, text_tf = _both(tiny_twins, "get_text_features", **text)
    multi_pt, multi_tf = _both(tiny_twins, "get_multimodal_features", **inputs)
    assert image_pt.shape == text_pt.shape == (3, 10) and multi_pt.shape == (3, 20)
    assert_outputs_close(
        {"image": image_tf, "text": text_tf, "multi": multi_tf}, {"image": image_pt, "text": text_pt, "multi": multi_pt}
    )
    np.testing.assert_allclose(np.linalg.norm(image_pt, axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(text_pt, axis=-1), 1.0, atol=1e-5)
    torch_model, _ = tiny_twins
    with torch.no_grad():
        tensors = {k: torch.from_numpy(v.copy()) for k, v in inputs.items()}
        cosine = torch_model(**tensors, use_itm_head=False).itm_score.numpy()
        itm = torch_model(**tensors, use_itm_head=True).itm_score.numpy()
        head = torch_model.itm_head(torch.from_numpy(multi_pt)).numpy()
    np.testing.assert_allclose(image_pt @ text_pt.T, cosine, atol=1e-5)
    np.testing.assert_allclose(head, itm, atol=1e-5)


def test_multimodal_features_reuse_image_states(tiny_twins):
    inputs = _tiny_inputs()
    torch_model, tf_model = tiny_twins
    with torch.no_grad():
        states = torch_model.vision_model(pixel_values=torch.from_numpy(inputs["pixel_values"])).last_hidden_state
        reused = torch_model.get_multimodal_features(
            input_ids=torch.from_numpy(inputs["input_ids"]), image_embeds=states
        ).numpy()
        direct = torch_model.get_multimodal_features(
            torch.from_numpy(inputs["input_ids"]), torch.from_numpy(inputs["pixel_values"])
        ).numpy()
    np.testing.assert_allclose(reused, direct, atol=1e-5)
    tf_reused = tf_model.get_multimodal_features(input_ids=inputs["input_ids"], image_embeds=states.numpy()).numpy()
    assert_outputs_close({"m": tf_reused}, {"m": direct})


@pytest.mark.parametrize("framework", [0, 1], ids=["pt", "tf"])
def test_feature_methods_refuse_bad_input(tiny_twins, framework):
    model = tiny_twins[framework]
    inputs = _tiny_inputs()
    with pytest.raises(ValueError, match="pixel_values"):
        model.get_image_features(None)
    with pytest.raises(ValueError, match="pixel_values"):
        model.get_multimodal_features(inputs["input_ids"] if framework else torch.from_numpy(inputs["input_ids"]))
    pixels = inputs["pixel_values"][:2]
    ids = inputs["input_ids"]
    if not framework:
        pixels, ids = torch.from_numpy(pixels), torch.from_numpy(ids)
    with pytest.raises(ValueError):
        model.get_multimodal_features(ids, pixels)


@pytest.mark.parametrize("protocol", ["transformers", "original"])
def test_retrieve_twins(small_twins, protocol):
    torch_model, tf_model, processor = small_twins
    images = _images(5)
    expected = retrieve(torch_model, processor, images, TEXTS, k=3, protocol=protocol, batch_size=4)
    actual = retrieve(tf_model, processor, images, TEXTS, k=3, protocol=protocol, batch_size=4)
    assert_outputs_close(vars(actual), vars(expected))
    assert expected.image_to_text.shape == (5, 7) and expected.text_to_image.shape == (7, 5)
    assert ((expected.image_to_text != -100).sum(axis=1) == 3).all()
    assert ((expected.text_to_image != -100).sum(axis=1) == 3).all()


@pytest.mark.parametrize("protocol", ["transformers", "original"])
def test_rerank_twins_and_matches_retrieve(small_twins, protocol):
    torch_model, tf_model, processor = small_twins
    images = _images(5)
    full = retrieve(torch_model, processor, images, TEXTS, k=100, protocol=protocol)
    for model in (torch_model, tf_model):
        by_image = rerank(model, processor, texts=TEXTS, query_image=images[2], candidates=[6, 0, 3], protocol=protocol)
        np.testing.assert_allclose(by_image, full.image_to_text[2, [6, 0, 3]], atol=1e-4)
        by_text = rerank(
            model, processor, images=images, query_text=TEXTS[1], candidates=[4, 1], protocol=protocol, batch_size=1
        )
        np.testing.assert_allclose(by_text, full.text_to_image[1, [4, 1]], atol=1e-4)
        given = rerank(
            model, processor, images=images, query_text=TEXTS[1], candidates=[4], itc=[0.5], protocol=protocol
        )
        np.testing.assert_allclose(given, full.text_to_image[1, [4]] - full.similarity[4, 1] + 0.5, atol=1e-4)


def test_embed_functions_equal_the_model_methods(small_twins, capsys):
    torch_model, tf_model, processor = small_twins
    images = _images(3)
    for model in (torch_model, tf_model):
        vectors = embed_images(model, processor, images, batch_size=2, progress=True)
        texts = embed_texts(model, processor, TEXTS, batch_size=3)
        pixels = processor(images=images, return_tensors="np")["pixel_values"]
        tokens = processor(text=TEXTS, padding=True, return_tensors="np")
        if model is torch_model:
            with torch.no_grad():
                expected_images = model.get_image_features(torch.from_numpy(pixels)).numpy()
                expected_texts = model.get_text_features(
                    torch.from_numpy(tokens["input_ids"]), torch.from_numpy(tokens["attention_mask"])
                ).numpy()
        else:
            expected_images = model.get_image_features(pixels).numpy()
            expected_texts = model.get_text_features(tokens["input_ids"], tokens["attention_mask"]).numpy()
        np.testing.assert_allclose(vectors, expected_images, atol=1e-5)
        np.testing.assert_allclose(texts, expected_texts, atol=1e-5)
    assert "images" in capsys.readouterr().err  # the tqdm bar


def test_errors_name_the_problem(small_twins, tiny_twins):
    model, _, processor = small_twins
    images = _images(2)
    with pytest.raises(ValueError, match="protocol must be one of"):
        retrieve(model, processor, images, TEXTS, protocol="paper")
    for k in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            retrieve(model, processor, images, TEXTS, k=k)
    with pytest.raises(ValueError, match="needs images and texts"):
        retrieve(model, processor, [], TEXTS)
    with pytest.raises(TypeError, match="must be a string"):
        retrieve(model, processor, images, ["a", 3])
    with pytest.raises(TypeError, match="BlipForImageTextRetrieval"):
        retrieve(object(), processor, images, TEXTS)
    with pytest.raises(ValueError, match=r"\[ENC\]"):
        retrieve(tiny_twins[0], processor, images, TEXTS, protocol="original")
    with pytest.raises(ValueError, match="exactly one"):
        rerank(model, processor, texts=TEXTS, candidates=[0])
    with pytest.raises(ValueError, match="needs texts"):
        rerank(model, processor, images=images, query_image=images[0], candidates=[0])
    with pytest.raises(ValueError, match="outside texts"):
        rerank(model, processor, texts=TEXTS, query_image=images[0], candidates=[0, 7])
    with pytest.raises(ValueError, match="non-empty sequence"):
        rerank(model, processor, texts=TEXTS, query_image=images[0], candidates=[])
    with pytest.raises(ValueError, match="itc has 1 values for 2"):
        rerank(model, processor, images=images, query_text="a", candidates=[0, 1], itc=[0.1])
    with pytest.raises(TypeError, match="query_text must be a string"):
        rerank(model, processor, images=images, query_text=b"a", candidates=[0])


@pytest.mark.parametrize("framework", [0, 1], ids=["pt", "tf"])
def test_repeated_texts_score_exactly_alike(small_twins, framework):
    """A caption shared by several images (common in COCO) is encoded once: its copies tie exactly, so their order
    is `argsort`'s, the same in both frameworks, never float noise."""
    model, processor = small_twins[framework], small_twins[2]
    texts = [TEXTS[0], TEXTS[1], TEXTS[0], TEXTS[2], TEXTS[0]]
    scores = retrieve(model, processor, _images(4), texts, k=5, batch_size=2)
    for matrix in (scores.similarity, scores.image_to_text, scores.text_to_image.T):
        np.testing.assert_array_equal(matrix[:, 0], matrix[:, 2])
        np.testing.assert_array_equal(matrix[:, 0], matrix[:, 4])
