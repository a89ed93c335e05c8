"""What each pipeline task computes for one batch of items, with `transformers`' output records.

Every function takes the pipeline (its model, processor and runtime), a non-empty list of items
and the merged options, and returns one result per item: a list of records (one per returned
sequence, or one per candidate label). Models run through `pipe.runtime`; no torch or tensorflow
import here.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import numpy as np

from blip_core.config.model_constants import ITC_TEMPERATURE
from blip_core.generation.options import quiet_length_cap
from blip_core.processing.image_loading import to_pil_or_array
from blip_core.tasks.pipeline_inputs import Item, as_label_list
from blip_core.tasks.pipeline_options import return_type
from blip_core.tasks.pipeline_runtime import to_numpy

# transformers' image-to-text, image-text-to-text and VQA pipelines generate up to 256 new tokens
# unless the call, or the checkpoint's generation settings, say otherwise.
PIPELINE_MAX_NEW_TOKENS = 256
DEFAULT_HYPOTHESIS_TEMPLATE = "This is a photo of {}."  # transformers' zero-shot default
_LENGTH_OPTIONS = ("max_new_tokens", "max_length", "generation_config")


def load_images(items: list[Item], timeout: float | None) -> list[Any]:
    """Each item's image as a PIL image or array (paths and URLs opened, within `timeout` seconds)."""
    return [to_pil_or_array(item.image, timeout=timeout) for item in items]


def length_default(model: Any, generate: dict[str, Any]) -> dict[str, Any]:
    """The pipeline's `max_new_tokens=256`, unless the call or the model's generation settings set a length."""
    if any(name in generate for name in _LENGTH_OPTIONS):
        return {}
    config = getattr(model, "generation_config", None)
    if getattr(config, "max_new_tokens", None) is not None or getattr(config, "max_length", None) not in (None, 20):
        return {}
    return {"max_new_tokens": PIPELINE_MAX_NEW_TOKENS}


def _text_options(options: dict[str, Any]) -> dict[str, Any]:
    chosen = {"padding": options.get("padding") or True}  # a batch of texts is always padded, as transformers collates
    for name in ("truncation", "max_length"):
        if options.get(name) is not None:
            chosen[name] = options[name]
    return chosen


def _generate(pipe: Any, items: list[Item], options: dict[str, Any]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(generated ids (N*n, T), the processor's NumPy batch) for the items' images and texts."""
    images = load_images(items, options.get("timeout"))
    texts = [item.text for item in items]
    if texts[0] is None:
        batch = dict(pipe.processor(images=images, return_tensors="np"))
    else:
        batch = dict(pipe.processor(images=images, text=texts, return_tensors="np", **_text_options(options)))
    default = length_default(pipe.model, options["generate"])
    # The pipeline's 256 meeting a short position table is no news to the user. Not `warnings.catch_warnings`:
    # it swaps the process-wide filters, and threads running pipelines at once would leave theirs behind.
    with quiet_length_cap() if default else contextlib.nullcontext():
        out = pipe.runtime.run(
            pipe.model.generate, **pipe.runtime.tensors(batch, pipe.model), **default, **options["generate"]
        )
    return to_numpy(getattr(out, "sequences", out)), batch


def _per_item(rows: list[Any], count: int) -> list[list[Any]]:
    """Rows grouped by item: `num_return_sequences` consecutive rows each."""
    if not rows or len(rows) % count:
        raise RuntimeError(f"generate returned {len(rows)} sequences for {count} inputs")
    size = len(rows) // count
    return [rows[i * size : (i + 1) * size] for i in range(count)]


def caption(pipe: Any, items: list[Item], options: dict[str, Any]) -> list[list[dict[str, str]]]:
    """image-to-text: [{"generated_text": ...}] per image (a prompt stays at the caption's start)."""
    ids, _ = _generate(pipe, items, options)
    texts = pipe.processor.batch_decode(ids, skip_special_tokens=True)
    return [[{"generated_text": text} for text in group] for group in _per_item(texts, len(items))]


def answer(pipe: Any, items: list[Item], options: dict[str, Any]) -> list[list[dict[str, str]]]:
    """visual-question-answering: [{"answer": ...}] per (image, question); with `candidate_answers`, the
    `top_k` best candidates [{"answer", "score"}] (`vqa_ranking`); `protocol="original"` encodes questions as
    the original BLIP did."""
    if options.get("candidate_answers") is not None or options.get("protocol", "transformers") != "transformers":
        from blip_core.tasks import vqa_ranking

        options = {"protocol": "transformers", **options}
        vqa_ranking.check_protocol(options["protocol"])
        if options.get("candidate_answers") is not None:
            return vqa_ranking.ranked_answers(pipe, items, options)
        return vqa_ranking.generated_answers(pipe, items, options)
    ids, _ = _generate(pipe, items, options)
    texts = pipe.processor.batch_decode(ids, skip_special_tokens=True)
    return [[{"answer": text.strip()} for text in group] for group in _per_item(texts, len(items))]


def after_prompt(text: str, prompt: str) -> str:
    """`text` without the decoded prompt it starts with (found within its first 2 characters)."""
    index = text.find(prompt)
    return text[index + len(prompt) :] if 0 <= index <= 2 else text


def _stop_at(pipe: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Options where `stop_sequence`'s first token also ends generation (beside the model's own end).

    `transformers` makes that token the only end token, so a caption runs on past its [SEP]; here
    generation stops at whichever comes first.
    """
    stop = options.get("stop_sequence")
    if stop is None:
        return options
    if not isinstance(stop, str) or not stop.strip():
        raise ValueError(f"stop_sequence must be a non-empty string, got {stop!r}")
    ids = pipe.processor.tokenizer(stop, add_special_tokens=False)["input_ids"]
    if len(ids) > 1:
        warnings.warn(f"stop_sequence {stop!r} is {len(ids)} tokens: generation stops at its first", stacklevel=4)
    given = options["generate"].get("eos_token_id", pipe.model.config.text_config.sep_token_id)
    ends = [*(given if isinstance(given, (list, tuple)) else [given]), ids[0]]
    return {**options, "generate": {**options["generate"], "eos_token_id": ends}}


def prompted(pipe: Any, items: list[Item], options: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """image-text-to-text: [{"input_text", "generated_text"}] (or "generated_token_ids") per (image, prompt)."""
    ids, batch = _generate(pipe, items, _stop_at(pipe, options))
    kind = return_type(options)
    decode = {"skip_special_tokens": options.get("skip_special_tokens", True)}
    if options.get("clean_up_tokenization_spaces") is not None:
        decode["clean_up_tokenization_spaces"] = options["clean_up_tokenization_spaces"]
    results = []
    for item, rows, prompt_ids in zip(items, _per_item(list(ids), len(items)), batch["input_ids"], strict=True):
        if kind == "tensors":
            results.append(
                [{"input_text": item.text, "generated_token_ids": pipe.runtime.framework_tensor(r)} for r in rows]
            )
            continue
        prompt = pipe.processor.decode(prompt_ids, **decode)
        new = [after_prompt(pipe.processor.decode(row, **decode), prompt) for row in rows]
        texts = [item.text + text for text in new] if kind == "full_text" else new
        results.append([{"input_text": item.text, "generated_text": text} for text in texts])
    return results


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _ranked(scores: np.ndarray, labels: list[str], top_k: int | None) -> list[dict[str, Any]]:
    order = np.argsort(-scores, kind="stable")[:top_k]
    return [{"score": float(scores[i]), "label": labels[i]} for i in order]


def match_probabilities(pipe: Any, image: Any, texts: list[str], **text_options: Any) -> tuple[np.ndarray, Any]:
    """(P(match) from the ITM head per text, the encoded NumPy batch) for one image and many texts."""
    options = {"padding": True, **text_options}
    batch = dict(pipe.processor(images=[image], text=texts, return_tensors="np", **options))
    inputs = pipe.runtime.tensors(batch, pipe.model)
    itm = to_numpy(pipe.runtime.run(pipe.model, **inputs, use_itm_head=True).itm_score)
    return _softmax(itm.astype(np.float64))[:, 1], inputs


def zero_shot(pipe: Any, items: list[Item], options: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """zero-shot-image-classification: [{"score", "label"}] per image, best first, scores summing to 1.

    `scoring="itc"` (the default for a `BlipModel`, as `transformers`): softmax of the contrastive logits, one
    pass per image and label; on a retrieval checkpoint the cosines of `get_image_features`/`get_text_features`
    over `ITC_TEMPERATURE` (0.07, the original's initial temperature). `scoring="itm"` (the default for a
    retrieval checkpoint): each label's match odds from the ITM head, normalised to sum to 1; slower (one
    cross-attention pass per image and label), more precise; a `BlipModel` has no ITM head.
    """
    labels = as_label_list(options.get("candidate_labels"))
    template = options.get("hypothesis_template") or DEFAULT_HYPOTHESIS_TEMPLATE
    sequences = [template.format(label) for label in labels]
    images = load_images(items, options.get("timeout"))
    text_options = dict(options.get("tokenizer_kwargs") or {})
    contrastive = type(pipe.model).__name__.removeprefix("TF") == "BlipModel"
    scoring = options.get("scoring") or ("itc" if contrastive else "itm")
    if contrastive and scoring == "itm":
        raise ValueError(
            "scoring='itm' needs a retrieval checkpoint (BlipForImageTextRetrieval): BlipModel has no ITM head"
        )
    if contrastive:
        text_options.setdefault("padding", True)
        batch = dict(pipe.processor(images=images, text=sequences, return_tensors="np", **text_options))
        logits = to_numpy(pipe.runtime.run(pipe.model, **pipe.runtime.tensors(batch, pipe.model)).logits_per_image)
        probabilities = list(_softmax(logits.astype(np.float32)))
    elif scoring == "itc":
        cosines = _itc_cosines(pipe, images, sequences, text_options)
        probabilities = list(_softmax(cosines.astype(np.float64) / ITC_TEMPERATURE).astype(np.float32))
    else:
        probabilities = []
        for image in images:
            match, _ = match_probabilities(pipe, image, sequences, **text_options)
            log_odds = np.log(np.clip(match, 1e-12, 1)) - np.log(np.clip(1 - match, 1e-12, 1))
            probabilities.append(_softmax(log_odds))
    return [_ranked(p, labels, options.get("top_k")) for p in probabilities]


def _itc_cosines(pipe: Any, images: list[Any], texts: list[str], text_options: dict[str, Any]) -> np.ndarray:
    """(images, texts) ITC cosines of a retrieval model: each image and each text embedded once."""
    model, runtime = pipe.model, pipe.runtime
    pixels = runtime.tensors(dict(pipe.processor(images=images, return_tensors="np")), model)
    text = dict(pipe.processor(text=texts, return_tensors="np", **{"padding": True, **text_options}))
    text = runtime.tensors({key: text[key] for key in ("input_ids", "attention_mask")}, model)
    image_features = to_numpy(runtime.run(model.get_image_features, **pixels)).astype(np.float32)
    text_features = to_numpy(runtime.run(model.get_text_features, **text)).astype(np.float32)
    return image_features @ text_features.T


def match(pipe: Any, items: list[Item], options: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """image-text-matching: [{"text", "itm_score", "itc_score"}] per image, in the texts' order."""
    text = options.get("text")
    if text is None:
        raise ValueError("image-text-matching needs text: pipe(image, text=['a cat', 'a dog'])")
    texts = [text] if isinstance(text, str) else list(text)
    if not texts:
        raise ValueError("image-text-matching needs at least one text")
    results = []
    for image in load_images(items, options.get("timeout")):
        probability, inputs = match_probabilities(pipe, image, texts)
        cosine = to_numpy(pipe.runtime.run(pipe.model, **inputs, use_itm_head=False).itm_score)[0]
        results.append(
            [
                {"text": t, "itm_score": float(m), "itc_score": float(c)}
                for t, m, c in zip(texts, probability, cosine, strict=True)
            ]
        )
    return results


RUNNERS = {
    "image-to-text": caption,
    "image-text-to-text": prompted,
    "visual-question-answering": answer,
    "zero-shot-image-classification": zero_shot,
    "image-text-matching": match,
}
