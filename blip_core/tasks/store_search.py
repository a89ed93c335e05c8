"""Building an embedding store from images and texts, and searching it: ITC top-k, then optional ITM re-ranking.

A query (a text, or an image) is embedded by the store's model and compared by cosine with the stored vectors
of the other kind (text -> images, image -> texts; an image query searches images when the store has no texts).
Re-ranking scores the top `rerank` candidates with the original BLIP's retrieval score, the ITM *logit* of the
match class plus the ITC cosine, and keeps the best `k`. Re-ranking text -> images reads the images again from
their stored names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from blip_core.tasks import retrieval
from blip_core.tasks.embedding_store import EmbeddingStore, StoreError, make_store
from blip_core.tasks.vector_search import VectorIndex


@dataclass
class Hit:
    """One search result: `rank` from 1, the stored `id`, its `score` (cosine, or ITM logit + cosine)."""

    rank: int
    id: str
    score: float


def embed_query_texts(pipe: Any, texts: Sequence[str], protocol: str, batch_size: int = 32) -> np.ndarray:
    """(N, D) unit ITC vectors of `texts` ([CLS] first under both protocols; cleaned under "original")."""
    return retrieval.embed_texts(pipe.model, pipe.processor, list(texts), protocol=protocol, batch_size=batch_size)


def embed_query_images(pipe: Any, images: list[Any], batch_size: int = 32) -> np.ndarray:
    """(N, D) unit ITC vectors of `images` (loaded images, arrays or paths)."""
    return retrieval.embed_images(pipe.model, pipe.processor, images, batch_size=batch_size)


def build_store(
    pipe: Any,
    image_batches: Iterable[list[tuple[str, Any]]],
    texts: Sequence[str],
    metadata: dict[str, Any],
    batch_size: int = 8,
) -> EmbeddingStore:
    """An in-memory store of the images (batches of (id, image)) and `texts`, embedded by `pipe`'s model.

    Raises StoreError: nothing to store, or duplicate ids.
    """
    protocol = retrieval.check_protocol(metadata.get("protocol", "transformers"))
    ids, vectors = [], []
    for batch in image_batches:
        if batch:
            ids += [name for name, _ in batch]
            vectors.append(embed_query_images(pipe, [image for _, image in batch], batch_size))
    parts: dict[str, tuple[list[str], Any]] = {}
    if ids:
        parts["images"] = (ids, np.concatenate(vectors))
    if texts:
        parts["texts"] = (list(texts), embed_query_texts(pipe, texts, protocol, batch_size))
    if not parts:
        raise StoreError("nothing to store: no readable image and no text")
    return make_store(metadata, **parts)


def target_kind(store: EmbeddingStore, query_is_text: bool, target: str | None) -> str:
    """The kind a query searches: `target` if given, else the other kind, else the only kind stored.

    Raises StoreError: the store has no entries of that kind.
    """
    other = "images" if query_is_text else "texts"
    kind = target or (other if other in store.kinds else store.kinds[0])
    if kind not in store.kinds:
        where = store.path or "the store"
        raise StoreError(f"{where} holds no {kind} (it holds {', '.join(store.kinds)}): build it with them first")
    return kind


def search(
    store: EmbeddingStore, query: np.ndarray, kind: str, k: int, backend: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """ITC top-k of one query vector (D,) among `store.vectors[kind]`: (scores (k',), rows (k',))."""
    query = np.asarray(query, dtype=np.float32)
    if query.shape != (store.dimension,):
        raise StoreError(
            f"the query has dimension {query.shape[-1] if query.ndim else 0} but {store.path or 'the store'} holds "
            f"{store.dimension}-d embeddings: search with the model that built it ({store.metadata.get('model')})"
        )
    scores, rows = VectorIndex(store.vectors[kind], backend).search(query[None], k)
    keep = rows[0] >= 0
    return scores[0][keep], rows[0][keep]


def rerank(pipe: Any, query: Any, pool: list[Any], itc: np.ndarray, protocol: str, batch_size: int) -> np.ndarray:
    """(C,) scores `itm_logit[:, 1] + itc` of the query (a text, or an image) against each of `pool` (images for
    a text query, texts for an image query), by `blip_core.tasks.retrieval.rerank`."""
    options = {"images": pool, "query_text": query} if isinstance(query, str) else {"texts": pool, "query_image": query}
    candidates = list(range(len(pool)))
    return retrieval.rerank(
        pipe.model, pipe.processor, candidates=candidates, protocol=protocol, itc=itc, batch_size=batch_size, **options
    )


def hits(ids: Sequence[str], scores: np.ndarray, rows: np.ndarray, k: int) -> list[Hit]:
    """The best `k` of (scores, rows), best first (ties by row), as Hits."""
    order = np.lexsort((rows, -scores))[:k]
    return [Hit(rank, ids[int(rows[i])], float(scores[i])) for rank, i in enumerate(order, start=1)]
