"""Training batches for the three BLIP tasks, built through the processor (framework-neutral, NumPy).

- captioning: the first token becomes BOS ([DEC]) as the original BLIP trained, padding is
  ignored in the labels (-100), and an optional prompt can be masked out of the loss;
- question answering: answers become decoder inputs (starting with BOS) and labels (-100 on padding);
- image-text matching: every image with its caption (match) and with another caption (no match).

`transformers`' forward does none of this for you (REFERENCE §6.3): it trains on [CLS] while
`generate` starts from [DEC], unless the batch is built like this.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from blip_core.config.model_constants import IGNORE_INDEX
from blip_core.processing.processor import BlipProcessor


def caption_examples(
    processor: BlipProcessor,
    images: Sequence[Any],
    captions: Sequence[str],
    prompt: str | None = None,
    mask_prompt: bool = True,
    max_length: int = 40,
) -> dict[str, np.ndarray]:
    """pixel_values, input_ids (BOS first), attention_mask and labels for captioning."""
    if len(images) != len(captions):
        raise ValueError(f"got {len(images)} images and {len(captions)} captions")
    texts = [f"{prompt} {caption}" if prompt else caption for caption in captions]
    batch = processor(
        images=list(images), text=texts, padding=True, truncation=True, max_length=max_length, return_tensors="np"
    )
    ids = batch["input_ids"].copy()
    ids[:, 0] = processor.tokenizer.bos_token_id  # [CLS] -> [DEC], the token generate starts from
    labels = np.where(batch["attention_mask"] == 1, ids, IGNORE_INDEX)
    if prompt and mask_prompt:
        prompt_length = 1 + len(processor.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        labels[:, :prompt_length] = IGNORE_INDEX
    return {
        "pixel_values": batch["pixel_values"],
        "input_ids": ids,
        "attention_mask": batch["attention_mask"],
        "labels": labels,
    }


def vqa_examples(
    processor: BlipProcessor,
    images: Sequence[Any],
    questions: Sequence[str],
    answers: Sequence[str],
    max_length: int = 40,
) -> dict[str, np.ndarray]:
    """pixel_values, question ids and mask, answer decoder inputs (BOS first) and labels."""
    if not len(images) == len(questions) == len(answers):
        raise ValueError(f"got {len(images)} images, {len(questions)} questions and {len(answers)} answers")
    batch = processor(
        images=list(images),
        text=list(questions),
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="np",
    )
    answer = processor.tokenizer(
        list(answers), padding=True, truncation=True, max_length=max_length, return_tensors="np"
    )
    decoder_ids = answer["input_ids"].copy()
    decoder_ids[:, 0] = processor.tokenizer.bos_token_id
    labels = np.where(answer["attention_mask"] == 1, decoder_ids, IGNORE_INDEX)
    return {
        "pixel_values": batch["pixel_values"],
        "input_ids": batch["input_ids"],
        "attention_mask": batch["attention_mask"],
        "decoder_input_ids": decoder_ids,
        "decoder_attention_mask": answer["attention_mask"],
        "labels": labels,
    }


def itm_examples(
    processor: BlipProcessor,
    images: Sequence[Any],
    captions: Sequence[str],
    negatives: Sequence[str] | None = None,
    seed: int = 0,
    max_length: int = 40,
) -> dict[str, np.ndarray]:
    """Each image twice: with its caption (match 1) and with a different one (match 0).

    `negatives` gives each image's wrong caption; by default another image's caption is drawn.
    The first half of the batch holds the matched pairs, in order.
    """
    if len(images) != len(captions):
        raise ValueError(f"got {len(images)} images and {len(captions)} captions")
    if negatives is None:
        rng = np.random.default_rng(seed)
        negatives = []
        for caption in captions:
            others = [c for c in captions if c != caption]
            negatives.append(str(rng.choice(others)) if others else caption + " (not)")
    texts = list(captions) + list(negatives)
    batch = processor(
        images=list(images) * 2, text=texts, padding=True, truncation=True, max_length=max_length, return_tensors="np"
    )
    match = np.concatenate([np.ones(len(captions), np.int64), np.zeros(len(captions), np.int64)])
    return {**batch, "match": match}


def read_captioned_folder(folder: str | Path) -> list[tuple[Path, str]]:
    """(image path, caption) pairs from `captions.jsonl` ({"file", "caption"} per line) or `captions.csv`."""
    folder = Path(folder)
    pairs: list[tuple[Path, str]] = []
    if (folder / "captions.jsonl").exists():
        for number, line in enumerate((folder / "captions.jsonl").read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    record = json.loads(line)
                    pairs.append((folder / record["file"], str(record["caption"])))
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise ValueError(
                        f'{folder / "captions.jsonl"} line {number}: expected {{"file": ..., "caption": ...}}'
                    ) from None
    elif (folder / "captions.csv").exists():
        with open(folder / "captions.csv", newline="", encoding="utf-8") as stream:
            for number, row in enumerate(csv.DictReader(stream), start=2):
                if "file" not in row or "caption" not in row:
                    raise ValueError(f"{folder / 'captions.csv'} line {number}: expected columns file,caption")
                pairs.append((folder / row["file"], row["caption"]))
    else:
        raise ValueError(f"{folder} has no captions.jsonl or captions.csv")
    missing = [str(path) for path, _ in pairs if not path.is_file()]
    if missing:
        raise ValueError(f"{len(missing)} captioned images are missing, e.g. {missing[0]}")
    return pairs
