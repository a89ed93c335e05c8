"""`AutoProcessor`: the processor of any BLIP checkpoint (`transformers.AutoProcessor`'s BLIP case)."""

from __future__ import annotations

import os
from typing import Any

from blip_core.processing import BlipProcessor


class AutoProcessor:
    """Loads the processor of a BLIP folder or Hub id.

    >>> processor = AutoProcessor.from_pretrained("Salesforce/blip-vqa-base")  # doctest: +SKIP
    """

    def __init__(self) -> None:
        raise TypeError("AutoProcessor is not instantiated; use AutoProcessor.from_pretrained(name_or_path)")

    @staticmethod
    def from_pretrained(pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> BlipProcessor:
        return BlipProcessor.from_pretrained(pretrained_model_name_or_path, **kwargs)
