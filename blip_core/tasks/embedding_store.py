"""The embedding store: a folder the user keeps, holding ITC embeddings of images and/or texts and their ids.

    INDEX/
      store.json             {"format": "blip-dual-embedding-store", "version": 1, "metadata": {...},
                              "images": {"count": N, "ids": [...]}, "texts": {"count": M, "ids": [...]}}
      image_embeddings.npy   (N, D) float32, unit rows (present when images were stored)
      text_embeddings.npy    (M, D) float32, unit rows (present when texts were stored)

Image ids are the names the images were read from (re-ranking reads them again); text ids are the texts
themselves. `metadata` records the model (folder or Hub id), framework, protocol and dimension. The `.npy` files
are plain NumPy arrays (read with `allow_pickle=False`, optionally memory-mapped), so a store of a million
256-d vectors opens without copying its 1 GB.

A store is written whole through `blip_core.io.atomic.atomic_folder`: a reader sees the old store or the new one,
never half of one. An existing store is replaced only when asked (`mode="force"`), or extended (`mode="append"`,
by writing the union as a new folder); a folder that is not a store is never replaced.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from blip_core.io.atomic import atomic_folder, atomic_write_text, is_temp_name

FORMAT = "blip-dual-embedding-store"
VERSION = 1
TABLE_FILE = "store.json"
KINDS = ("images", "texts")
VECTOR_FILES = {"images": "image_embeddings.npy", "texts": "text_embeddings.npy"}
MODES = ("new", "force", "append")
IDENTITY_KEYS = ("model", "dimension")  # an appended part must agree on these


class StoreError(ValueError):
    """A folder that is not a readable embedding store, or data that does not fit one."""


@dataclass
class EmbeddingStore:
    """Embeddings and ids per kind ("images", "texts"), with the store's metadata.

    `vectors[kind]`: (N, D) float32 unit rows; `ids[kind]`: N strings, in the same order.
    """

    metadata: dict[str, Any]
    ids: dict[str, list[str]] = field(default_factory=dict)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    path: Path | None = None

    @property
    def dimension(self) -> int:
        return int(self.metadata["dimension"])

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds this store holds, in `KINDS` order."""
        return tuple(kind for kind in KINDS if kind in self.vectors)

    def count(self, kind: str) -> int:
        return len(self.ids.get(kind, ()))

    def nbytes(self) -> int:
        """Bytes of the vectors (what they take in memory when loaded, not memory-mapped)."""
        return sum(int(array.nbytes) for array in self.vectors.values())


def unit_rows(vectors: Any, name: str = "vectors") -> np.ndarray:
    """`vectors` as (N, D) float32 rows of length 1.

    Raises:
        StoreError: not 2-D, not finite, or a row of length 0.
    """
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] == 0:
        raise StoreError(f"{name} must be a 2-D (N, D) array with D > 0, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise StoreError(f"{name} holds NaN or infinite values")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if array.shape[0] and (norms == 0).any():
        raise StoreError(f"{name} row {int(np.flatnonzero(norms[:, 0] == 0)[0])} is all zeros: it has no direction")
    return array / norms if array.shape[0] else array


def _checked_ids(ids: Any, count: int, kind: str) -> list[str]:
    ids = list(ids)
    if any(not isinstance(item, str) for item in ids):
        raise StoreError(f"{kind} ids must be strings")
    if len(ids) != count:
        raise StoreError(f"{kind} ids: {len(ids)} for {count} vectors; give one id per vector")
    seen: set[str] = set()
    duplicates = [item for item in ids if item in seen or seen.add(item)]
    if duplicates:
        raise StoreError(f"duplicate {kind} ids: {sorted(set(duplicates))[:5]}")
    return ids


def make_store(metadata: dict[str, Any], **parts: tuple[list[str], Any]) -> EmbeddingStore:
    """An in-memory store from `images=(ids, vectors)` and/or `texts=(ids, vectors)`.

    `metadata["dimension"]` is set from the vectors. Raises StoreError: unknown kind, mismatched ids, rows of
    different dimensions, or nothing given.
    """
    unknown = sorted(set(parts) - set(KINDS))
    if unknown or not parts:
        raise StoreError(f"give images=(ids, vectors) and/or texts=(ids, vectors), got {sorted(parts)}")
    store = EmbeddingStore(metadata=dict(metadata))
    for kind in KINDS:
        if kind in parts:
            ids, vectors = parts[kind]
            store.vectors[kind] = unit_rows(vectors, f"{kind} vectors")
            store.ids[kind] = _checked_ids(ids, len(store.vectors[kind]), kind)
    dimensions = {array.shape[1] for array in store.vectors.values()}
    if len(dimensions) > 1:
        raise StoreError(f"image and text vectors differ in dimension: {sorted(dimensions)}")
    declared = store.metadata.get("dimension")
    if declared is not None and int(declared) not in dimensions:
        raise StoreError(f"metadata says dimension {declared} but the vectors have {dimensions.pop()}")
    store.metadata["dimension"] = dimensions.pop()
    return store


def check_compatible(store: EmbeddingStore, metadata: dict[str, Any], where: str) -> None:
    """Refuse to mix embeddings of another model or dimension into `store`.

    Raises:
        StoreError: naming the store, the recorded value and the new one.
    """
    for key in IDENTITY_KEYS:
        old, new = store.metadata.get(key), metadata.get(key)
        if old is not None and new is not None and str(old) != str(new):
            raise StoreError(
                f"{where} was made with {key} {old!r}, not {new!r}: embeddings of different models cannot be "
                f"compared; build a new store (or --force to replace it)"
            )


def _looks_like_store(path: Path) -> bool:
    if not path.is_dir():
        return False
    names = {name for name in os.listdir(path) if not is_temp_name(name)}
    return TABLE_FILE in names and names <= {TABLE_FILE, *VECTOR_FILES.values()}


def check_destination(path: str | os.PathLike, mode: str) -> None:
    """Whether a store may be written at `path` in `mode` (see `write_store`); checked before any work.

    Raises:
        ValueError: an unknown mode. FileExistsError: as `write_store`.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    path = Path(path)
    if not path.exists() or (path.is_dir() and not os.listdir(path)):
        return
    if not _looks_like_store(path):
        raise FileExistsError(f"{path} exists and is not an embedding store: choose another --out (it is not replaced)")
    if mode == "new":
        raise FileExistsError(
            f"{path} already holds an embedding store: replace it (mode='force'; blip index build --force) "
            "or add to it (mode='append'; --append)"
        )


def write_store(path: str | os.PathLike, store: EmbeddingStore, mode: str = "new") -> EmbeddingStore:
    """Write `store` as the folder `path`, atomically; returns what is now at `path`.

    `mode`: "new" (refuse an existing `path`), "force" (replace an existing store) or "append" (add `store`'s
    entries to the store at `path`, or create it).

    Raises:
        FileExistsError: `path` exists and `mode` is "new", or it exists and is not an embedding store.
        StoreError: appending entries of another model or dimension, or ids already in the store.
    """
    path = Path(path)
    check_destination(path, mode)
    if path.is_dir() and not os.listdir(path):
        path.rmdir()  # an empty folder made for the store holds nothing to keep
    if path.exists() and mode == "append":
        store = merged(read_store(path), store, str(path))
    with atomic_folder(path, replace=True) as work:
        for kind in store.kinds:
            np.save(work / VECTOR_FILES[kind], np.ascontiguousarray(store.vectors[kind], dtype=np.float32))
        atomic_write_text(work / TABLE_FILE, json.dumps(_table(store), ensure_ascii=False))
    return EmbeddingStore(store.metadata, store.ids, store.vectors, path)


def merged(old: EmbeddingStore, new: EmbeddingStore, where: str) -> EmbeddingStore:
    """`old` followed by `new`, per kind (the metadata of `old`, counts updated).

    Raises:
        StoreError: another model or dimension, or an id of `new` already in `old`.
    """
    check_compatible(old, new.metadata, where)
    parts = {}
    for kind in KINDS:
        pieces = [store for store in (old, new) if kind in store.vectors]
        if pieces:
            ids = [item for store in pieces for item in store.ids[kind]]
            parts[kind] = (ids, np.concatenate([store.vectors[kind] for store in pieces]))
    return make_store(old.metadata, **parts)


def _table(store: EmbeddingStore) -> dict[str, Any]:
    counts = {kind: store.count(kind) for kind in store.kinds}
    table: dict[str, Any] = {"format": FORMAT, "version": VERSION, "metadata": {**store.metadata, "counts": counts}}
    for kind in store.kinds:
        table[kind] = {"count": store.count(kind), "ids": store.ids[kind]}
    return table


def read_store(path: str | os.PathLike, mmap: bool = False) -> EmbeddingStore:
    """The store in folder `path` (vectors memory-mapped read-only when `mmap`).

    Raises:
        FileNotFoundError: no such folder, or a file of the store is missing.
        StoreError: not an embedding store, another format version, or files that disagree.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no embedding store at {path}: build one with `blip index build IMAGES --out {path}`")
    table_path = path / TABLE_FILE
    if not table_path.is_file():
        raise StoreError(f"{path} is not an embedding store: it has no {TABLE_FILE}")
    try:
        table = json.loads(table_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StoreError(f"{table_path} is not valid JSON: {err}") from err
    if not isinstance(table, dict) or table.get("format") != FORMAT:
        raise StoreError(f"{table_path} is not a {FORMAT} table")
    if table.get("version") != VERSION:
        raise StoreError(f"{table_path} has store version {table.get('version')!r}; this library reads {VERSION}")
    metadata = table.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("dimension"), int):
        raise StoreError(f"{table_path} has no metadata with an integer dimension")
    store = EmbeddingStore(metadata={k: v for k, v in metadata.items() if k != "counts"}, path=path)
    for kind in KINDS:
        if kind in table:
            store.ids[kind], store.vectors[kind] = _read_kind(path, table[kind], kind, store.dimension, mmap)
    if not store.kinds:
        raise StoreError(f"{table_path} lists neither images nor texts")
    return store


def _read_kind(path: Path, entry: Any, kind: str, dimension: int, mmap: bool) -> tuple[list[str], np.ndarray]:
    file = path / VECTOR_FILES[kind]
    if not isinstance(entry, dict) or not isinstance(entry.get("ids"), list):
        raise StoreError(f"{path / TABLE_FILE}: the {kind} entry has no list of ids")
    try:
        vectors = np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{file} is missing: the store lists {kind} but has no vectors for them") from None
    except ValueError as err:
        raise StoreError(f"{file} is not a NumPy array file: {err}") from err
    if vectors.dtype != np.float32 or vectors.ndim != 2 or vectors.shape[1] != dimension:
        raise StoreError(f"{file} holds {vectors.dtype} {vectors.shape}, expected float32 (N, {dimension})")
    try:
        ids = _checked_ids(entry["ids"], len(vectors), kind)
    except StoreError as err:
        raise StoreError(f"{path}: {err}") from None
    return ids, vectors
