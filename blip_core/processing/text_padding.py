"""`BlipTokenizer.pad`: padding encodings made elsewhere (a data collator's list of examples), by
`transformers`' rules: which columns are padded with what, the attention mask made when missing, and the
framework of tensor inputs kept for the output."""

from __future__ import annotations

from collections.abc import Mapping, Sized
from typing import Any

import numpy as np

from blip_core.processing.feature import BatchEncoding, check_tensor_type
from blip_core.processing.text_options import PADDING, check_length_options, check_side, hashable, make_batch

# Columns `pad` extends, with the value it pads them with (None: the tokenizer's pad id).
PADDED_COLUMNS = {"input_ids": None, "token_type_ids": 0, "special_tokens_mask": 1}


def pad_encodings(
    tokenizer: Any,
    encoded_inputs: Any,
    *,
    padding: bool | str,
    max_length: int | None,
    pad_to_multiple_of: int | None,
    padding_side: str | None,
    return_attention_mask: bool | None,
    return_tensors: Any,
) -> BatchEncoding:
    """See `TextEncodingMixin.pad`. One example (a row of ids) stays one row (1-D tensors when asked).

    Raises:
        ValueError: no `input_ids`, an unknown padding strategy or side, ids of an unknown type.
        TypeError: `encoded_inputs` of another form.
    """
    columns = columns_of(encoded_inputs)
    key = tokenizer.model_input_names[0]
    if key not in columns:
        raise ValueError(
            f"You should supply an encoding or a list of encodings to this method that includes {key}, but you "
            f"provided {list(columns)}"
        )
    required = columns[key]
    if required is None or (isinstance(required, Sized) and len(required) == 0):
        if return_attention_mask:
            columns["attention_mask"] = []
        return BatchEncoding(columns)
    framework = _framework_of(required)
    if framework is not None:
        columns = {name: _python(value) for name, value in columns.items()}
        return_tensors = framework if return_tensors is None else return_tensors
    tensor_type = check_tensor_type(return_tensors)
    if not hashable(padding) or padding not in PADDING:
        raise ValueError(f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad', got {padding!r:.40}")
    check_length_options(padding, max_length, pad_to_multiple_of, tokenizer.model_max_length)
    strategy = PADDING[padding]
    if strategy is not None and tokenizer.pad_token_id is None:
        raise ValueError(
            f"Asking to pad but the tokenizer's pad_token ({tokenizer.pad_token!r}) is not in its vocabulary"
        )
    if strategy == "max_length" and max_length is None:
        max_length = tokenizer.model_max_length
    rules = {
        "side": check_side(padding_side or tokenizer.padding_side, "padding_side"),
        "mask": ("attention_mask" in tokenizer.model_input_names)
        if return_attention_mask is None
        else return_attention_mask,
        "multiple": pad_to_multiple_of,
        "pad_id": tokenizer.pad_token_id,
    }
    required = columns[key]
    if not isinstance(required[0], (list, tuple)):  # one example
        return make_batch(_pad_one(columns, key, strategy, max_length, rules), tensor_type)
    if strategy == "longest":
        strategy, max_length = "max_length", max(len(row) for row in required)
    rows = [
        _pad_one({name: value[index] for name, value in columns.items()}, key, strategy, max_length, rules)
        for index in range(len(required))
    ]
    return make_batch({name: [row[name] for row in rows] for name in rows[0]}, tensor_type)


def columns_of(encoded_inputs: Any) -> dict[str, Any]:
    """A list of per-example mappings as one mapping of columns; a mapping as a plain dict (a copy)."""
    if isinstance(encoded_inputs, (list, tuple)) and encoded_inputs and isinstance(encoded_inputs[0], Mapping):
        return {key: [example[key] for example in encoded_inputs] for key in encoded_inputs[0]}
    if isinstance(encoded_inputs, Mapping):
        return dict(encoded_inputs)
    raise TypeError(
        f"pad expects a BatchEncoding, a dict of lists or a list of dicts, got {type(encoded_inputs).__name__}"
    )


def _pad_one(example: dict[str, Any], key: str, strategy: str | None, max_length: int | None, rules: dict) -> dict:
    """One example padded to `max_length` (rounded up to `pad_to_multiple_of`), `transformers`' `_pad`."""
    example = dict(example)
    ids = list(example[key])
    if strategy == "longest":
        max_length = len(ids)
    if max_length is not None and rules["multiple"] and max_length % rules["multiple"]:
        max_length = (max_length // rules["multiple"] + 1) * rules["multiple"]
    if rules["mask"] and "attention_mask" not in example:
        example["attention_mask"] = [1] * len(ids)
    if strategy is None or max_length is None or len(ids) == max_length:
        return example
    fillers = {name: (rules["pad_id"] if value is None else value) for name, value in PADDED_COLUMNS.items()}
    if rules["mask"]:
        fillers["attention_mask"] = 0
    for name, value in fillers.items():
        if name in example:
            filler = [value] * (max_length - len(ids))
            row = list(example[name])
            example[name] = row + filler if rules["side"] == "right" else filler + row
    return example


def _framework_of(required: Any) -> str | None:
    """ "pt", "tf" or "np" when the ids are tensors/arrays (the output's default type); None for lists of ints.

    Raises:
        ValueError: ids of another type.
    """
    first = required[0]
    if isinstance(first, (list, tuple)):
        first = next((row[0] for row in required if len(row)), first)
    if isinstance(first, (int, list, tuple)) and not isinstance(first, bool):
        return None
    if hasattr(first, "detach"):
        return "pt"
    if isinstance(first, (np.ndarray, np.generic)):
        return "np"
    if type(first).__module__.startswith("tensorflow"):
        return "tf"
    raise ValueError(f"type of {first!r:.40} unknown: {type(first).__name__}; expected Python, NumPy, torch or TF ids")


def _python(value: Any) -> Any:
    """Tensors, arrays and lists of them as nested Python lists."""
    if hasattr(value, "detach"):
        return value.detach().cpu().tolist()
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if hasattr(value, "numpy"):
        return value.numpy().tolist()
    if isinstance(value, (list, tuple)):
        return [_python(item) for item in value]
    return value
