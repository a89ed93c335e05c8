"""Regenerate the vocabulary-growth golden data from `transformers` 4.57.6 (the oracle).

Run from the repository root in the oracle environment (transformers 4.57.6, torch; blip-dual
installed editable, because one part checks that `transformers` reads the files *we* write):

    .venv-oracle/bin/python -m tests.tools.make_vocab_golden

Writes tests/golden/vocabulary.json (tokenizer counts, ids, encodings, decodes, saved-file
summaries; what `transformers` reads from a folder saved by `BlipTokenizer`), tests/golden/
vocabulary.npz (the token-indexed tensors of tiny models after `resize_token_embeddings`) and
tests/fixtures/tokenizer_grown/ (a grown tokenizer saved by `transformers` itself).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import tokenizers
import torch
import transformers

from blip_core import BlipTokenizer
from tests.helpers.vocab_cases import ADDED_CONTENTS, RESIZE_CASES, TEXTS, TOKEN_OPS
from tests.tools.make_torch_golden import hf_config, hf_sub_config

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
FIXTURES = ROOT / "tests" / "fixtures"


def stamp() -> dict[str, str]:
    return {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__, "torch": torch.__version__}


def grow(tokenizer) -> list[dict]:
    """Apply TOKEN_OPS, recording what each returns and the length after it."""
    steps = []
    for label, operation in TOKEN_OPS:
        steps.append({"op": label, "returned": operation(tokenizer), "len": len(tokenizer)})
    return steps


def describe(tokenizer) -> dict:
    """Ids, encodings and decodes of a grown tokenizer."""
    encodings = [tokenizer(text)["input_ids"] for text in TEXTS]
    return {
        "ids": {content: tokenizer.convert_tokens_to_ids(content) for content in ADDED_CONTENTS},
        "len": len(tokenizer),
        "encodings": encodings,
        "decodes": [tokenizer.decode(ids) for ids in encodings],
        "decodes_skip_special": [tokenizer.decode(ids, skip_special_tokens=True) for ids in encodings],
        "additional_special_tokens": [str(token) for token in tokenizer.additional_special_tokens],
        "special": {name: getattr(tokenizer, name) for name in ("bos_token", "eos_token", "pad_token")},
        "special_ids": {name: getattr(tokenizer, name) for name in ("bos_token_id", "eos_token_id", "pad_token_id")},
    }


def files_summary(folder: Path) -> dict:
    """The parts of the saved files that carry added tokens."""
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


def tokenizer_golden(work: Path) -> dict:
    base = work / "blip_base"
    BlipTokenizer.from_pretrained(FIXTURES / "tokenizer").save_pretrained(base)
    theirs = transformers.BertTokenizerFast.from_pretrained(base)
    steps = grow(theirs)
    grown = FIXTURES / "tokenizer_grown"
    shutil.rmtree(grown, ignore_errors=True)
    theirs.save_pretrained(grown)
    ours = BlipTokenizer.from_pretrained(base)
    grow(ours)
    ours.save_pretrained(work / "ours_grown")
    read_fast = transformers.BertTokenizerFast.from_pretrained(work / "ours_grown")
    read_slow = transformers.BertTokenizer.from_pretrained(work / "ours_grown")
    hub = transformers.BertTokenizerFast.from_pretrained(FIXTURES / "tokenizer")
    return {
        "steps": steps,
        "grown": describe(theirs),
        "saved_by_transformers": files_summary(grown),
        "transformers_reads_ours": describe(read_fast),
        "slow_reads_ours_ids": {content: read_slow.convert_tokens_to_ids(content) for content in ADDED_CONTENTS},
        "hub_files_first_added_id": {
            "returned": hub.add_tokens(["NewWord"]),
            "id": hub.convert_tokens_to_ids("NewWord"),
        },
    }


def token_indexed(model, vocab: int) -> dict[str, np.ndarray]:
    """Every parameter with a token axis (rows or entries == vocab)."""
    return {
        name: tensor.detach().numpy().copy()
        for name, tensor in model.state_dict().items()
        if tensor.ndim and tensor.shape[0] == vocab and "position" not in name
    }


def resize_golden() -> tuple[dict, dict[str, np.ndarray]]:
    from tests.helpers.tiny import seeded_weights, tiny_config

    arrays, meta = {}, {}
    for case in RESIZE_CASES:
        ours = tiny_config(text_config={"tie_word_embeddings": case.tied})
        weights = seeded_weights(case.class_name, ours if case.class_name != "BlipForQuestionAnswering" else None)
        config = hf_sub_config(case.class_name, hf_config(case.class_name, case.tied))
        model = getattr(transformers, case.class_name)(config).eval()
        result = model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
        assert not result.unexpected_keys and not result.missing_keys, result
        torch.manual_seed(0)
        embeddings = model.resize_token_embeddings(case.new_num_tokens, case.pad_to_multiple_of)
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        vocab = embeddings.weight.shape[0]
        for name, value in token_indexed(model, vocab).items():
            arrays[f"{case.name}::{name}"] = value
        meta[case.name] = {
            "embedding_rows": vocab,
            "config_vocab_size": text.vocab_size,
            "input_embeddings_width": embeddings.weight.shape[1],
            "resized": sorted(token_indexed(model, vocab)),
        }
    return meta, arrays


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        tokenizer = tokenizer_golden(Path(work))
    meta, arrays = resize_golden()
    data = {"made_by": stamp(), "tokenizer": tokenizer, "resize": meta}
    (GOLDEN / "vocabulary.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    np.savez_compressed(GOLDEN / "vocabulary.npz", **arrays)


if __name__ == "__main__":
    main()
