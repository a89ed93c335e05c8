"""BlipTokenizer: ids and decodes equal to `transformers`' BertTokenizerFast goldens; [DEC]/[ENC]; files."""

from __future__ import annotations

import numpy as np
import pytest

from blip_core import BlipTokenizer
from tests.helpers.golden import FIXTURES, load_json
from tests.helpers.text_cases import DECODE_IDS, ENCODE_CASES

GOLDEN = load_json("tokenizer.json")
TOKENIZER_DIR = FIXTURES / "tokenizer"


@pytest.fixture(scope="module", params=["tokenizer.json", "vocab.txt"])
def tokenizer(request):
    if request.param == "tokenizer.json":
        return BlipTokenizer.from_pretrained(TOKENIZER_DIR)
    return BlipTokenizer(vocab_file=TOKENIZER_DIR / "vocab.txt")


@pytest.mark.parametrize("index", range(len(ENCODE_CASES)), ids=[case[0] for case in ENCODE_CASES])
def test_encode_matches_transformers(tokenizer, index):
    name, text, kwargs = ENCODE_CASES[index]
    golden = GOLDEN["encode"][index]
    assert golden["name"] == name
    out = tokenizer(text, **kwargs)
    assert out["input_ids"] == golden["input_ids"]
    assert out["attention_mask"] == golden["attention_mask"]


@pytest.mark.parametrize("index", range(len(DECODE_IDS)))
def test_decode_matches_transformers(tokenizer, index):
    golden = GOLDEN["decode"][index]
    assert tokenizer.decode(golden["ids"]) == golden["plain"]
    assert tokenizer.decode(golden["ids"], skip_special_tokens=True) == golden["skip_special"]


def test_golden_covers_every_case():
    assert [entry["name"] for entry in GOLDEN["encode"]] == [case[0] for case in ENCODE_CASES]
    assert [entry["ids"] for entry in GOLDEN["decode"]] == DECODE_IDS


def test_special_token_ids(tokenizer):
    assert (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.cls_token_id) == (0, 100, 101)
    assert (tokenizer.sep_token_id, tokenizer.mask_token_id, tokenizer.bos_token_id) == (102, 103, 30522)
    assert tokenizer.convert_tokens_to_ids("[ENC]") == 30523
    assert tokenizer.vocab_size == 30522 and len(tokenizer) == 30524


def test_dec_and_enc_are_decoded_as_special_tokens(tokenizer):
    ids = [30522, 1037, 3861, 1997, 1037, 4937, 102, 0, 0]
    assert tokenizer.decode(ids) == "[DEC] a picture of a cat [SEP] [PAD] [PAD]"
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a picture of a cat"
    assert tokenizer.decode([30523, 2129, 2116]) == "[ENC] how many"


def test_batch_decode_accepts_arrays_and_tensors(tokenizer):
    ids = np.array([[30522, 1037, 4937, 102], [30522, 1037, 3899, 102]])
    expected = ["a cat", "a dog"]
    assert tokenizer.batch_decode(ids, skip_special_tokens=True) == expected
    torch = pytest.importorskip("torch")
    assert tokenizer.batch_decode(torch.from_numpy(ids), skip_special_tokens=True) == expected


def test_return_tensors_dtypes(tokenizer):
    out = tokenizer(["a cat", "a black dog"], padding=True, return_tensors="np")
    assert out["input_ids"].dtype == np.int64 and out["input_ids"].shape == (2, 5)
    single = tokenizer("a cat", return_tensors="np")
    assert single["input_ids"].shape == (1, 4)
    tf = pytest.importorskip("tensorflow")
    assert tokenizer("a cat", return_tensors="tf")["input_ids"].dtype == tf.int32


def test_token_type_ids_only_when_asked(tokenizer):
    assert "token_type_ids" not in tokenizer("a cat")
    assert tokenizer("a cat", "a dog", return_token_type_ids=True)["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1]


def test_ragged_tensors_need_padding(tokenizer):
    with pytest.raises(ValueError, match="pass padding=True"):
        tokenizer(["a", "a b c"], return_tensors="np")


@pytest.mark.parametrize(
    "kwargs,error",
    [
        ({"text": 3}, TypeError),
        ({"text": ["ok", None]}, TypeError),
        ({"text": "a", "padding": "sideways"}, ValueError),
        ({"text": "a", "truncation": "middle"}, ValueError),
        ({"text": "a", "max_length": 0}, ValueError),
        ({"text": "a", "padding_side": "up"}, ValueError),
        ({"text": "a", "return_tensors": "torch"}, ValueError),
        ({"text": "a", "colour": 1}, TypeError),
    ],
)
def test_bad_arguments(tokenizer, kwargs, error):
    with pytest.raises(error):
        tokenizer(**kwargs)


def test_save_and_reload(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= {
        "tokenizer.json",
        "vocab.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
    }
    again = BlipTokenizer.from_pretrained(tmp_path)
    assert (tmp_path / "vocab.txt").read_text() == (TOKENIZER_DIR / "vocab.txt").read_text()
    for _, text, kwargs in ENCODE_CASES:
        assert again(text, **kwargs) == tokenizer(text, **kwargs)
    only_vocab = tmp_path / "vocab_only"
    only_vocab.mkdir()
    (only_vocab / "vocab.txt").write_text((tmp_path / "vocab.txt").read_text())
    assert BlipTokenizer.from_pretrained(only_vocab)("Héllo wörld!") == tokenizer("Héllo wörld!")


def test_missing_files_are_named(tmp_path):
    with pytest.raises(ValueError, match="no tokenizer.json or vocab.txt"):
        BlipTokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read tokenizer file"):
        BlipTokenizer.from_pretrained(tmp_path)


def test_saved_tokenizer_json_adds_cls_and_sep_itself(tmp_path):
    """A tokenizer built from vocab.txt saves a tokenizer.json whose own pipeline (the one transformers'
    fast tokenizer runs) adds [CLS]/[SEP] exactly as BlipTokenizer does."""
    from tokenizers import Tokenizer

    built = BlipTokenizer(vocab_file=TOKENIZER_DIR / "vocab.txt")
    built.save_pretrained(tmp_path)
    backend = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for text in ("a picture of", "Héllo wörld! How are you?"):
        assert backend.encode(text).ids == built(text)["input_ids"]
    assert backend.encode("a cat", "a dog").ids == built("a cat", text_pair="a dog")["input_ids"]


def test_missing_files_are_an_os_error_too(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer.json or vocab.txt"):
        BlipTokenizer.from_pretrained(tmp_path)
