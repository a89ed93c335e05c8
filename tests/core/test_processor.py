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
