"""Image and text embeddings in the image-text contrastive (ITC) space, for either framework.

Both a retrieval checkpoint (its ITC projections of the [CLS] states, what BLIP's ITC similarity uses) and a
`BlipModel` embed through `get_image_features` / `get_text_features`, named the same in both trees, so one code
path serves both. Vectors come back L2-normalised.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _normalised(vectors: Any) -> np.ndarray:
    if hasattr(vectors, "detach"):
        vectors = vectors.detach().float().cpu().numpy()
    vectors = np.asarray(vectors.numpy() if hasattr(vectors, "numpy") else vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def embed_images(pipe: Any, images: list[Any]) -> np.ndarray:
    """(N, D) unit vectors for `images`, from a pipeline's model."""
    model = pipe.model
    batch = pipe.runtime.tensors(dict(pipe.processor(images=images, return_tensors="np")), model)
    return _normalised(pipe.runtime.run(model.get_image_features, **batch))


def embed_texts(pipe: Any, texts: list[str]) -> np.ndarray:
    """(N, D) unit vectors for `texts`, from a pipeline's model."""
    model = pipe.model
    batch = pipe.runtime.tensors(dict(pipe.processor(text=texts, padding=True, return_tensors="np")), model)
    return _normalised(pipe.runtime.run(model.get_text_features, **batch))
