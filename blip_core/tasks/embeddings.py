"""Image and text embeddings in the image-text contrastive (ITC) space, for either framework.

A retrieval checkpoint embeds with `vision_proj` / `text_proj` on the [CLS] states (what BLIP's
ITC similarity uses); a `BlipModel` with `get_image_features` / `get_text_features`. Both trees
name these the same, so one code path serves both. Vectors come back L2-normalised.
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

    def compute(pixel_values: Any) -> Any:
        if hasattr(model, "vision_proj"):
            return model.vision_proj(model.vision_model(pixel_values=pixel_values).last_hidden_state[:, 0])
        return model.get_image_features(pixel_values=pixel_values)

    return _normalised(pipe.runtime.run(compute, **batch))


def embed_texts(pipe: Any, texts: list[str]) -> np.ndarray:
    """(N, D) unit vectors for `texts`, from a pipeline's model."""
    model = pipe.model
    batch = pipe.runtime.tensors(dict(pipe.processor(text=texts, padding=True, return_tensors="np")), model)

    def compute(input_ids: Any, attention_mask: Any) -> Any:
        if hasattr(model, "text_proj"):
            states = model.text_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return model.text_proj(states[:, 0])
        return model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)

    return _normalised(pipe.runtime.run(compute, **batch))
