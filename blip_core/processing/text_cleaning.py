"""The original BLIP's text cleaning before tokenizing (salesforce/BLIP `data/utils.py`, `pre_caption` and
`pre_question`), used under `protocol="original"` (VQA, retrieval, evaluation and the paper-style training batches):
the paper's captions, questions and retrieval texts went through it, `transformers`' BLIP never does.

- captions and retrieval texts: lower-cased; each of `.!"()*#:;~` becomes a space; runs of whitespace become one
  space; stripped; cut to `max_words` words (30 in the original's caption and retrieval datasets);
- questions: lower-cased; each of `.!"()*#:;~` is deleted (`?` and `,` stay); trailing spaces removed; cut to
  `max_words` words (50).
"""

from __future__ import annotations

import re

PUNCTUATION = re.compile(r"[.!\"()*#:;~]")
CAPTION_MAX_WORDS = 30
QUESTION_MAX_WORDS = 50


def _first_words(text: str, max_words: int) -> str:
    words = text.split(" ")
    return " ".join(words[:max_words]) if len(words) > max_words else text


def _checked(text: object, max_words: object, name: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a string, got {type(text).__name__}")
    if isinstance(max_words, bool) or not isinstance(max_words, int) or max_words < 1:
        raise ValueError(f"max_words must be a positive integer, got {max_words!r}")
    return text


def clean_caption(text: str, max_words: int = CAPTION_MAX_WORDS) -> str:
    """A caption or retrieval text as the original cleaned it (see the module docstring).

    Raises:
        TypeError: `text` is not a string. ValueError: `max_words` is not a positive integer.
    """
    text = PUNCTUATION.sub(" ", _checked(text, max_words, "caption").lower())
    text = re.sub(r"\s{2,}", " ", text).rstrip("\n").strip(" ")
    return _first_words(text, max_words)


def clean_question(text: str, max_words: int = QUESTION_MAX_WORDS) -> str:
    """A VQA question as the original cleaned it (see the module docstring).

    Raises:
        TypeError: `text` is not a string. ValueError: `max_words` is not a positive integer.
    """
    text = PUNCTUATION.sub("", _checked(text, max_words, "question").lower()).rstrip(" ")
    return _first_words(text, max_words)
