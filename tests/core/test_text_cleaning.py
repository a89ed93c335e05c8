"""The original BLIP's text cleaning (`pre_caption`/`pre_question` of salesforce/BLIP `data/utils.py`), on
hand-worked cases, and its use by the paper-style training batches under `protocol="original"`."""

from __future__ import annotations

import pytest

from blip_core.processing.text_cleaning import clean_caption, clean_question


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A Dog (running)!  on the beach.", "a dog running on the beach"),  # each mark a space, runs collapsed
        ('He said: "hi"; ok~*#', "he said hi ok"),
        ("Is it 3.5?", "is it 3 5?"),  # `?` and digits stay, `.` becomes a space
        ("  padded  \n", "padded"),
        ("", ""),
    ],
)
def test_captions_are_cleaned_as_the_original(text, expected):
    assert clean_caption(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("What is THIS?  ", "what is this?"),  # marks deleted, not spaced; `?` kept; trailing spaces removed
        ("How many (red) dogs... are there?", "how many red dogs are there?"),
        ("Is it 3.5?", "is it 35?"),
        ("Where, exactly?", "where, exactly?"),  # `,` stays
    ],
)
def test_questions_are_cleaned_as_the_original(text, expected):
    assert clean_question(text) == expected


def test_texts_are_cut_to_max_words():
    long = " ".join(f"w{i}" for i in range(40))
    assert clean_caption(long) == " ".join(f"w{i}" for i in range(30))
    assert clean_question(long) == long  # 50 words for questions
    assert clean_question(long, max_words=3) == "w0 w1 w2"
    with pytest.raises(ValueError, match="max_words"):
        clean_caption("a", max_words=0)
    with pytest.raises(TypeError, match="caption must be a string"):
        clean_caption(None)


def test_paper_training_batches_clean_texts_under_the_original_protocol():
    from blip_core import BlipProcessor
    from blip_core.config.model_constants import CLS_TOKEN_ID, ENC_TOKEN_ID
    from blip_core.demo.tasks import DEMO_MODELS_DIR, held_out
    from blip_core.training.paper import retrieval_examples, weighted_vqa_examples

    processor = BlipProcessor.from_pretrained(DEMO_MODELS_DIR / "BlipForImageTextRetrieval")
    image = held_out(1).images[0]
    original = retrieval_examples(processor, [image], ["Two RED circles!"], protocol="original")
    plain = retrieval_examples(processor, [image], ["two red circles"])
    assert original["input_ids"].tolist() == plain["input_ids"].tolist()  # cleaned, then [CLS] for ITC
    assert original["itm_input_ids"][0, 0] == ENC_TOKEN_ID and plain["itm_input_ids"][0, 0] == CLS_TOKEN_ID
    vqa = weighted_vqa_examples(processor, [(image, "How MANY circles?!", ["two"])], protocol="original")
    expected = processor.tokenizer("how many circles?")["input_ids"][1:]
    assert vqa["input_ids"][0, 0] == ENC_TOKEN_ID and vqa["input_ids"][0, 1:].tolist() == expected
