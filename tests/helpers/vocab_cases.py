"""Vocabulary-growth cases shared by the golden script (run on `transformers`) and the tests (run on blip-dual).

`TOKEN_OPS` are applied in order to a tokenizer that starts from the BLIP files (BERT plus
[DEC]/[ENC]); `RESIZE_CASES` resize tiny seeded models.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from tokenizers import AddedToken

# (label, operation): each returns what the tokenizer method returns (the number of tokens added).
TOKEN_OPS: list[tuple[str, Any]] = [
    ("words", lambda t: t.add_tokens(["<obj>", "hello", "NewWord"])),
    ("one string", lambda t: t.add_tokens("solo")),
    ("again", lambda t: t.add_tokens(["NewWord", "<obj>"])),
    ("special AddedToken", lambda t: t.add_tokens([AddedToken("[LOC]", special=True, normalized=False)])),
    ("lstrip AddedToken", lambda t: t.add_tokens(AddedToken("<box>", lstrip=True, normalized=False))),
    ("special_tokens=True", lambda t: t.add_tokens(["[BIG]"], special_tokens=True)),
    ("additional", lambda t: t.add_special_tokens({"additional_special_tokens": ["[OBJ]", "[REL]"]})),
    ("existing pad", lambda t: t.add_special_tokens({"pad_token": "[PAD]"})),
    (
        "additional kept",
        lambda t: t.add_special_tokens(
            {"additional_special_tokens": [AddedToken("[X]", rstrip=True, normalized=False)]},
            replace_additional_special_tokens=False,
        ),
    ),
    ("eos", lambda t: t.add_special_tokens({"eos_token": "[EOS]"})),
]

ADDED_CONTENTS = ["<obj>", "hello", "NewWord", "solo", "[LOC]", "<box>", "[BIG]", "[OBJ]", "[REL]", "[X]", "[EOS]"]

TEXTS = [
    "a <obj> on the NewWord table",
    "HELLO solo [LOC] [OBJ] x [REL]",
    "look <box>here [X]  and [BIG]",
    "[DEC] newword [ENC] [EOS] [PAD]",
]


class ResizeCase(NamedTuple):
    name: str
    class_name: str
    tied: bool
    new_num_tokens: int | None
    pad_to_multiple_of: int | None = None


RESIZE_CASES = [
    ResizeCase("lm_head_grow", "BlipTextLMHeadModel", True, 103),
    ResizeCase("lm_head_untied", "BlipTextLMHeadModel", False, 103),
    ResizeCase("caption_pad", "BlipForConditionalGeneration", True, 101, 8),
    ResizeCase("caption_untied", "BlipForConditionalGeneration", False, 103),
    ResizeCase("text_shrink", "BlipTextModel", True, 98),
    ResizeCase("itm_grow", "BlipForImageTextRetrieval", True, 103),
    ResizeCase("blip_model_grow", "BlipModel", True, 103),
    ResizeCase("vqa_grow", "BlipForQuestionAnswering", True, 103),
    ResizeCase("pad_only", "BlipForConditionalGeneration", True, None, 16),
]
