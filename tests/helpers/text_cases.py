"""Tokenizer cases shared by the golden-file script and the tests."""

from __future__ import annotations

SENTENCES = [
    "a picture of",
    "A woman sitting on the beach with her dog.",
    "Héllo Wörld, café naïve façade: ÉCOLE!",
    "don't stop: it's 3.14 (pi) & 42% -- \"quoted\" [brackets] {braces} <tags>",
    "中文字符 and emoji 😀🐈 mixed with العربية and ελληνικά",
    "   leading\tand trailing\nwhitespace   ",
    "",
    "the [SEP] token and [CLS] inside text, and [MASK] too",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "how many circles are there?",
]
LONG_TEXT = " ".join(f"word{i % 37} and the {i}th cat" for i in range(160))

ENCODE_CASES = [
    *[(f"single_{i}", text, {}) for i, text in enumerate(SENTENCES)],
    ("batch_padded", SENTENCES[:4], {"padding": True}),
    ("batch_padded_left", SENTENCES[:4], {"padding": True, "padding_side": "left"}),
    ("max_length_padding", SENTENCES[:3], {"padding": "max_length", "max_length": 16, "truncation": True}),
    ("truncate_only", SENTENCES[2:5], {"truncation": True, "max_length": 9}),
    ("max_length_implies_truncation", SENTENCES[3], {"max_length": 7}),
    ("no_special_tokens", SENTENCES[:3], {"add_special_tokens": False, "padding": "longest"}),
    ("long_text_truncated", LONG_TEXT, {"truncation": True}),
    ("long_text_max20", LONG_TEXT, {"truncation": True, "max_length": 20}),
    ("pad_to_multiple", SENTENCES[:2], {"padding": True, "pad_to_multiple_of": 8}),
]

DECODE_IDS = [
    [101, 1037, 3861, 1997, 1037, 2450, 3564, 2006, 1996, 3509, 2007, 2014, 3899, 102],
    [101, 2123, 1005, 1056, 2644, 1024, 2009, 1005, 1055, 1017, 1012, 2403, 102, 0, 0],
    [1037, 1010, 1038, 1029, 999, 1005, 1049, 2572, 100, 103],
    [101, 102, 0],
]
