"""BlipProcessor: the Hub file set, key order, text/image combinations and `.to`."""

from __future__ import annotations

import numpy as np
import pytest

from blip_core import BlipImageProcessor, BlipProcessor, BlipTokenizer
from tests.helpers.golden import FIXTURES
from tests.helpers.images import base_rgb


@pytest.fixture(scope="module")
def processor():
    return BlipProcessor(BlipImageProcessor(size=24), BlipTokenizer.from_pretrained(FIXTURES / "tokenizer"))


def test_images_and_text(processor):
    out = processor(images=base_rgb(), text="a picture of", return_tensors="np")
    assert list(out) == ["pixel_values", "input_ids", "attention_mask"]
    assert out["pixel_values"].shape == (1, 3, 24, 24)
    assert out["input_ids"].tolist() == [[101, 1037, 3861, 1997, 102]]
    assert np.array_equal(out.pixel_values, processor.image_processor(base_rgb(), return_tensors="np")["pixel_values"])


def test_text_only_and_images_only(processor):
    assert list(processor(text=["a", "b c"], padding=True)) == ["input_ids", "attention_mask"]
    assert list(processor(images=[base_rgb(), base_rgb(seed=2)], return_tensors="np")) == ["pixel_values"]
    with pytest.raises(ValueError, match="needs images, text, or both"):
        processor()


def test_image_overrides_pass_through(processor):
    out = processor(images=base_rgb(), size={"height": 8, "width": 10}, return_tensors="np")
    assert out["pixel_values"].shape == (1, 3, 8, 10)


def test_to_casts_only_floating(processor):
    torch = pytest.importorskip("torch")
    out = processor(images=base_rgb(), text="a cat", return_tensors="pt").to("cpu", torch.bfloat16)
    assert out["pixel_values"].dtype == torch.bfloat16
    assert out["input_ids"].dtype == torch.int64
    out = processor(images=base_rgb(), text="a cat", return_tensors="pt").to(torch.float16)
    assert out.pixel_values.dtype == torch.float16 and out.attention_mask.dtype == torch.int64


def test_save_and_load_hub_file_set(tmp_path, processor):
    processor.save_pretrained(tmp_path)
    names = {path.name for path in tmp_path.iterdir()}
    assert names == {
        "added_tokens.json",  # [DEC] and [ENC], beyond BERT's vocabulary (BlipTokenizer.save_pretrained)
        "preprocessor_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
    }
    again = BlipProcessor.from_pretrained(tmp_path)
    a = processor(images=base_rgb(), text=["a cat", "two red circles"], padding=True, return_tensors="np")
    b = again(images=base_rgb(), text=["a cat", "two red circles"], padding=True, return_tensors="np")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert again.batch_decode(b["input_ids"], skip_special_tokens=True) == ["a cat", "two red circles"]


def test_type_checks():
    with pytest.raises(TypeError, match="image_processor must be"):
        BlipProcessor("x", "y")


FRAMEWORK_MODULES = {"np": None, "pt": "torch", "tf": "tensorflow"}


def _shape_and_dtype(value):
    array = value if isinstance(value, np.ndarray) else value.numpy()
    return array.shape, str(array.dtype)


@pytest.mark.parametrize("fast", [False, True], ids=["BlipImageProcessor", "BlipImageProcessorFast"])
@pytest.mark.parametrize("framework", sorted(FRAMEWORK_MODULES))
def test_empty_lists_give_empty_batches(framework, fast):
    """transformers raises IndexError for [] images and [] text; here they are batches of 0 rows."""
    if FRAMEWORK_MODULES[framework]:
        pytest.importorskip(FRAMEWORK_MODULES[framework])
    from blip_core import BlipImageProcessorFast

    image_processor = (BlipImageProcessorFast if fast else BlipImageProcessor)(size={"height": 24, "width": 20})
    processor = BlipProcessor(image_processor, BlipTokenizer.from_pretrained(FIXTURES / "tokenizer"))
    ids_dtype = "int32" if framework == "tf" else "int64"
    pixels = processor(images=[], return_tensors=framework)["pixel_values"]
    assert _shape_and_dtype(pixels) == ((0, 3, 24, 20), "float32")
    assert _shape_and_dtype(image_processor([], return_tensors=framework)["pixel_values"]) == (
        (0, 3, 24, 20),
        "float32",
    )
    both = processor(images=[], text=[], return_tensors=framework)
    assert list(both) == ["pixel_values", "input_ids", "attention_mask"]
    assert _shape_and_dtype(both["input_ids"]) == ((0, 0), ids_dtype)
    assert _shape_and_dtype(both["attention_mask"]) == ((0, 0), ids_dtype)
    padded = processor(text=[], padding="max_length", max_length=16, return_tensors=framework)
    assert _shape_and_dtype(padded["input_ids"]) == ((0, 16), ids_dtype)


@pytest.mark.parametrize("fast", [False, True], ids=["BlipImageProcessor", "BlipImageProcessorFast"])
def test_empty_lists_without_return_tensors_and_other_empty_forms(processor, fast):
    from blip_core import BlipImageProcessorFast

    image_processor = (BlipImageProcessorFast if fast else BlipImageProcessor)(size=8)
    assert image_processor([])["pixel_values"] == []
    assert image_processor([[], []])["pixel_values"] == []  # nested empty lists flatten to none
    assert image_processor(np.zeros((0, 3, 9, 9), np.uint8), return_tensors="np")["pixel_values"].shape == (0, 3, 8, 8)
    raw = image_processor([], do_rescale=False, do_normalize=False, return_tensors="np")["pixel_values"]
    assert raw.shape == (0, 3, 8, 8) and raw.dtype == np.uint8  # the dtype a non-empty batch would have
    last = image_processor([], data_format="channels_last", return_tensors="np")["pixel_values"]
    assert last.shape == (0, 8, 8, 3)
    out = processor(text=[])
    assert out["input_ids"] == [] and out["attention_mask"] == []
    assert list(processor(text=[], return_attention_mask=False, return_tensors="np")) == ["input_ids"]


def test_empty_torch_batch_tensor():
    torch = pytest.importorskip("torch")
    out = BlipImageProcessor(size=8)(torch.zeros((0, 3, 9, 9), dtype=torch.uint8), return_tensors="pt")
    assert tuple(out["pixel_values"].shape) == (0, 3, 8, 8)


def test_slow_processor_keeps_uint8_without_rescale_or_normalize(processor):
    """As transformers: do_rescale=False and do_normalize=False give the resized uint8 pixels."""
    out = processor.image_processor(base_rgb(), do_rescale=False, do_normalize=False, return_tensors="np")
    assert out["pixel_values"].dtype == np.uint8 and out["pixel_values"].shape == (1, 3, 24, 24)


def test_slow_processor_channels_last_output(processor):
    first = processor.image_processor(base_rgb(), return_tensors="np")["pixel_values"]
    last = processor.image_processor(base_rgb(), data_format="channels_last", return_tensors="np")["pixel_values"]
    assert last.shape == (1, 24, 24, 3) and np.array_equal(last.transpose(0, 3, 1, 2), first)


def test_tokenizer_options_and_grouped_kwargs_route_as_transformers(processor):
    """Values recorded from transformers 4.57.6's `BlipProcessor(BlipImageProcessor, BertTokenizerFast)` on the
    fixture tokenizer (the same calls, run by hand in the oracle venv)."""
    image = np.zeros((20, 30, 3), np.uint8)
    out = processor(
        images=image, text=["a dog", "two cats on a mat"], return_token_type_ids=True, padding=True, return_length=True
    )
    assert list(out) == ["pixel_values", "input_ids", "token_type_ids", "attention_mask", "length"]
    assert out["token_type_ids"] == [[0] * 7, [0] * 7] and out["length"] == [7, 7]
    grouped = processor(
        images=image,
        text="a dog",
        text_kwargs={"padding": "max_length", "max_length": 8},
        images_kwargs={"size": {"height": 16, "width": 16}},
        common_kwargs={"return_tensors": "np"},
    )
    assert grouped["pixel_values"].shape == (1, 3, 16, 16) and grouped["input_ids"].dtype == np.int64
    assert grouped["input_ids"].tolist() == [[101, 1037, 3899, 102, 0, 0, 0, 0]]
    flat = processor(
        images=image,
        text="a dog",
        padding="max_length",
        max_length=8,
        size={"height": 16, "width": 16},
        return_tensors="np",
    )
    assert all(np.array_equal(flat[key], grouped[key]) for key in flat) and list(flat) == list(grouped)
    text_only = processor(text="a dog", return_special_tokens_mask=True, return_offsets_mapping=True)
    assert dict(text_only) == {
        "input_ids": [101, 1037, 3899, 102],
        "attention_mask": [1, 1, 1, 1],
        "special_tokens_mask": [1, 0, 0, 1],
        "offset_mapping": [(0, 0), (0, 1), (2, 5), (0, 0)],
    }
    with pytest.raises(ValueError, match="padding was given twice"):
        processor(images=image, text="a", padding=True, text_kwargs={"padding": "max_length"})
    with pytest.raises(TypeError, match="text_kwargs must be a dict"):
        processor(text="a", text_kwargs=["padding"])
    with pytest.raises(ValueError, match="no chat template"):
        processor.apply_chat_template([{"role": "user", "content": "hi"}])
