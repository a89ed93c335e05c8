"""Top-k search by cosine over stored unit vectors: exact with NumPy, or through `faiss` (the `search` extra).

Backends:
- "numpy": exact. The store is scanned in blocks of `BLOCK_ROWS` rows (bounded memory, a memory-mapped store
  is read once), each block's top k kept with `argpartition`, the survivors sorted.
- "faiss": exact too (`IndexFlatIP`: the same inner products, the same top k up to float rounding of ties).
- "faiss-ivf": approximate, for millions of vectors: an inverted file (`IndexIVFFlat`) trained by k-means on the
  store puts each vector in one of `nlist` cells and a query scans only the `nprobe` nearest cells, so it reads
  about nprobe/nlist of the store; a true neighbour in an unvisited cell is missed (recall < 1), and training
  takes time once per index.
- "auto": "numpy". Exact search is one scan of the store, bound by memory bandwidth: measured side by side
  (benchmarks/retrieval_speed.py) NumPy's blocked scan ran faster than faiss's `IndexFlatIP` at 10k and 1M
  vectors and needs no second copy of them; "faiss-ivf" is the choice that changes speed, and it is approximate,
  so it is never picked for the user.

Results are best first; equal scores are ordered by row (NumPy). `k` larger than the store is clamped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BACKENDS = ("auto", "numpy", "faiss", "faiss-ivf")
BLOCK_ROWS = 131072
TRAIN_ROWS_PER_CELL = 64  # "faiss-ivf" trains its k-means on about this many rows per cell
FAISS_INSTALL = "pip install 'blip-dual[search]'"


def import_faiss() -> Any:
    """The `faiss` module. Raises ImportError naming the extra to install."""
    try:
        import faiss
    except ImportError as err:
        raise ImportError(f"the faiss search backend needs faiss-cpu: {FAISS_INSTALL}") from err
    return faiss


def faiss_available() -> bool:
    try:
        import_faiss()
    except ImportError:
        return False
    return True


def check_k(k: Any) -> int:
    """`k` as a positive int. Raises ValueError (TypeError for a non-integer)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an integer, got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return int(k)


def _queries(queries: Any, dimension: int) -> np.ndarray:
    array = np.asarray(queries, dtype=np.float32)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != dimension:
        raise ValueError(
            f"queries must be (Q, {dimension}) vectors to search a store of dimension {dimension}, "
            f"got shape {np.asarray(queries).shape}: the query was embedded by another model"
        )
    if not np.isfinite(array).all():
        raise ValueError("queries hold NaN or infinite values")
    return np.ascontiguousarray(array)


def numpy_search(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k inner products: (scores (Q, k') float32, indices (Q, k') int64), k' = min(k, N)."""
    k = min(k, len(vectors))
    kept_scores, kept_rows = [], []
    for start in range(0, len(vectors), BLOCK_ROWS):
        scores = queries @ np.asarray(vectors[start : start + BLOCK_ROWS], dtype=np.float32).T
        take = min(k, scores.shape[1])
        rows = np.argpartition(-scores, take - 1, axis=1)[:, :take] if take < scores.shape[1] else None
        rows = np.broadcast_to(np.arange(scores.shape[1]), scores.shape) if rows is None else rows
        kept_scores.append(np.take_along_axis(scores, rows, axis=1))
        kept_rows.append(rows + start)
    scores, rows = np.concatenate(kept_scores, axis=1), np.concatenate(kept_rows, axis=1)
    order = np.lexsort((rows, -scores), axis=1)[:, :k]  # best first, then by row
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(rows, order, axis=1).astype(np.int64)


def _check_unit_rows(vectors: np.ndarray, sample: int = 4096) -> None:
    """Cosine search is an inner product only on unit rows: refuse others (checked on up to `sample` rows, spread
    over the store, so a memory-mapped million is not read in full).

    Raises:
        ValueError: a row whose L2 norm is not 1 (within 1e-3).
    """
    rows = np.asarray(vectors[:: max(1, len(vectors) // sample)], dtype=np.float64)
    norms = np.linalg.norm(rows, axis=1)
    if not np.all(np.abs(norms - 1.0) <= 1e-3):
        worst = float(norms[np.argmax(np.abs(norms - 1.0))])
        raise ValueError(
            f"vectors must be L2-normalised rows (cosine search); found a row of norm {worst:.4g}: divide each row by "
            "its norm first"
        )


class VectorIndex:
    """Searchable vectors (N, D) float32 unit rows, with a backend from `BACKENDS`.

    `nlist` (default ~sqrt(N)) and `nprobe` (default 16) size "faiss-ivf". A faiss index is built once, here.

    Raises:
        ValueError: unknown backend, or vectors not (N, D) with N > 0.
        ImportError: a faiss backend asked for without faiss installed (naming the extra).
    """

    def __init__(self, vectors: np.ndarray, backend: str = "auto", nlist: int | None = None, nprobe: int = 16) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if getattr(vectors, "ndim", 0) != 2 or len(vectors) == 0:
            raise ValueError(f"nothing to search: vectors must be a non-empty (N, D) array, got {np.shape(vectors)}")
        _check_unit_rows(vectors)
        if backend == "auto":
            backend = "numpy"
        self.vectors, self.backend, self.dimension = vectors, backend, int(vectors.shape[1])
        self.index = None if backend == "numpy" else self._faiss_index(nlist, nprobe)

    def _faiss_index(self, nlist: int | None, nprobe: int) -> Any:
        faiss = import_faiss()
        data = np.ascontiguousarray(self.vectors, dtype=np.float32)
        if self.backend == "faiss":
            index = faiss.IndexFlatIP(self.dimension)
        else:
            nlist = nlist or max(1, min(len(data) // 39, int(np.sqrt(len(data)))))
            self.quantizer = faiss.IndexFlatIP(self.dimension)  # kept alive as long as the index uses it
            index = faiss.IndexIVFFlat(self.quantizer, self.dimension, nlist, faiss.METRIC_INNER_PRODUCT)
            index.train(data[:: max(1, len(data) // (nlist * TRAIN_ROWS_PER_CELL))])  # k-means on a sample
            index.nprobe = min(nprobe, nlist)
        index.add(data)
        return index

    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k cosine of each query: (scores (Q, k') float32, indices (Q, k') int64), best first.

        k' = min(k, N); "faiss-ivf" may find fewer than k' (missing places hold score -inf and index -1).
        Raises ValueError/TypeError: a bad `k`, or queries of another dimension.
        """
        k, queries = check_k(k), _queries(queries, self.dimension)
        norms = np.linalg.norm(queries, axis=1, keepdims=True)
        queries = queries / np.where(norms == 0, 1, norms)
        if self.index is None:
            return numpy_search(self.vectors, queries, k)
        scores, rows = self.index.search(queries, min(k, len(self.vectors)))
        scores = np.where(rows < 0, -np.inf, scores).astype(np.float32)
        return scores, rows.astype(np.int64)
