"""Top-k search over stored vectors: NumPy against a plain reference, faiss against NumPy, k clamped, errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from blip_core.tasks import vector_search
from blip_core.tasks.vector_search import VectorIndex


def unit(rows: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def reference_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosine of every pair in float64, fully sorted (best first, ties by row)."""
    queries = queries.astype(np.float64) / np.linalg.norm(queries.astype(np.float64), axis=1, keepdims=True)
    cosine = queries @ vectors.astype(np.float64).T
    rows = np.array([sorted(range(len(vectors)), key=lambda j, row=row: (-row[j], j))[:k] for row in cosine])
    return np.take_along_axis(cosine, rows, axis=1), rows


@pytest.mark.parametrize("block_rows", [7, 1000])
def test_numpy_search_matches_the_reference(monkeypatch, block_rows):
    monkeypatch.setattr(vector_search, "BLOCK_ROWS", block_rows)  # 7: many blocks, a short last one
    vectors, queries = unit(300), np.random.default_rng(1).standard_normal((4, 16)) * 3  # queries not unit
    scores, rows = VectorIndex(vectors, "numpy").search(queries, 10)
    want_scores, want_rows = reference_top_k(vectors, queries, 10)
    assert rows.dtype == np.int64 and scores.dtype == np.float32 and rows.shape == (4, 10)
    np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)


def test_ties_are_ordered_by_row_and_k_is_clamped():
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]], np.float32)
    scores, rows = VectorIndex(vectors, "numpy").search([1.0, 0.0], 50)
    assert rows.tolist() == [[0, 2, 1, 3]]
    np.testing.assert_allclose(scores, [[1.0, 1.0, 0.0, -1.0]], atol=1e-7)


@pytest.mark.parametrize("rows_stored", [3, 500])
def test_faiss_flat_gives_the_same_top_k_as_numpy(rows_stored):
    vectors, queries = unit(rows_stored, seed=2), unit(6, seed=3)
    exact_scores, exact_rows = VectorIndex(vectors, "numpy").search(queries, 20)
    faiss_scores, faiss_rows = VectorIndex(vectors, "faiss").search(queries, 20)
    assert faiss_rows.shape == (6, min(20, rows_stored))
    np.testing.assert_array_equal(faiss_rows, exact_rows)
    np.testing.assert_allclose(faiss_scores, exact_scores, atol=1e-5)


def test_faiss_ivf_probing_every_cell_is_exact_and_fewer_cells_approximate():
    vectors, queries = unit(2000, seed=4), unit(20, seed=5)
    _, exact_rows = VectorIndex(vectors, "numpy").search(queries, 10)
    _, all_cells = VectorIndex(vectors, "faiss-ivf", nlist=16, nprobe=16).search(queries, 10)
    np.testing.assert_array_equal(all_cells, exact_rows)
    _, one_cell = VectorIndex(vectors, "faiss-ivf", nlist=16, nprobe=1).search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(one_cell, exact_rows, strict=True)])
    assert 0.05 < recall < 1.0  # probing 1 of 16 cells misses true neighbours


def test_auto_backend_is_the_exact_numpy_scan():
    assert VectorIndex(unit(10), "auto").backend == "numpy"
    assert VectorIndex(unit(300), "auto").backend == "numpy"  # never the approximate IVF, whatever the size


def test_faiss_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'blip-dual\[search\]'"):
        VectorIndex(unit(10), "faiss")
    assert VectorIndex(unit(10), "auto").backend == "numpy"


def test_bad_arguments_are_refused():
    index = VectorIndex(unit(10), "numpy")
    with pytest.raises(ValueError, match="k must be at least 1"):
        index.search(unit(1), 0)
    with pytest.raises(TypeError, match="k must be an integer"):
        index.search(unit(1), 2.5)
    with pytest.raises(ValueError, match=r"queries must be \(Q, 16\).*another model"):
        index.search(unit(1, dim=8), 3)
    with pytest.raises(ValueError, match="NaN"):
        index.search(np.full(16, np.nan), 3)
    with pytest.raises(ValueError, match="backend must be one of"):
        VectorIndex(unit(10), "annoy")
    with pytest.raises(ValueError, match="nothing to search"):
        VectorIndex(np.zeros((0, 16), np.float32), "numpy")
