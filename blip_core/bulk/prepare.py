"""Decoding and preprocessing of records, in worker processes: what runs on the CPU beside the model.

A `Preparer` holds the image processors of a job's models (plain Python and NumPy, so it pickles to worker
processes without torch or tensorflow). It turns records into `Prepared` items: the key, the web text and one
`pixel_values` array per distinct processor, or the reason the record could not be used. A bad record never
stops a run: every exception raised while reading, decoding or resizing one image is caught and reported
against its key.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from blip_core.bulk.records import Record

MAX_IMAGE_PIXELS = 178_956_970  # PIL's own bomb limit (twice its warning size): larger images are refused


@dataclass
class Prepared:
    """One record after the CPU stage: `pixels[i]` (C, H, W) float32 for processor i, or `error`."""

    key: str
    text: str | None
    pixels: tuple[np.ndarray, ...] | None = None
    error: str | None = None


def _open_image(record: Record) -> Any:
    """The record's image, decoded to RGB (PIL), fully loaded so a truncated file fails here."""
    from PIL import Image

    if record.image is None and record.path is None:
        raise ValueError("the source has no image for this record")
    with Image.open(io.BytesIO(record.image) if record.image is not None else record.path) as opened:
        if opened.width * opened.height > MAX_IMAGE_PIXELS:
            raise ValueError(f"image of {opened.width}x{opened.height} pixels is larger than {MAX_IMAGE_PIXELS}")
        opened.load()
        return opened.convert("RGB")


class Preparer:
    """Records -> `Prepared` items with one pixel array per image processor (picklable)."""

    def __init__(self, image_processors: Sequence[Any]) -> None:
        self.image_processors = list(image_processors)

    def prepare_one(self, record: Record) -> Prepared:
        try:
            image = _open_image(record)
            pixels = tuple(
                np.asarray(processor(images=[image], return_tensors="np")["pixel_values"][0], np.float32)
                for processor in self.image_processors
            )
        except Exception as err:  # noqa: BLE001 - any failure of one image is that record's, never the run's
            return Prepared(record.key, record.text, error=_reason(err, record.path))
        return Prepared(record.key, record.text, pixels)

    def __call__(self, records: Sequence[Record]) -> list[Prepared]:
        return [self.prepare_one(record) for record in records]


def _reason(error: BaseException, path: str | None) -> str:
    """`Type: message`, without the file's name or the in-memory stream PIL names: the same reason whether the
    image came as a path (local folders) or as bytes (Parquet, tar, Ray), so outputs compare record by record."""
    text = " ".join(str(error).split()) or "no message"
    if path:
        text = text.replace(repr(path), "").replace(repr(str(path)), "").replace(str(path), "")
    text = re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", text)
    text = " ".join(text.split()) or "no message"
    return f"{type(error).__name__}: {text[:300]}"


def distinct_processors(image_processors: Sequence[Any]) -> tuple[list[Any], list[int]]:
    """(the distinct processors by configuration, each input's index among them): two models with the same
    preprocessing share one pixel array."""
    distinct: list[Any] = []
    configs: list[str] = []
    index = []
    for processor in image_processors:
        config = repr(sorted(processor.to_dict().items()))
        if config not in configs:
            configs.append(config)
            distinct.append(processor)
        index.append(configs.index(config))
    return distinct, index
