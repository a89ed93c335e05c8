"""Model cases shared by the oracle script, the PyTorch tests and the cross-framework twin tests.

A case names a class, a method, which stored inputs feed which arguments,
and extra keyword arguments. Inputs are made once (seeded) and stored in the
golden file next to `transformers`' outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tests.helpers.tiny import TINY_TEXT, TINY_VISION

BOS, SEP, PAD = TINY_TEXT["bos_token_id"], TINY_TEXT["sep_token_id"], TINY_TEXT["pad_token_id"]


def make_inputs(seed: int = 1234) -> dict[str, np.ndarray]:
    """Every input array the cases use (tiny config shapes)."""
    rng = np.random.RandomState(seed)
    size, vocab = TINY_VISION["image_size"], TINY_TEXT["vocab_size"]
    ids = rng.randint(4, 90, size=(2, 7)).astype(np.int64)
    mask = np.ones((2, 7), np.int64)
    mask[1, 5:] = 0
    ids_padded = np.where(mask == 1, ids, PAD)
    labels = np.where(mask == 1, ids, -100)
    answers = rng.randint(4, 90, size=(2, 5)).astype(np.int64)
    answers[:, 0] = BOS
    prompt = np.array([[BOS, 11, 23, SEP], [BOS, 40, 8, SEP]], np.int64)
    return {
        "pixel_values": rng.randn(2, 3, size, size).astype(np.float32),
        "pixel_values_1": rng.randn(1, 3, size, size).astype(np.float32),
        "pixel_values_wide": rng.randn(2, 3, 56, 48).astype(np.float32),
        "input_ids": ids_padded,
        "input_ids_full": ids,
        "attention_mask": mask,
        "labels": labels,
        "answers": answers,
        "prompt": prompt,
        "question_1": ids[:1, :6],
        "encoder_hidden_states": rng.randn(2, 26, 24).astype(np.float32),
        "ids_long": rng.randint(4, 90, size=(1, 12)).astype(np.int64),
        "vocab_probe": np.arange(vocab, dtype=np.int64)[None, :40],
    }


@dataclass(frozen=True)
class Case:
    name: str
    class_name: str
    method: str  # "forward", "get_text_features", ...
    inputs: dict[str, str]  # argument -> input key
    kwargs: dict[str, Any] = field(default_factory=dict)
    variant: str = "plain"  # generation weights, tests.helpers.tiny.GENERATION_VARIANTS


FLAGS = {"output_attentions": True, "output_hidden_states": True}
PIX, IDS, MASK = {"pixel_values": "pixel_values"}, {"input_ids": "input_ids"}, {"attention_mask": "attention_mask"}

FORWARD_CASES = [
    Case("vision", "BlipVisionModel", "forward", PIX, FLAGS),
    Case(
        "vision_interpolated",
        "BlipVisionModel",
        "forward",
        {"pixel_values": "pixel_values_wide"},
        {"interpolate_pos_encoding": True},
    ),
    Case("text_encoder", "BlipTextModel", "forward", {**IDS, **MASK}, FLAGS),
    Case("text_decoder_mode", "BlipTextModel", "forward", {**IDS, **MASK}, {"is_decoder": True}),
    Case(
        "text_cross",
        "BlipTextModel",
        "forward",
        {**IDS, **MASK, "encoder_hidden_states": "encoder_hidden_states"},
        FLAGS,
    ),
    Case(
        "lm_head_loss",
        "BlipTextLMHeadModel",
        "forward",
        {**IDS, **MASK, "encoder_hidden_states": "encoder_hidden_states", "labels": "labels"},
        FLAGS,
    ),
    Case(
        "lm_head_loss_none",
        "BlipTextLMHeadModel",
        "forward",
        {**IDS, **MASK, "encoder_hidden_states": "encoder_hidden_states", "labels": "labels"},
        {"reduction": "none"},
    ),
    Case("blip_model", "BlipModel", "forward", {**IDS, **PIX, **MASK}, {"return_loss": True, **FLAGS}),
    Case("blip_text_features", "BlipModel", "get_text_features", {**IDS, **MASK}),
    Case("blip_image_features", "BlipModel", "get_image_features", PIX),
    Case("blip_multimodal_features", "BlipModel", "get_multimodal_features", {**IDS, **PIX, **MASK}),
    Case("caption", "BlipForConditionalGeneration", "forward", {**PIX, **IDS, **MASK, "labels": "labels"}, FLAGS),
    Case(
        "caption_interpolated",
        "BlipForConditionalGeneration",
        "forward",
        {"pixel_values": "pixel_values_wide", **IDS, **MASK},
        {"interpolate_pos_encoding": True},
    ),
    Case("itm", "BlipForImageTextRetrieval", "forward", {**IDS, **PIX, **MASK}, FLAGS),
    Case("itc", "BlipForImageTextRetrieval", "forward", {**IDS, **PIX, **MASK}, {"use_itm_head": False}),
    Case(
        "vqa",
        "BlipForQuestionAnswering",
        "forward",
        {"input_ids": "input_ids_full", **PIX, "decoder_input_ids": "answers", "labels": "answers"},
        FLAGS,
    ),
]

# Methods of the BLIP paper that `transformers` lacks (no golden data from it): twin-tested only, and against
# their own references (tests/parity/test_retrieval_reference.py, test_vqa_ranking.py).
PAPER_CASES = [
    Case("retrieval_image_features", "BlipForImageTextRetrieval", "get_image_features", PIX),
    Case("retrieval_text_features", "BlipForImageTextRetrieval", "get_text_features", {**IDS, **MASK}),
    Case(
        "retrieval_multimodal_features",
        "BlipForImageTextRetrieval",
        "get_multimodal_features",
        {**IDS, **PIX, **MASK},
    ),
    Case(
        "vqa_rank_answers",
        "BlipForQuestionAnswering",
        "rank_answers",
        {**PIX, "input_ids": "input_ids_full", "candidate_ids": "answers"},
        {"k": 2},
    ),
]

CAPTION = "BlipForConditionalGeneration"
VQA = "BlipForQuestionAnswering"
_GENERATION_BASE = [
    Case("greedy", CAPTION, "generate", PIX),
    Case("greedy_prompt", CAPTION, "generate", {**PIX, "input_ids": "prompt"}),
    Case("greedy_lengths", CAPTION, "generate", PIX, {"max_length": 12, "min_length": 9}),
    Case("greedy_new_tokens", CAPTION, "generate", PIX, {"max_new_tokens": 6, "min_new_tokens": 4}),
    Case("greedy_repetition", CAPTION, "generate", PIX, {"repetition_penalty": 1.6, "max_new_tokens": 15}),
    Case("beam3", CAPTION, "generate", PIX, {"num_beams": 3}),
    Case("beam3_prompt", CAPTION, "generate", {**PIX, "input_ids": "prompt"}, {"num_beams": 3, "max_new_tokens": 10}),
    Case("beam3_return2", CAPTION, "generate", PIX, {"num_beams": 3, "num_return_sequences": 2, "length_penalty": 0.6}),
    Case("beam4_early", CAPTION, "generate", PIX, {"num_beams": 4, "early_stopping": True, "max_new_tokens": 12}),
    Case("beam3_never", CAPTION, "generate", PIX, {"num_beams": 3, "early_stopping": "never", "length_penalty": 1.5}),
    Case(
        "beam3_min_repetition", CAPTION, "generate", PIX, {"num_beams": 3, "min_length": 8, "repetition_penalty": 1.3}
    ),
    Case(
        "beam2_one_image",
        CAPTION,
        "generate",
        {"pixel_values": "pixel_values_1"},
        {"num_beams": 2, "length_penalty": 2.0},
    ),
    Case("vqa_greedy", VQA, "generate", {"input_ids": "input_ids_full", **PIX}),
    Case("vqa_beam3", VQA, "generate", {"input_ids": "input_ids_full", **PIX}, {"num_beams": 3, "max_new_tokens": 8}),
]

GENERATION_CASES = [
    Case(f"{variant}-{case.name}", case.class_name, case.method, case.inputs, case.kwargs, variant)
    for variant in ("plain", "varied", "eos")
    for case in _GENERATION_BASE
]
