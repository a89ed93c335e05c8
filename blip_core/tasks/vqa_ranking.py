"""Visual question answering the paper's way, for the pipeline: ranking a list of candidate answers
(`rank_answers`) and the original protocol (questions cleaned, cut to 35 tokens and started with [ENC]).

Used by `pipeline_tasks.answer` when the call gives `candidate_answers` or `protocol="original"`.
Framework-neutral.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from blip_core.config.model_constants import ENC_TOKEN_ID
from blip_core.modeling.answer_ranking import DEFAULT_RANK_K
from blip_core.processing.image_loading import to_pil_or_array
from blip_core.processing.text_cleaning import clean_question
from blip_core.tasks.pipeline_inputs import Item
from blip_core.tasks.pipeline_runtime import to_numpy

PROTOCOLS = ("transformers", "original")
ORIGINAL_QUESTION_LENGTH = 35  # the original cuts questions to 35 tokens
DEFAULT_TOP_K = 5  # transformers' visual-question-answering default
# The original's `inference='generate'` settings (configs/vqa.yaml, models/blip_vqa.py), with its beam rule.
ORIGINAL_GENERATION = {"num_beams": 3, "max_length": 10, "min_length": 1, "beam_length_rule": "whole_sequence"}


def check_protocol(protocol: Any) -> str:
    """Raises ValueError for a protocol other than "transformers" and "original"."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    return protocol


def candidate_list(value: Any) -> list[str]:
    """`candidate_answers` as a list of strings.

    Raises TypeError (not a list of strings), ValueError (empty, or an empty answer)."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise TypeError(f"candidate_answers must be a list of strings, got {type(value).__name__}")
    answers = list(value)
    if not answers:
        raise ValueError("candidate_answers is empty: give at least one candidate answer")
    if not all(isinstance(answer, str) and answer.strip() for answer in answers):
        raise ValueError("candidate_answers must hold non-empty strings")
    return answers


def question_batch(processor: Any, model: Any, questions: list[str], protocol: str) -> dict[str, np.ndarray]:
    """The questions' `input_ids` and `attention_mask` (NumPy) as `protocol` encodes them.

    Raises ValueError under "original" when the model's vocabulary has no [ENC] (id 30523)."""
    if check_protocol(protocol) == "transformers":
        return dict(processor.encode_questions(questions, return_tensors="np"))
    vocab_size = model.config.text_config.vocab_size
    if vocab_size <= ENC_TOKEN_ID:
        raise ValueError(
            f"protocol='original' starts questions with [ENC] (id {ENC_TOKEN_ID}), but this model's vocabulary has "
            f"{vocab_size} tokens; use protocol='transformers'"
        )
    cleaned = [clean_question(question) for question in questions]
    encoded = processor.encode_questions(
        cleaned, text_start_token="[ENC]", truncation=True, max_length=ORIGINAL_QUESTION_LENGTH, return_tensors="np"
    )
    return dict(encoded)


def _inputs(pipe: Any, items: list[Item], options: dict[str, Any]) -> dict[str, np.ndarray]:
    images = [to_pil_or_array(item.image, timeout=options.get("timeout")) for item in items]
    pixels = pipe.processor(images=images, return_tensors="np")["pixel_values"]
    questions = question_batch(pipe.processor, pipe.model, [item.text for item in items], options["protocol"])
    return {"pixel_values": pixels, **questions}


def _candidates(pipe: Any, answers: list[str]) -> dict[str, np.ndarray]:
    """The tokenized candidates, kept on the pipeline for the next call with the same list."""
    key = tuple(answers)
    cached = getattr(pipe, "_vqa_candidates", None)
    if cached is None or cached[0] != key:
        cached = (key, dict(pipe.processor.tokenize_answers(answers, return_tensors="np")))
        pipe._vqa_candidates = cached
    return cached[1]


def ranked_answers(pipe: Any, items: list[Item], options: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """[{"answer", "score"}] per (image, question), best first: `top_k` (default 5) of the candidates,
    the score being `rank_answers`' (minus the original's label-smoothed loss: higher is better)."""
    answers = candidate_list(options["candidate_answers"])
    if options["generate"]:
        raise TypeError(f"generation options {sorted(options['generate'])} do not apply to candidate_answers")
    top_k = options.get("top_k") or DEFAULT_TOP_K
    batch = _inputs(pipe, items, options)
    candidates = _candidates(pipe, answers)
    inputs = pipe.runtime.tensors({**batch, **{"candidate_" + k: v for k, v in candidates.items()}}, pipe.model)
    inputs["candidate_ids"] = inputs.pop("candidate_input_ids")
    out = pipe.runtime.run(pipe.model.rank_answers, **inputs, k=DEFAULT_RANK_K)
    indices, scores = to_numpy(out.indices), to_numpy(out.scores).astype(np.float32)
    return [
        [{"answer": answers[int(i)], "score": float(s)} for i, s in zip(row[:top_k], values[:top_k], strict=True)]
        for row, values in zip(indices, scores, strict=True)
    ]


def generated_answers(pipe: Any, items: list[Item], options: dict[str, Any]) -> list[list[dict[str, str]]]:
    """[{"answer"}] per (image, question) generated under the original protocol: cleaned questions starting with
    [ENC], beam 3, max length 10, min length 1 and the whole-sequence beam rule unless the call says otherwise."""
    batch = _inputs(pipe, items, options)
    settings = {**ORIGINAL_GENERATION, **options["generate"]}
    if "max_new_tokens" in options["generate"]:
        settings.pop("max_length")
    out = pipe.runtime.run(pipe.model.generate, **pipe.runtime.tensors(batch, pipe.model), **settings)
    texts = pipe.processor.batch_decode(to_numpy(getattr(out, "sequences", out)), skip_special_tokens=True)
    size = len(texts) // len(items)
    return [[{"answer": text.strip()} for text in texts[i * size : (i + 1) * size]] for i in range(len(items))]
