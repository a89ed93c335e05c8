"""Two-stage image-text retrieval as the BLIP paper ran it, for either framework: ITC top-k, then ITM re-ranking.

1. Every image and text is embedded once in the contrastive (ITC) space (`get_image_features` /
   `get_text_features` of a `BlipForImageTextRetrieval`, L2-normalised) and compared by cosine.
2. For each image, its `k` most similar texts (for each text, its `k` most similar images) are scored again by
   the image-text matching (ITM) head: the score is `itm_logit[:, 1] + itc_cosine` (the *logit* of the match
   class, not a probability), as salesforce/BLIP's `evaluation` in `train_retrieval.py`; entries outside the
   top-k stay at -100. `k` larger than the corpus is clamped.

`protocol="transformers"` (default) tokenizes texts as given (padded to the longest, cut at the model's position
table) with [CLS] first in both passes. `protocol="original"` is the paper's: texts cleaned with `clean_caption`,
padded or cut to 35 tokens, and `[ENC]` (id 30523) in place of [CLS] in the ITM pass only (ITC keeps [CLS]).

Models run through a small adapter (`_Model`) over the public methods both trees share; torch or tensorflow is
imported only inside a call, by `pipeline_runtime.Runtime`.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from blip_core.config.model_constants import ENC_TOKEN_ID
from blip_core.processing.image_loading import to_pil_or_array
from blip_core.processing.text_cleaning import clean_caption
from blip_core.tasks.pipeline_runtime import Runtime, to_numpy

PROTOCOLS = ("transformers", "original")
ORIGINAL_TEXT_LENGTH = 35  # the original pads or cuts every retrieval text to 35 tokens
DEFAULT_K = 128  # the original's k_test on Flickr30k (256 on COCO)
UNSCORED = -100.0  # the original's value for pairs outside the top-k


@dataclass
class RetrievalScores:
    """Score matrices of a two-stage retrieval over `n_images` images and `n_texts` texts.

    `image_to_text` (n_images, n_texts) and `text_to_image` (n_texts, n_images): `itm_logit + itc_cosine`
    on each query's top-k, -100 elsewhere (float32). `similarity` (n_images, n_texts): the ITC cosines.
    """

    image_to_text: np.ndarray
    text_to_image: np.ndarray
    similarity: np.ndarray


def check_protocol(protocol: object) -> str:
    """`protocol` checked. Raises: ValueError: not "transformers" or "original"."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    return str(protocol)


def _check_count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _unit(vectors: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (at least 1e-12, as torch's `normalize`), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def _chunks(count: int, size: int) -> list[slice]:
    return [slice(start, min(start + size, count)) for start in range(0, count, size)]


def _progress(total: int, enabled: bool, description: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm  # huggingface_hub's own dependency

    return tqdm(total=total, desc=description, unit="item")


class _Model:
    """One retrieval model of either tree behind NumPy in, NumPy out."""

    def __init__(self, model: Any, processor: Any, protocol: str) -> None:
        name = type(model).__name__
        if not all(hasattr(model, part) for part in ("get_image_features", "get_multimodal_features", "itm_head")):
            raise TypeError(f"retrieval needs a BlipForImageTextRetrieval (or its TF twin), got {name}")
        self.model, self.processor, self.protocol = model, processor, check_protocol(protocol)
        self.runtime = Runtime("tf" if name.startswith("TF") else "pt")
        vocab_size = model.config.text_config.vocab_size
        if self.protocol == "original" and vocab_size <= ENC_TOKEN_ID:
            raise ValueError(
                f"protocol='original' puts [ENC] (id {ENC_TOKEN_ID}) first in the ITM pass, but this model's "
                f"vocabulary has {vocab_size} tokens; use protocol='transformers'"
            )

    def _run(self, function: Any, **arrays: np.ndarray) -> np.ndarray:
        return to_numpy(self.runtime.run(function, **self.runtime.tensors(arrays, self.model))).astype(np.float32)

    def images(self, images: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        """(unit ITC features (B, D), vision states (B, patches + 1, hidden)) of a batch of images."""
        pixels = self.processor(images=[to_pil_or_array(image) for image in images], return_tensors="np")
        states = self._run(
            lambda pixel_values: self.model.vision_model(pixel_values=pixel_values).last_hidden_state,
            pixel_values=np.asarray(pixels["pixel_values"]),
        )
        features = self._run(lambda cls: self.model.vision_proj(cls), cls=states[:, 0])
        return _unit(features), states

    def tokens(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, attention_mask) int64 of all `texts` under the protocol (ITC ids: [CLS] first)."""
        texts = [text if isinstance(text, str) else _not_text(text) for text in texts]
        if self.protocol == "original":
            texts = [clean_caption(text) for text in texts]
            options = {"padding": "max_length", "truncation": True, "max_length": ORIGINAL_TEXT_LENGTH}
        else:
            limit = self.model.config.text_config.max_position_embeddings
            options = {"padding": True, "truncation": True, "max_length": limit}
        batch = self.processor(text=list(texts), return_tensors="np", **options)
        return np.asarray(batch["input_ids"], np.int64), np.asarray(batch["attention_mask"], np.int64)

    def texts(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """(B, D) unit ITC features of tokenized texts."""
        return _unit(self._run(self.model.get_text_features, input_ids=input_ids, attention_mask=attention_mask))

    def match_logits(self, states: np.ndarray, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """(B,) float32 ITM logit of the match class, row i pairing states[i] with text i."""
        if self.protocol == "original":
            input_ids = input_ids.copy()
            input_ids[:, 0] = ENC_TOKEN_ID  # [ENC] in the ITM pass only, as the original

        def compute(image_embeds: Any, input_ids: Any, attention_mask: Any) -> Any:
            features = self.model.get_multimodal_features(
                input_ids=input_ids, attention_mask=attention_mask, image_embeds=image_embeds
            )
            return self.model.itm_head(features)[:, 1]

        return self._run(compute, image_embeds=states, input_ids=input_ids, attention_mask=attention_mask)


def _not_text(value: object) -> str:
    raise TypeError(f"every text must be a string, got {type(value).__name__}")


def _embed_images(adapter: _Model, images: Sequence[Any], batch_size: int, bar: Any) -> tuple[np.ndarray, np.ndarray]:
    features, states = [], []
    for part in _chunks(len(images), batch_size):
        batch_features, batch_states = adapter.images(images[part])
        features.append(batch_features)
        states.append(batch_states)
        if bar is not None:
            bar.update(part.stop - part.start)
    return np.concatenate(features), np.concatenate(states)


def _embed_texts(adapter: _Model, input_ids: np.ndarray, attention_mask: np.ndarray, batch_size: int, bar: Any):
    features = []
    for part in _chunks(len(input_ids), batch_size):
        features.append(adapter.texts(input_ids[part], attention_mask[part]))
        if bar is not None:
            bar.update(part.stop - part.start)
    return np.concatenate(features)


def embed_images(
    model: Any, processor: Any, images: Sequence[Any], *, batch_size: int = 32, progress: bool = False
) -> np.ndarray:
    """(N, D) float32 unit ITC embeddings of `images` (PIL images, arrays or paths), in batches.

    Raises:
        TypeError: not a retrieval model. ValueError: no images, or a bad `batch_size`.
    """
    adapter = _Model(model, processor, "transformers")
    if not len(images):
        raise ValueError("embed_images needs at least one image")
    bar = _progress(len(images), progress, "images")
    features = _embed_images(adapter, list(images), _check_count(batch_size, "batch_size"), bar)[0]
    if bar is not None:
        bar.close()
    return features


def embed_texts(
    model: Any,
    processor: Any,
    texts: Sequence[str],
    *,
    protocol: str = "transformers",
    batch_size: int = 32,
    progress: bool = False,
) -> np.ndarray:
    """(N, D) float32 unit ITC embeddings of `texts` (cleaned and cut to 35 tokens under "original").

    Raises:
        TypeError: not a retrieval model, or a text that is not a string. ValueError: no texts, bad options.
    """
    adapter = _Model(model, processor, protocol)
    if not len(texts):
        raise ValueError("embed_texts needs at least one text")
    input_ids, attention_mask = adapter.tokens(list(texts))
    bar = _progress(len(texts), progress, "texts")
    features = _embed_texts(adapter, input_ids, attention_mask, _check_count(batch_size, "batch_size"), bar)
    if bar is not None:
        bar.close()
    return features


def top_k(similarity: np.ndarray, k: int) -> np.ndarray:
    """(rows, min(k, columns)) column indices of each row's largest values, best first (ties: lower index)."""
    return np.argsort(-similarity, axis=1, kind="stable")[:, : min(k, similarity.shape[1])]


def _distinct_texts(input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first row of each distinct tokenized text, each row's distinct-text index): a caption repeated in a corpus
    is encoded once, so its copies score exactly alike (and rank alike in both frameworks)."""
    rows = np.concatenate([input_ids, attention_mask], axis=1)
    _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def _match_logits(
    adapter: _Model, states: np.ndarray, tokens: tuple, images: np.ndarray, texts: np.ndarray, batch: int, bar: Any
) -> np.ndarray:
    """ITM logits of the pairs (images[n], texts[n]), each distinct pair computed once, in batches of `batch`."""
    input_ids, attention_mask = tokens
    distinct, inverse = np.unique(images * len(input_ids) + texts, return_inverse=True)
    logits = np.empty(len(distinct), np.float32)
    if bar is not None:
        bar.total += len(distinct)
    for part in _chunks(len(distinct), batch):
        image, text = np.divmod(distinct[part], len(input_ids))
        logits[part] = adapter.match_logits(states[image], input_ids[text], attention_mask[text])
        if bar is not None:
            bar.update(part.stop - part.start)
    return logits[inverse.reshape(-1)]


def retrieve(
    model: Any,
    processor: Any,
    images: Sequence[Any],
    texts: Sequence[str],
    *,
    k: int = DEFAULT_K,
    protocol: str = "transformers",
    batch_size: int = 32,
    progress: bool = False,
) -> RetrievalScores:
    """Two-stage retrieval over a corpus: ITC cosine for all pairs, then ITM re-ranking of each query's top `k`.

    Every image's vision states are kept in memory for the ITM pass (as the original does): about
    (patches + 1) x hidden x 4 bytes per image (1.8 MB for a base model at 384 px). Repeated texts, and pairs in
    both directions' top k, are computed once.

    Raises:
        TypeError: not a retrieval model, or a text that is not a string.
        ValueError: no images or texts, bad `k`, `batch_size` or `protocol`, an unreadable image.
    """
    adapter = _Model(model, processor, protocol)
    k, batch_size = _check_count(k, "k"), _check_count(batch_size, "batch_size")
    if not len(images) or not len(texts):
        raise ValueError(f"retrieval needs images and texts, got {len(images)} images and {len(texts)} texts")
    input_ids, attention_mask = adapter.tokens(list(texts))
    first, text_row = _distinct_texts(input_ids, attention_mask)
    tokens = (input_ids[first], attention_mask[first])
    n_images, n_texts = len(images), len(texts)
    bar = _progress(n_images + len(first), progress, "retrieval")
    image_features, states = _embed_images(adapter, list(images), batch_size, bar)
    similarity = (image_features @ _embed_texts(adapter, *tokens, batch_size, bar).T)[:, text_row]  # copies exact
    best_texts, best_images = top_k(similarity, k), top_k(similarity.T, k)
    i2t = (np.repeat(np.arange(n_images), best_texts.shape[1]), best_texts.reshape(-1))
    t2i = (best_images.reshape(-1), np.repeat(np.arange(n_texts), best_images.shape[1]))
    pair_images, pair_texts = np.concatenate([i2t[0], t2i[0]]), np.concatenate([i2t[1], t2i[1]])
    logits = _match_logits(adapter, states, tokens, pair_images, text_row[pair_texts], batch_size, bar)
    scores = logits + similarity[pair_images, pair_texts]
    image_to_text = np.full((n_images, n_texts), UNSCORED, np.float32)
    text_to_image = np.full((n_texts, n_images), UNSCORED, np.float32)
    image_to_text[i2t] = scores[: len(i2t[0])]
    text_to_image[t2i[1], t2i[0]] = scores[len(i2t[0]) :]
    if bar is not None:
        bar.close()
    return RetrievalScores(image_to_text=image_to_text, text_to_image=text_to_image, similarity=similarity)


def _candidate_indices(candidates: Any, pool: int, name: str) -> list[int]:
    indices = list(candidates) if not isinstance(candidates, (str, bytes)) else None
    if not indices or any(isinstance(i, bool) or not isinstance(i, numbers.Integral) for i in indices):
        raise ValueError(f"candidates must be a non-empty sequence of indices into {name}, got {candidates!r}")
    wrong = [int(i) for i in indices if not 0 <= i < pool]
    if wrong:
        raise ValueError(f"candidates {wrong[:5]} are outside {name} (it has {pool} items)")
    return [int(i) for i in indices]


def rerank(
    model: Any,
    processor: Any,
    *,
    images: Sequence[Any] | None = None,
    texts: Sequence[str] | None = None,
    query_image: Any = None,
    query_text: str | None = None,
    candidates: Sequence[int],
    protocol: str = "transformers",
    itc: Sequence[float] | None = None,
    batch_size: int = 32,
) -> np.ndarray:
    """(len(candidates),) float32 scores `itm_logit[:, 1] + itc_cosine` of one query against its candidates.

    Either `query_image` with `texts` (the candidates index into `texts`), or `query_text` with `images` (they
    index into `images`; only the candidates are loaded). `itc`, one cosine per candidate (e.g. from a stored
    index), is used instead of embedding query and candidates again. Higher is a better match.

    Raises:
        TypeError: not a retrieval model. ValueError: not exactly one query, its pool missing, bad candidates
        or `itc`.
    """
    adapter = _Model(model, processor, protocol)
    batch_size = _check_count(batch_size, "batch_size")
    if (query_image is None) == (query_text is None):
        raise ValueError("rerank needs exactly one of query_image (with texts) or query_text (with images)")
    if query_image is not None and texts is None:
        raise ValueError("rerank(query_image=...) needs texts=[...] for the candidates to index")
    if query_text is not None and images is None:
        raise ValueError("rerank(query_text=...) needs images=[...] for the candidates to index")
    pool = texts if query_image is not None else images
    chosen = _candidate_indices(candidates, len(pool), "texts" if query_image is not None else "images")
    if itc is not None:
        itc = np.asarray(itc, np.float32).reshape(-1)
        if len(itc) != len(chosen):
            raise ValueError(f"itc has {len(itc)} values for {len(chosen)} candidates")
    if query_image is not None:
        query = adapter.images([query_image])
    elif not isinstance(query_text, str):
        raise TypeError(f"query_text must be a string, got {type(query_text).__name__}")
    else:
        query = adapter.tokens([query_text])
    scores = []
    for part in _chunks(len(chosen), batch_size):
        given = None if itc is None else itc[part]
        scores.append(_rerank_batch(adapter, query_image is not None, query, [pool[i] for i in chosen[part]], given))
    return np.concatenate(scores)


def _rerank_batch(adapter: _Model, by_image: bool, query: tuple, batch: list, itc: np.ndarray | None) -> np.ndarray:
    """Scores of one batch of candidates: texts against the query image's (features, states), or images
    against the query text's (input_ids, attention_mask)."""
    if by_image:
        query_features, query_states = query
        input_ids, attention_mask = adapter.tokens(batch)
        states = np.repeat(query_states, len(batch), axis=0)
        cosine = adapter.texts(input_ids, attention_mask) @ query_features[0] if itc is None else itc
    else:
        features, states = adapter.images(batch)
        input_ids, attention_mask = (np.repeat(a, len(batch), axis=0) for a in query)
        cosine = features @ adapter.texts(*query)[0] if itc is None else itc
    return adapter.match_logits(states, input_ids, attention_mask) + np.asarray(cosine, np.float32)
