"""Growing BlipTokenizer's vocabulary: `add_tokens` / `add_special_tokens` equal `transformers`' BertTokenizerFast
(golden: tests/tools/make_vocab_golden.py), and the grown files read the same in both libraries."""

from __future__ import annotations

import json

import pytest
from tokenizers import AddedToken

from blip_core import BlipTokenizer
from tests.helpers.golden import FIXTURES, load_json
from tests.helpers.vocab_cases import ADDED_CONTENTS, TEXTS, TOKEN_OPS

GOLDEN = load_json("vocabulary.json")["tokenizer"]


def grown() -> BlipTokenizer:
    tokenizer = BlipTokenizer.from_pretrained(FIXTURES / "tokenizer")
    for _, operation in TOKEN_OPS:
        operation(tokenizer)
    return tokenizer


def describe(tokenizer: BlipTokenizer) -> dict:
    encodings = [tokenizer(text)["input_ids"] for text in TEXTS]
    return {
        "ids": {content: tokenizer.convert_tokens_to_ids(content) for content in ADDED_CONTENTS},
        "len": len(tokenizer),
        "encodings": encodings,
        "decodes": [tokenizer.decode(ids) for ids in encodings],
        "decodes_skip_special": [tokenizer.decode(ids, skip_special_tokens=True) for ids in encodings],
        "additional_special_tokens": tokenizer.additional_special_tokens,
        "special": {name: getattr(tokenizer, name) for name in ("bos_token", "eos_token", "pad_token")},
        "special_ids": {name: getattr(tokenizer, name) for name in ("bos_token_id", "eos_token_id", "pad_token_id")},
    }


def test_each_step_returns_and_grows_as_transformers():
    tokenizer = BlipTokenizer.from_pretrained(FIXTURES / "tokenizer")
    assert len(tokenizer) == 30524
    for (label, operation), expected in zip(TOKEN_OPS, GOLDEN["steps"], strict=True):
        assert expected["op"] == label
        assert (operation(tokenizer), len(tokenizer)) == (expected["returned"], expected["len"]), label


def test_grown_tokenizer_equals_transformers():
    assert describe(grown()) == GOLDEN["grown"]


def test_new_tokens_never_take_the_ids_of_dec_and_enc():
    tokenizer = BlipTokenizer.from_pretrained(FIXTURES / "tokenizer")
    assert tokenizer.add_tokens(["NewWord"]) == 1
    assert tokenizer.convert_tokens_to_ids(["[DEC]", "[ENC]", "NewWord"]) == [30522, 30523, 30524]
    # transformers' tokenizer on the Hub's files has no [DEC]: its first new token takes [DEC]'s row
    assert GOLDEN["hub_files_first_added_id"] == {"returned": 1, "id": 30522}


def summary(folder) -> dict:
    tokenizer_json = json.loads((folder / "tokenizer.json").read_text())
    config = json.loads((folder / "tokenizer_config.json").read_text())
    special_map = json.loads((folder / "special_tokens_map.json").read_text())
    return {
        "added_tokens": tokenizer_json["added_tokens"],
        "added_tokens_decoder": config["added_tokens_decoder"],
        "config_additional_special_tokens": config.get("additional_special_tokens"),
        "map_additional_special_tokens": [
            token["content"] if isinstance(token, dict) else token
            for token in special_map.get("additional_special_tokens", [])
        ],
    }


def test_saved_files_carry_the_added_tokens_as_transformers_writes_them(tmp_path):
    grown().save_pretrained(tmp_path)
    assert summary(tmp_path) == GOLDEN["saved_by_transformers"]
    added = json.loads((tmp_path / "added_tokens.json").read_text())
    assert added["[DEC]"] == 30522 and added["[EOS]"] == 30532 and "hello" not in added


def test_transformers_reads_our_files_with_our_ids(tmp_path):
    ours = grown()
    assert describe(ours) == GOLDEN["transformers_reads_ours"]
    assert describe(ours)["ids"] == GOLDEN["slow_reads_ours_ids"]


@pytest.mark.parametrize("use_vocab_only", [False, True], ids=["tokenizer.json", "vocab.txt+config"])
def test_round_trip_keeps_the_grown_vocabulary(tmp_path, use_vocab_only):
    ours = grown()
    ours.save_pretrained(tmp_path)
    if use_vocab_only:  # a slow-tokenizer folder: the added tokens come from tokenizer_config.json
        (tmp_path / "tokenizer.json").unlink()
    again = BlipTokenizer.from_pretrained(tmp_path)
    assert describe(again) == describe(ours)
    assert again.added_tokens_decoder.keys() == ours.added_tokens_decoder.keys()


def test_reads_a_tokenizer_grown_and_saved_by_transformers():
    theirs = BlipTokenizer.from_pretrained(FIXTURES / "tokenizer_grown")
    assert describe(theirs) == GOLDEN["grown"]


def test_special_tokens_map_and_added_vocab():
    tokenizer = grown()
    assert tokenizer.special_tokens_map["additional_special_tokens"] == ["[OBJ]", "[REL]", "[X]"]
    assert tokenizer.special_tokens_map["eos_token"] == "[EOS]"
    assert tokenizer.get_added_vocab()["[LOC]"] == 30526
    assert tokenizer.added_tokens_decoder[30527].lstrip is True
    assert tokenizer.additional_special_tokens_ids == [30529, 30530, 30531]


@pytest.mark.parametrize(
    "call,error",
    [
        (lambda t: t.add_tokens(3), TypeError),
        (lambda t: t.add_tokens(["ok", None]), TypeError),
        (lambda t: t.add_special_tokens({"colour_token": "[C]"}), ValueError),
        (lambda t: t.add_special_tokens({"bos_token": 3}), ValueError),
        (lambda t: t.add_special_tokens({"additional_special_tokens": "[Q]"}), ValueError),
    ],
)
def test_bad_tokens_are_named(call, error):
    with pytest.raises(error):
        call(BlipTokenizer.from_pretrained(FIXTURES / "tokenizer"))


def test_nothing_to_add():
    tokenizer = BlipTokenizer.from_pretrained(FIXTURES / "tokenizer")
    assert (tokenizer.add_tokens([]), tokenizer.add_special_tokens({}), len(tokenizer)) == (0, 0, 30524)
    assert tokenizer.add_tokens(AddedToken("[DEC]", special=True)) == 0


def test_a_file_whose_tokens_take_30522_warns_and_keeps_its_ids(tmp_path):
    tokenizer = BlipTokenizer.from_pretrained(FIXTURES / "tokenizer")
    data = json.loads((FIXTURES / "tokenizer" / "tokenizer.json").read_text())
    data["added_tokens"].append(
        {
            "id": 30522,
            "content": "NewWord",
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": True,
            "special": False,
        }
    )
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="id 30522 to 'NewWord'"):
        loaded = BlipTokenizer.from_pretrained(tmp_path)
    assert loaded.convert_tokens_to_ids("NewWord") == 30522 and loaded.bos_token_id == 30523
