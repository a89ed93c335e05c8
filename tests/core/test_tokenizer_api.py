"""`BlipTokenizer` answers `transformers`' `BertTokenizerFast` API (4.57.6) with the same values on the same
files: `encode_plus`/`batch_encode_plus`, offsets, word ids, overflow with stride, words given pre-split,
lengths, special-token masks, `pad`, `verbose`, and the properties programs read (golden:
tests/tools/make_tokenizer_api_golden.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from blip_core import BlipTokenizer
from tests.helpers.golden import load_json
from tests.helpers.tokenizer_api_cases import CASES, PROPERTIES, plain, run_case

GOLDEN = load_json("tokenizer_api.json")
ROOT = Path(__file__).resolve().parents[2]
FOLDER = "tests/fixtures/tokenizer"
BLIP_EXTRA = ("[DEC]", "[ENC]")  # always special here; transformers' tokenizer lacks them (docs/differences.md)


@pytest.fixture(scope="module")
def tokenizer():
    return BlipTokenizer.from_pretrained(str(ROOT / FOLDER))


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_columns_word_ids_and_tokens_as_transformers(tokenizer, name):
    assert json.loads(json.dumps(run_case(tokenizer, name))) == GOLDEN["cases"][name]


def test_properties_match_transformers_but_for_the_blip_tokens(tokenizer):
    assert GOLDEN["class"] == "BertTokenizerFast" and GOLDEN["name_or_path"] == FOLDER  # the string passed
    assert tokenizer.name_or_path == str(ROOT / FOLDER)
    for name in PROPERTIES:
        value = plain(getattr(tokenizer, name))
        if name == "all_special_tokens":
            assert value[0] == "[DEC]" and value[-1] == "[ENC]"
            value = [token for token in value if token not in BLIP_EXTRA]
        elif name == "all_special_ids":
            assert value[0] == 30522 and value[-1] == 30523
            value = value[1:-1]
        assert value == GOLDEN["properties"][name], name


def test_alignment_methods_follow_the_backend(tokenizer):
    batch = tokenizer(["Hello world", "a cat"], return_offsets_mapping=True)
    assert batch.is_fast and batch.n_sequences == 1
    assert batch.word_ids(0) == [None, 0, 1, None] and batch.tokens(1) == ["[CLS]", "a", "cat", "[SEP]"]
    assert batch.char_to_token(0, 6) == 2 and batch.token_to_chars(0, 1) == (0, 5)
    assert batch.word_to_tokens(1, 1) == (2, 3) and batch.token_to_word(1, -2) == 1
    with pytest.raises(ValueError, match=r"word_ids\(\) is not available"):
        tokenizer.pad({"input_ids": [[101, 102]]}).word_ids(0)


def test_pad_returns_tensors_of_the_framework_asked(tokenizer):
    padded = tokenizer.pad({"input_ids": [[101, 1037, 102], [101, 102]]}, return_tensors="np")
    assert isinstance(padded["input_ids"], np.ndarray)
    np.testing.assert_array_equal(padded["attention_mask"], [[1, 1, 1], [1, 1, 0]])
