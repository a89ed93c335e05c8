"""Growing or shrinking a model's token vocabulary (`resize_token_embeddings`): the rules both trees follow.

Which tensors change (the word embeddings of every text stack, the LM head's bias, an untied
decoder), the new size (`pad_to_multiple_of`), and the values of added rows are decided here,
in NumPy, so PyTorch and Keras produce the same rows:

- kept rows are copied; shrinking drops rows from the end;
- `mean_resizing=True` (the default): added embedding rows, and added rows of an untied LM-head
  decoder, are the mean of the old rows. `transformers` draws them from a normal distribution
  with that mean and covariance 1e-9 x the rows' covariance: the same within ~3e-5 x their spread,
  but random; here they are exact and identical in both frameworks;
- `mean_resizing=False`: added rows are drawn from N(0, initializer_range^2) by NumPy, seeded by
  the parameter's name and the sizes (deterministic, the same in both frameworks);
- the LM head's bias: a tied head pads it with zeros (as `transformers` does when it re-ties);
  an untied head's added entries are the old bias's mean (zeros with `mean_resizing=False`).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from blip_core.weights.names import EMBEDDING, LINEAR, RAW, expected_params

WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"
LM_BIAS = "cls.predictions.bias"
DECODER_WEIGHT = "cls.predictions.decoder.weight"
DECODER_BIAS = "cls.predictions.decoder.bias"
ROWS, TIED_BIAS, HEAD_BIAS = "rows", "tied_bias", "head_bias"


@dataclass(frozen=True)
class VocabParam:
    """A parameter with one entry per token: canonical name, module kind, and how added entries are filled."""

    name: str
    kind: str
    rule: str


def text_config_of(config: Any, class_name: str) -> Any:
    """The text config whose `vocab_size` a model's token embeddings follow; ValueError for vision-only classes."""
    text = getattr(config, "text_config", config)
    if not hasattr(text, "vocab_size"):
        raise ValueError(f"{class_name} has no text model, so no token embeddings to resize")
    return text


def new_vocab_size(text_config: Any, new_num_tokens: int | None, pad_to_multiple_of: int | None) -> int | None:
    """The size `resize_token_embeddings` makes (None: leave the model as it is), validated.

    Raises ValueError for a size that is not a positive int, or that would drop a token id the
    model itself uses (pad, BOS or SEP).
    """
    for value, name in ((new_num_tokens, "new_num_tokens"), (pad_to_multiple_of, "pad_to_multiple_of")):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    if new_num_tokens is None and pad_to_multiple_of is None:
        return None
    size = int(text_config.vocab_size if new_num_tokens is None else new_num_tokens)
    if pad_to_multiple_of is not None:
        size = -(-size // int(pad_to_multiple_of)) * int(pad_to_multiple_of)
    for field in ("pad_token_id", "bos_token_id", "sep_token_id"):
        token = getattr(text_config, field, None)
        if isinstance(token, int) and token >= size:
            raise ValueError(
                f"resizing the token embeddings to {size} rows would drop token {token}, the model's {field}; "
                f"keep at least {token + 1} rows, or change config.text_config.{field} first"
            )
    return size


def vocab_params(class_name: str, config: Any, untied: frozenset[str]) -> list[VocabParam]:
    """Every parameter of `class_name` with one entry per token, in checkpoint order.

    A tied LM-head decoder shares the word embeddings (resized with them); an untied one
    (named in `untied`) is resized itself.
    """
    head_untied = any(name.endswith(DECODER_WEIGHT) for name in untied)
    found = []
    for spec in expected_params(class_name, config):
        if spec.name.endswith(WORD_EMBEDDINGS):
            found.append(VocabParam(spec.name, EMBEDDING, ROWS))
        elif spec.name.endswith(LM_BIAS):
            found.append(VocabParam(spec.name, RAW, HEAD_BIAS if head_untied else TIED_BIAS))
        elif spec.name.endswith(DECODER_WEIGHT) and spec.name in untied:
            found.append(VocabParam(spec.name, LINEAR, ROWS))
        elif spec.name.endswith(DECODER_BIAS) and spec.name in untied:
            found.append(VocabParam(spec.name, LINEAR, HEAD_BIAS))
    return found


def resized(old: np.ndarray, size: int, param: VocabParam, mean_resizing: bool = True, std: float = 0.02) -> np.ndarray:
    """`old` (torch layout: (tokens, width) or (tokens,)) with `size` entries along axis 0, as float32.

    Kept entries are copied exactly; added ones follow `param.rule` (module docstring).
    """
    old = np.asarray(old, dtype=np.float32)
    kept, added = min(len(old), size), max(size - len(old), 0)
    if not added:
        return old[:kept].copy()
    if param.rule == ROWS and mean_resizing:
        fill = np.broadcast_to(old.mean(axis=0, dtype=np.float64).astype(np.float32), (added, *old.shape[1:]))
    elif param.rule == ROWS:
        seed = zlib.crc32(f"{param.name}:{len(old)}:{size}".encode())
        fill = np.random.default_rng(seed).normal(0.0, std, (added, *old.shape[1:])).astype(np.float32)
    elif param.rule == HEAD_BIAS and mean_resizing:
        fill = np.full((added,), old.mean(dtype=np.float64), np.float32)
    else:
        fill = np.zeros((added, *old.shape[1:]), np.float32)
    return np.concatenate([old, fill])
