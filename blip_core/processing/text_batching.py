"""The encoding half of `BlipTokenizer`: `__call__`, `encode`, `encode_plus`, `batch_encode_plus`, `pad`.

The options are `transformers`' (`BertTokenizerFast`'s). As there, truncation (with overflow windows and
`stride`), the special tokens, padding, offsets and word ids all come from the `tokenizers` backend,
configured for each call and reset after it, so the ids are those of `transformers` on the same files.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from blip_core.processing.feature import BatchEncoding, check_tensor_type
from blip_core.processing.text_options import (
    PADDING,
    TRUNCATION,
    check_length_options,
    check_side,
    hashable,
    make_batch,
)
from blip_core.processing.text_padding import pad_encodings

# Output columns in `transformers`' order, with the option that asks for each (None: always).
_COLUMNS = (
    ("input_ids", None),
    ("token_type_ids", "return_token_type_ids"),
    ("attention_mask", "return_attention_mask"),
    ("special_tokens_mask", "return_special_tokens_mask"),
    ("offset_mapping", "return_offsets_mapping"),
    ("length", "return_length"),
)
# Truncation to a length beyond any text is no truncation; the backend takes lengths below 2**32.
_NO_TRUNCATION_LIMIT = 2**32 - 1
# The backend's truncation and padding are per-tokenizer state; a call configures and resets them.
_BACKEND_LOCK = threading.RLock()


@dataclass(frozen=True)
class EncodeOptions:
    """One call's options, checked and resolved (`padding`/`truncation` as the backend's strategy names)."""

    add_special_tokens: bool = True
    padding: str | None = None
    truncation: str | None = None
    max_length: int | None = None
    stride: int = 0
    is_split_into_words: bool = False
    pad_to_multiple_of: int | None = None
    padding_side: str = "right"
    return_tensors: str | None = None
    return_token_type_ids: bool = False
    return_attention_mask: bool = True
    return_overflowing_tokens: bool = False
    return_special_tokens_mask: bool = False
    return_offsets_mapping: bool = False
    return_length: bool = False


def resolve_options(tokenizer: Any, **given: Any) -> EncodeOptions:
    """Check `given` (the keyword arguments of `__call__`) and resolve the defaults the tokenizer decides.

    Raises:
        ValueError: a bad padding/truncation strategy, side, length, stride or tensor type.
    """
    padding, truncation, max_length = given["padding"], given["truncation"], given["max_length"]
    if not hashable(padding) or padding not in PADDING:
        raise ValueError(f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad', got {padding!r}")
    if truncation is not None and (not hashable(truncation) or truncation not in TRUNCATION):
        raise ValueError(
            f"truncation must be a bool, 'longest_first', 'only_first' or 'only_second', got {truncation!r}"
        )
    check_length_options(padding, max_length, given["pad_to_multiple_of"], tokenizer.model_max_length)
    stride = given["stride"]
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 0:
        raise ValueError(f"stride must be a non-negative integer, got {stride!r:.40}")
    names = tokenizer.model_input_names
    if truncation is None:  # max_length alone truncates, longest first (transformers does so with a warning)
        truncation = "longest_first" if max_length is not None else False
    return EncodeOptions(
        add_special_tokens=bool(given["add_special_tokens"]),
        padding=PADDING[padding],
        truncation=TRUNCATION[truncation],
        max_length=max_length,
        stride=stride,
        is_split_into_words=bool(given["is_split_into_words"]),
        pad_to_multiple_of=given["pad_to_multiple_of"],
        padding_side=check_side(given["padding_side"] or tokenizer.padding_side, "padding_side"),
        return_tensors=check_tensor_type(given["return_tensors"]),
        return_token_type_ids=_default(given["return_token_type_ids"], "token_type_ids" in names),
        return_attention_mask=_default(given["return_attention_mask"], "attention_mask" in names),
        return_overflowing_tokens=bool(given["return_overflowing_tokens"]),
        return_special_tokens_mask=bool(given["return_special_tokens_mask"]),
        return_offsets_mapping=bool(given["return_offsets_mapping"]),
        return_length=bool(given["return_length"]),
    )


def _default(value: bool | None, default: bool) -> bool:
    return default if value is None else bool(value)


def text_inputs(text: Any, pairs: Any, split: bool) -> tuple[list[Any], bool]:
    """(backend inputs, batched): strings (or word lists with `split`), paired with `pairs` when given.

    Raises:
        TypeError: text that is not a string, a list of strings, or (with `split`) lists of words.
        ValueError: `text` and `text_pair` of different batch sizes.
    """
    batched = _is_batch(text, split)
    texts = list(text) if batched else [text]
    for index, item in enumerate(texts):
        _check_item(item, f"text[{index}]" if batched else "text", split)
    if pairs is None:
        return texts, batched
    if _is_batch(pairs, split) != batched:
        raise ValueError("text and text_pair must both be one sequence or both be batches of the same size")
    seconds = list(pairs) if batched else [pairs]
    if len(seconds) != len(texts):
        raise ValueError(f"text has {len(texts)} items but text_pair has {len(seconds)}")
    for index, item in enumerate(seconds):
        _check_item(item, f"text_pair[{index}]" if batched else "text_pair", split)
    return [(first, second) for first, second in zip(texts, seconds, strict=True)], batched


def _is_batch(text: Any, split: bool) -> bool:
    if split:
        return isinstance(text, (list, tuple)) and bool(text) and isinstance(text[0], (list, tuple))
    return isinstance(text, (list, tuple))


def _check_item(item: Any, name: str, split: bool) -> None:
    if split:
        if not isinstance(item, (list, tuple)) or not all(isinstance(word, str) for word in item):
            raise TypeError(f"{name} must be a list of words (strings) with is_split_into_words=True, got {item!r:.80}")
    elif not isinstance(item, str):
        raise TypeError(f"{name} must be a string or a list of strings, got {type(item).__name__}")


def run_backend(tokenizer: Any, inputs: list[Any], options: EncodeOptions) -> list[Any]:
    """Encode `inputs` with the backend configured for `options`; returns its `Encoding`s (overflow inside).

    Raises:
        ValueError: the backend cannot truncate to `max_length` (a sequence too short for the strategy).
    """
    backend = tokenizer._tokenizer
    limit = int(options.max_length if options.max_length is not None else tokenizer.model_max_length)
    if options.padding is not None and tokenizer.pad_token_id is None:
        raise ValueError(
            f"Asking to pad but the tokenizer's pad_token ({tokenizer.pad_token!r}) is not in its vocabulary; "
            "set one with tokenizer.add_special_tokens({'pad_token': '[PAD]'}) or pass padding=False"
        )
    if options.truncation is not None:
        _check_stride(backend, inputs, options, limit)
    with _BACKEND_LOCK:
        try:
            if options.truncation is not None:
                backend.enable_truncation(
                    min(limit, _NO_TRUNCATION_LIMIT),
                    stride=int(options.stride),
                    strategy=options.truncation,
                    direction=tokenizer.truncation_side,
                )
            if options.padding is not None:
                backend.enable_padding(
                    direction=options.padding_side,
                    pad_id=tokenizer.pad_token_id,
                    pad_type_id=0,
                    pad_token=tokenizer.pad_token,
                    length=limit if options.padding == "max_length" else None,
                    pad_to_multiple_of=options.pad_to_multiple_of,
                )
            return backend.encode_batch(
                inputs, add_special_tokens=options.add_special_tokens, is_pretokenized=options.is_split_into_words
            )
        except Exception as err:  # the Rust backend raises bare Exceptions
            raise ValueError(f"cannot encode with truncation={options.truncation!r} to {limit} tokens: {err}") from None
        except BaseException as err:  # a panic of the Rust backend (pyo3's PanicException is a BaseException)
            if type(err).__name__ != "PanicException":
                raise
            raise ValueError(
                f"cannot encode with truncation={options.truncation!r} to max_length={limit} with stride="
                f"{options.stride}: the stride must be smaller than the tokens left to the truncated sequence"
            ) from None
        finally:
            backend.no_truncation()
            backend.no_padding()


def _check_stride(backend: Any, inputs: list[Any], options: EncodeOptions, limit: int) -> None:
    """The backend panics when `stride` is not below the room truncation leaves (`max_length` minus the special
    tokens); refused here first, naming both (transformers' fast tokenizers let the panic through).

    Raises:
        ValueError: `stride` >= that room (when there is room: below it nothing is truncated).
    """
    if not options.stride or not inputs:
        return
    pairs = isinstance(inputs[0], tuple)
    specials = backend.num_special_tokens_to_add(pairs) if options.add_special_tokens else 0
    room = limit - specials
    if 0 < room <= options.stride:
        raise ValueError(
            f"stride ({options.stride}) must be smaller than max_length ({limit}) minus the {specials} special "
            f"tokens, i.e. below {room}"
        )


def encodings_to_batch(encodings: list[Any], batched: bool, options: EncodeOptions) -> BatchEncoding:
    """The backend's encodings as `transformers`' BatchEncoding: the asked columns, overflow rows after their
    sample with `overflow_to_sample_mapping`, one sequence unbatched unless tensors or overflow were asked."""
    rows, samples = [], []
    for index, encoding in enumerate(encodings):
        for row in [encoding, *encoding.overflowing] if options.return_overflowing_tokens else [encoding]:
            rows.append(row)
            samples.append(index)
    values = {
        "input_ids": [row.ids for row in rows],
        "token_type_ids": [row.type_ids for row in rows],
        "attention_mask": [row.attention_mask for row in rows],
        "special_tokens_mask": [row.special_tokens_mask for row in rows],
        "offset_mapping": [row.offsets for row in rows],
        "length": [len(row.ids) for row in rows],
    }
    data = {name: values[name] for name, option in _COLUMNS if option is None or getattr(options, option)}
    if options.return_overflowing_tokens:
        data["overflow_to_sample_mapping"] = samples
    if not batched and not options.return_overflowing_tokens and options.return_tensors is None:
        data = {name: value[0] if value and isinstance(value[0], list) else value for name, value in data.items()}
    return make_batch(data, options.return_tensors, rows)


class TextEncodingMixin:
    """`transformers`' encoding methods, for `BlipTokenizer` (which holds the backend as `_tokenizer`)."""

    def __call__(
        self,
        text: Any = None,
        text_pair: Any = None,
        text_target: Any = None,
        text_pair_target: Any = None,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        stride: int = 0,
        is_split_into_words: bool = False,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: Any = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
        verbose: bool = True,
        **kwargs: Any,
    ) -> BatchEncoding:
        """Encode one text or a batch (or pairs; words with `is_split_into_words`), with `transformers`'
        options. `text_target` is encoded the same way; its ids become `labels` (alone: its encoding).

        Raises:
            TypeError: an unknown argument or a text that is not a string / list of strings.
            ValueError: a bad option value; neither `text` nor `text_target`.
        """
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected arguments {sorted(kwargs)}")
        if text is None and text_target is None:
            raise ValueError("You need to specify either `text` or `text_target`.")
        options = resolve_options(
            self,
            add_special_tokens=add_special_tokens,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            stride=stride,
            is_split_into_words=is_split_into_words,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
            return_tensors=return_tensors,
            return_token_type_ids=return_token_type_ids,
            return_attention_mask=return_attention_mask,
            return_overflowing_tokens=return_overflowing_tokens,
            return_special_tokens_mask=return_special_tokens_mask,
            return_offsets_mapping=return_offsets_mapping,
            return_length=return_length,
        )
        encoded = None if text is None else self._encode(text, text_pair, options)
        if text_target is None:
            return encoded
        target = self._encode(text_target, text_pair_target, options)
        if encoded is None:
            return target
        encoded["labels"] = target["input_ids"]
        return encoded

    def _encode(self, text: Any, text_pair: Any, options: EncodeOptions) -> BatchEncoding:
        inputs, batched = text_inputs(text, text_pair, options.is_split_into_words)
        if not inputs:
            raise TypeError("text must be a string or a non-empty list of strings, got an empty list")
        return encodings_to_batch(run_backend(self, inputs, options), batched, options)

    def encode(self, text: Any, text_pair: Any = None, add_special_tokens: bool = True, **kwargs: Any) -> Any:
        """The `input_ids` of one sequence (a list, or a (1, T) tensor with `return_tensors`)."""
        return self.encode_plus(text, text_pair=text_pair, add_special_tokens=add_special_tokens, **kwargs)["input_ids"]

    def encode_plus(self, text: Any, text_pair: Any = None, **kwargs: Any) -> BatchEncoding:
        """`__call__` on one sequence (a string; a list of words with `is_split_into_words`).

        Raises:
            TypeError: a batch (use `batch_encode_plus` or `__call__`).
        """
        if _is_batch(text, kwargs.get("is_split_into_words", False)):
            raise TypeError(f"encode_plus takes one sequence, got a batch of {len(text)}; use batch_encode_plus")
        return self(text, text_pair=text_pair, **kwargs)

    def batch_encode_plus(self, batch_text_or_text_pairs: Sequence[Any], **kwargs: Any) -> BatchEncoding:
        """`__call__` on a batch: a list of texts, or of (text, text_pair) pairs (of word lists with
        `is_split_into_words`).

        Raises:
            TypeError: not a list, or pairs mixed with single sequences.
        """
        if not isinstance(batch_text_or_text_pairs, (list, tuple)):
            raise TypeError(f"batch_text_or_text_pairs must be a list, got {type(batch_text_or_text_pairs).__name__}")
        split = kwargs.get("is_split_into_words", False)
        is_pair = [_is_pair(item, split) for item in batch_text_or_text_pairs]
        if any(is_pair) and not all(is_pair):
            raise TypeError("batch_text_or_text_pairs mixes (text, text_pair) pairs with single sequences")
        if is_pair and is_pair[0]:
            firsts = [item[0] for item in batch_text_or_text_pairs]
            seconds = [item[1] for item in batch_text_or_text_pairs]
            return self(firsts, text_pair=seconds, **kwargs)
        return self(list(batch_text_or_text_pairs), **kwargs)

    def pad(
        self,
        encoded_inputs: Any,
        padding: bool | str = True,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: Any = None,
        verbose: bool = True,
    ) -> BatchEncoding:
        """Pad encodings (a dict of columns, a list of dicts, or a BatchEncoding; lists, arrays or tensors) as
        `transformers` does: `input_ids` with the pad id, `attention_mask` (made when missing) with 0,
        `token_type_ids` with 0, `special_tokens_mask` with 1; other columns as they are. Tensor inputs give
        tensors of their framework unless `return_tensors` says otherwise.

        Raises:
            ValueError: no `input_ids`; a bad option value.
        """
        return pad_encodings(
            self,
            encoded_inputs,
            padding=padding,
            max_length=max_length,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
            return_attention_mask=return_attention_mask,
            return_tensors=return_tensors,
        )


def _is_pair(item: Any, split: bool) -> bool:
    """A (text, text_pair) entry of `batch_encode_plus`: two strings, or two word lists with `split`."""
    if not isinstance(item, (list, tuple)) or len(item) != 2:
        return False
    if split:
        return all(isinstance(part, (list, tuple)) for part in item)
    return all(isinstance(part, str) for part in item)
