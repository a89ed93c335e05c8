"""CapFilt (BLIP paper, section 3.3): a captioner writes synthetic captions for web images, and an image-text
matching (ITM) filter keeps a text, web or synthetic, when its match probability is above a threshold.

The original code was never released; this follows the paper: captions by nucleus sampling (`top_p=0.9`) or
beam search, a text kept when the ITM head's match probability `softmax(itm_logits)[1]` exceeds `threshold`
(0.5: the head's own decision). Every probability is written, with the ITC cosine of the same pair, so a
dataset can be filtered again at another threshold without running the models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blip_core.bulk.jobs import (
    CAPFILT_COLUMNS,
    ORIGINAL_TEXT_LENGTH,
    SAMPLING_MODES,
    RuntimeSpec,
    _generate,
    _identity,
    _padded,
    _pipeline,
    _run,
    _seeds,
    image_processors,
)
from blip_core.bulk.prepare import Prepared, distinct_processors
from blip_core.tasks.pipeline_tasks import after_prompt

NUCLEUS_TOP_P = 0.9  # the paper's nucleus sampling
BEAMS = 3
MAX_NEW_TOKENS = 30  # captions' length unless given: the original's max_length=30 (texts are scored on 35 tokens)


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def _has_text(text: str | None) -> bool:
    return isinstance(text, str) and bool(text.strip())


class CapFiltRunner:
    """Synthetic captions and ITM/ITC scores of a batch (the captioner and the filter loaded once)."""

    def __init__(self, job: CapFiltJob) -> None:
        self.job = job
        self.captioner = _pipeline("image-to-text", job.captioner, job.runtime)
        self.filter = _pipeline("image-text-matching", job.filter_model, job.runtime)
        if not hasattr(self.filter.model, "itm_head"):
            raise ValueError(f"the filter {job.filter_model!r} has no ITM head: give a BlipForImageTextRetrieval")
        both = [self.captioner.processor.image_processor, self.filter.processor.image_processor]
        self.image_processors, self.pixel_index = distinct_processors(both)
        lengths = ("max_new_tokens", "max_length")
        default = {} if any(name in dict(job.generate) for name in lengths) else {"max_new_tokens": MAX_NEW_TOKENS}
        self.generate, self.quiet = {**default, **job.generation_options()}, bool(default)
        tokenizer = self.captioner.processor.tokenizer
        prompt_ids = tokenizer(job.prompt, add_special_tokens=False)["input_ids"] if job.prompt else []
        self.prompt_text = tokenizer.decode(prompt_ids, skip_special_tokens=True).strip()

    def run(self, items: list[Prepared]) -> list[dict[str, Any]]:
        captions = self._captions(items)
        web = [item.text if _has_text(item.text) else "" for item in items]
        texts = [[text, *group] for text, group in zip(web, captions, strict=True)]
        probability, cosine = self._scores(items, texts)
        pairs = enumerate(zip(items, captions, strict=True))
        return [self._row(item, group, probability[i], cosine[i]) for i, (item, group) in pairs]

    def _captions(self, items: list[Prepared]) -> list[list[str]]:
        """`num_captions` synthetic captions per item (the prompt removed, as the original does)."""
        size, job = self.job.batch_size, self.job
        arrays = {"pixel_values": _padded(items, size, self.pixel_index[0])}
        if job.prompt:
            prompt = self.captioner.processor.tokenizer([job.prompt] * size, return_tensors="np")
            arrays |= {"input_ids": prompt["input_ids"], "attention_mask": prompt["attention_mask"]}
        options = dict(self.generate)
        if job.sampling == "nucleus":
            options["sampling_seeds"] = _seeds(items, size, job.seed)
        ids = _generate(self.captioner, options, self.quiet, arrays)
        decoded = self.captioner.processor.batch_decode(ids, skip_special_tokens=True)
        texts = [after_prompt(text, self.prompt_text).strip() for text in decoded]  # an empty prompt removes nothing
        count = job.num_captions
        return [texts[i * count : (i + 1) * count] for i in range(len(items))]

    def _scores(self, items: list[Prepared], texts: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        """(ITM match probabilities, ITC cosines), each (items, 1 + num_captions) float32."""
        size, per_item = self.job.batch_size, 1 + self.job.num_captions
        model = self.filter.model
        flat = [text for group in texts for text in group]
        flat += flat[:per_item] * (size - len(items))  # the padding rows' texts: copies of the first item's
        input_ids, attention_mask = self._tokens(flat)
        pixels = _padded(items, size, self.pixel_index[1])
        states = _run(
            self.filter, lambda pixel_values: model.vision_model(pixel_values=pixel_values)[0], pixel_values=pixels
        )
        image_features = _unit(_run(self.filter, lambda cls: model.vision_proj(cls), cls=states[:, 0]))
        text_features = _unit(
            _run(self.filter, model.get_text_features, input_ids=input_ids, attention_mask=attention_mask)
        )
        itm_ids = input_ids.copy()
        if self.job.protocol == "original":
            from blip_core.config.model_constants import ENC_TOKEN_ID

            itm_ids[:, 0] = ENC_TOKEN_ID  # [ENC] first in the ITM pass only, as the original

        def itm_logits(image_embeds: Any, input_ids: Any, attention_mask: Any) -> Any:
            features = model.get_multimodal_features(
                input_ids=input_ids, attention_mask=attention_mask, image_embeds=image_embeds
            )
            return model.itm_head(features)

        logits = _run(
            self.filter,
            itm_logits,
            image_embeds=np.repeat(states, per_item, axis=0),
            input_ids=itm_ids,
            attention_mask=attention_mask,
        ).astype(np.float64)
        probability = np.exp(logits[:, 1] - np.logaddexp(logits[:, 0], logits[:, 1])).astype(np.float32)
        cosine = np.einsum("id,ijd->ij", image_features, text_features.reshape(size, per_item, -1))
        return probability.reshape(size, per_item)[: len(items)], cosine[: len(items)].astype(np.float32)

    def _tokens(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Every text padded or cut to `max_text_length` tokens (a fixed shape), cleaned under "original"."""
        if self.job.protocol == "original":
            from blip_core.processing.text_cleaning import clean_caption

            texts = [clean_caption(text) for text in texts]
        batch = self.filter.processor.tokenizer(
            texts, padding="max_length", truncation=True, max_length=self.job.max_text_length, return_tensors="np"
        )
        return np.asarray(batch["input_ids"], np.int64), np.asarray(batch["attention_mask"], np.int64)

    def _row(self, item: Prepared, captions: list[str], probability: np.ndarray, cosine: np.ndarray) -> dict[str, Any]:
        threshold, has_text = self.job.threshold, _has_text(item.text)
        kept = [bool(p > threshold) for p in probability]
        row = {
            "key": item.key,
            "text": item.text,
            "captions": captions,
            "text_itm": float(probability[0]) if has_text else None,
            "captions_itm": [float(p) for p in probability[1:]],
            "text_itc": float(cosine[0]) if has_text else None,
            "captions_itc": [float(c) for c in cosine[1:]],
            "text_kept": kept[0] if has_text else None,
            "captions_kept": kept[1:],
            "error": None,
        }
        web = [item.text] if has_text and kept[0] else []
        return {**row, "kept_texts": web + [c for c, k in zip(captions, kept[1:], strict=True) if k]}


@dataclass(frozen=True)
class CapFiltJob:
    """CapFilt over a dataset (`blip capfilt`). `generate`: extra generation options as sorted pairs."""

    captioner: str
    filter_model: str
    batch_size: int = 8
    num_captions: int = 1
    sampling: str = "nucleus"
    top_p: float | None = None  # nucleus only (default 0.9)
    num_beams: int | None = None  # beam only (default 3)
    threshold: float = 0.5
    protocol: str = "transformers"
    max_text_length: int = ORIGINAL_TEXT_LENGTH
    prompt: str | None = None
    generate: tuple[tuple[str, Any], ...] = ()
    seed: int = 0
    runtime: RuntimeSpec = field(default_factory=RuntimeSpec)
    kind = "capfilt"
    columns = CAPFILT_COLUMNS

    def __post_init__(self) -> None:
        if self.sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {self.sampling!r}")
        if self.sampling == "nucleus" and self.num_beams is not None:
            raise ValueError("num_beams applies to sampling='beam' (--sampling beam), not to nucleus sampling")
        if self.sampling == "beam" and self.top_p is not None:
            raise ValueError("top_p applies to nucleus sampling, not to sampling='beam' (--sampling beam)")
        defaults = {"top_p": NUCLEUS_TOP_P} if self.sampling == "nucleus" else {"num_beams": BEAMS}
        for name, value in defaults.items():  # frozen: the filled-in default goes in the manifest too
            object.__setattr__(self, name, value if getattr(self, name) is None else getattr(self, name))
        if self.top_p is not None and not (isinstance(self.top_p, (int, float)) and 0.0 < self.top_p <= 1.0):
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.protocol not in ("transformers", "original"):
            raise ValueError(f"protocol must be 'transformers' or 'original', got {self.protocol!r}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold is a probability in [0, 1], got {self.threshold!r}")
        for name in ("num_captions", "batch_size", "max_text_length") + (("num_beams",) * (self.sampling == "beam")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        owned = sorted(set(dict(self.generate)) & {"num_return_sequences", "do_sample", "sampling_seeds"})
        if owned:  # set by num_captions, sampling and seed: a second value would shift or change the captions
            raise ValueError(f"capfilt sets {', '.join(owned)} itself: use num_captions, sampling and seed")
        if self.sampling == "beam" and self.num_beams < self.num_captions:
            raise ValueError(
                f"beam search returns at most num_beams={self.num_beams} captions, not {self.num_captions}"
            )

    def generation_options(self) -> dict[str, Any]:
        """The captioner's generate options: nucleus sampling or beam search, `num_captions` per image."""
        chosen = {"num_return_sequences": self.num_captions, **dict(self.generate)}
        if self.sampling == "nucleus":
            return {**chosen, "do_sample": True, "top_p": float(self.top_p)}
        return {**chosen, "num_beams": self.num_beams}

    def identity(self) -> dict[str, Any]:
        return _identity(self)

    def runner(self) -> CapFiltRunner:
        return CapFiltRunner(self)

    def image_processors(self) -> tuple[list[Any], list[int]]:
        return image_processors([self.captioner, self.filter_model])

    def counts(self, rows: list[dict[str, Any]]) -> dict[str, int]:
        """Records, failures, web texts present and kept, synthetic captions written and kept."""
        good = [row for row in rows if row["error"] is None]
        return {
            "records": len(rows),
            "failed": len(rows) - len(good),
            "web_texts": sum(row["text_kept"] is not None for row in good),
            "web_kept": sum(bool(row["text_kept"]) for row in good),
            "captions": sum(len(row["captions"]) for row in good),
            "captions_kept": sum(sum(row["captions_kept"]) for row in good),
        }
