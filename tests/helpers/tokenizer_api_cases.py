"""Calls of `transformers`' `BertTokenizerFast` API that programs make, run on the same files by
`tests/tools/make_tokenizer_api_golden.py` (transformers 4.57.6) and by `tests/core/test_tokenizer_api.py`
(`BlipTokenizer`), each summarised as plain JSON values by `summarize`."""

from __future__ import annotations

from typing import Any

import numpy as np

LONG = "a photograph of a very small cat sitting on a red sofa next to the window"
PROPERTIES = ("all_special_tokens", "all_special_ids", "is_fast", "model_max_length", "padding_side", "vocab_size")

# name -> (method, positional arguments, keyword arguments)
CASES: dict[str, tuple[str, tuple, dict[str, Any]]] = {
    "encode_plus offsets": (
        "encode_plus",
        ("Hello world, a cat!",),
        {"return_offsets_mapping": True, "return_special_tokens_mask": True, "return_length": True},
    ),
    "batch_encode_plus padded": (
        "batch_encode_plus",
        (["a cat", "two dogs playing in the snow"],),
        {"padding": True, "return_length": True, "return_special_tokens_mask": True},
    ),
    "batch_encode_plus pairs": (
        "batch_encode_plus",
        ([("a cat", "what is it?"), ("dogs", "how many?")],),
        {"padding": "longest", "return_token_type_ids": True},
    ),
    "overflow with stride": (
        "__call__",
        (LONG,),
        {"truncation": True, "max_length": 8, "stride": 2, "return_overflowing_tokens": True},
    ),
    "batch overflow padded": (
        "__call__",
        ([LONG, "a cat on a mat"],),
        {
            "truncation": True,
            "max_length": 9,
            "stride": 3,
            "return_overflowing_tokens": True,
            "padding": True,
            "return_offsets_mapping": True,
        },
    ),
    "split into words": (
        "__call__",
        (["Hello", "world", "unaffable"],),
        {"is_split_into_words": True, "return_offsets_mapping": True},
    ),
    "batch split into words": (
        "__call__",
        ([["a", "cat"], ["two", "running", "dogs"]],),
        {"is_split_into_words": True, "padding": True, "return_length": True},
    ),
    "pair with token types": ("__call__", ("a cat", "what is it?"), {"return_token_type_ids": True}),
    "verbose off, too long": ("__call__", (" ".join(["cat"] * 600),), {"verbose": False, "return_length": True}),
    "numpy batch": (
        "__call__",
        (["a cat", "a dog"],),
        {"return_tensors": "np", "padding": "max_length", "max_length": 6},
    ),
    "pad lists": ("pad", ({"input_ids": [[101, 1037, 102], [101, 102]]},), {}),
    "pad examples left to 4": (
        "pad",
        ([{"input_ids": [101, 1037, 4937, 102]}, {"input_ids": [101, 102]}],),
        {"padding": "max_length", "max_length": 5, "pad_to_multiple_of": 4, "padding_side": "left"},
    ),
    "pad numpy with masks": (
        "pad",
        ({"input_ids": [[101, 1037, 102], [101, 102]], "attention_mask": [[1, 1, 1], [1, 1]]},),
        {"return_tensors": "np", "return_attention_mask": True},
    ),
}


def plain(value: Any) -> Any:
    """Arrays, tensors and tuples as nested lists."""
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        value = value.numpy()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def summarize(result: Any) -> dict[str, Any]:
    """Every column as lists, the column types, and each row's `word_ids`/`tokens` where the backend kept them."""
    out: dict[str, Any] = {"columns": {key: plain(value) for key, value in result.items()}}
    out["types"] = {key: type(value).__name__ for key, value in result.items()}
    if getattr(result, "encodings", None):
        out["word_ids"] = [result.word_ids(i) for i in range(len(result.encodings))]
        out["tokens"] = [result.tokens(i) for i in range(len(result.encodings))]
    return out


def run_case(tokenizer: Any, name: str) -> dict[str, Any]:
    method, args, kwargs = CASES[name]
    call = tokenizer if method == "__call__" else getattr(tokenizer, method)
    return summarize(call(*args, **kwargs))
