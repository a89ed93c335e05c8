"""Tied, ignored and tolerated keys (REFERENCE §0.5, §2.3).

The LM head's decoder weight is tied to the word embeddings and its bias to
`cls.predictions.bias`. A file that lacks them gets them tied; a file whose
decoder weight equals its source is tied too; a file holding a *different*
decoder (an untied fine-tune saved by an older `transformers`) keeps its own
values: trained weights are never silently replaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Keys that old checkpoints hold and no model needs (non-persistent buffers).
IGNORED_SUFFIXES = ("embeddings.position_ids",)

# Where an LM head sits in each class.
LM_HEAD_PREFIXES: dict[str, tuple[str, ...]] = {
    "BlipTextLMHeadModel": ("",),
    "BlipForConditionalGeneration": ("text_decoder.",),
    "BlipForQuestionAnswering": ("text_decoder.",),
}


@dataclass(frozen=True)
class TiedPair:
    """`alias` shares the tensor of `source` unless the file holds a different `alias`."""

    alias: str
    source: str
    needs_flag: str | None  # config attribute that enables the tie, if any


def tied_pairs(class_name: str, config: Any) -> list[TiedPair]:
    """The tie rules of one class; the weight tie follows `tie_word_embeddings`."""
    name = class_name[2:] if class_name.startswith("TFBlip") else class_name
    text = getattr(config, "text_config", config)
    pairs = []
    for prefix in LM_HEAD_PREFIXES.get(name, ()):
        if getattr(text, "tie_word_embeddings", True):
            pairs.append(
                TiedPair(
                    f"{prefix}cls.predictions.decoder.weight",
                    f"{prefix}bert.embeddings.word_embeddings.weight",
                    "tie_word_embeddings",
                )
            )
        pairs.append(TiedPair(f"{prefix}cls.predictions.decoder.bias", f"{prefix}cls.predictions.bias", None))
    return pairs


def is_ignored(name: str) -> bool:
    return name.endswith(IGNORED_SUFFIXES)


def saved_names(names: list[str], class_name: str, config: Any, untied: frozenset[str] = frozenset()) -> list[str]:
    """Names `save_pretrained` writes: tied aliases are omitted, as `transformers` does."""
    dropped = {pair.alias for pair in tied_pairs(class_name, config)} - set(untied)
    return [name for name in names if name not in dropped]
