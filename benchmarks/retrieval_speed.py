"""Retrieval throughput and store memory: images embedded per second, queries per second over 10k and 1M stored
embeddings (NumPy exact, faiss exact, faiss IVF), with and without ITM re-ranking.

- Embedding: the embedded demo retrieval model (ViT 80 px, 3 layers, 64 hidden; `--base`: a random model of the
  Hub's base sizes, ViT-B/16 at 384 px and BERT-base, written once), PyTorch float32, batches of `--batch-size`.
- Stores: synthetic unit vectors of dimension 256 (base BLIP's ITC size), written and read back as real stores
  (ids like "photos/000123.jpg"). Queries are single vectors (as `blip search` runs them); faiss-ivf uses
  nlist ~ sqrt(N), nprobe 16, and its recall@10 against the exact search is reported, on the uniform vectors
  (its worst case: no cluster structure) and on clustered ones (1024 centres, queries near stored vectors).
- Re-ranking: a text query (embedded by the model) searched over the store, then the top `--rerank` candidates
  scored by the ITM head (`blip_core.tasks.retrieval.rerank`) against in-memory images.
- Memory: bytes on disk, bytes of the vectors in RAM, the index's extra RAM (RSS growth while building it).

    python benchmarks/retrieval_speed.py                    # 10k and 1M, demo model
    python benchmarks/retrieval_speed.py --sizes 10000 --base
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import print_description  # benchmarks/machine.py, beside this script

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blip_core.tasks.embedding_store import make_store, read_store, write_store  # noqa: E402
from blip_core.tasks.vector_search import VectorIndex, faiss_available  # noqa: E402

DIMENSION = 256
DEMO = Path(__file__).resolve().parents[1] / "blip_core" / "data" / "models" / "BlipForImageTextRetrieval"


def rss_bytes() -> int:
    with open("/proc/self/statm") as stream:
        return int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def per_second(run, count: int, seconds: float = 2.0) -> float:
    """Calls of `run` per second (after one warm-up), over at least `count` calls or `seconds`."""
    run()
    done, start = 0, time.perf_counter()
    while done < count or time.perf_counter() - start < seconds:
        run()
        done += 1
        if done >= 10 * count:
            break
    return done / (time.perf_counter() - start)


def model_folder(base: bool, scratch: Path) -> Path:
    if not base:
        return DEMO
    import torch

    from blip_core import BlipConfig, BlipProcessor
    from blip_torch import BlipForImageTextRetrieval

    torch.manual_seed(0)
    folder = scratch / "base"
    BlipForImageTextRetrieval(BlipConfig(text_config={"num_attention_heads": 12})).save_pretrained(folder)
    processor = BlipProcessor.from_pretrained(DEMO)
    processor.image_processor.size = {"height": 384, "width": 384}
    processor.save_pretrained(folder)
    return folder


def embedding_rate(pipe, images: list, batch_size: int) -> float:
    from blip_core.tasks.store_search import embed_query_images

    start = time.perf_counter()
    embed_query_images(pipe, images, batch_size)
    return len(images) / (time.perf_counter() - start)


def synthetic_store(size: int, folder: Path) -> tuple[Path, int]:
    rng = np.random.default_rng(size)
    vectors = np.empty((size, DIMENSION), np.float32)
    for start in range(0, size, 100_000):
        vectors[start : start + 100_000] = rng.standard_normal((min(100_000, size - start), DIMENSION))
    ids = [f"photos/{i:07d}.jpg" for i in range(size)]
    path = folder / f"store_{size}"
    write_store(path, make_store({"model": "synthetic", "framework": "pt"}, images=(ids, vectors)), mode="force")
    return path, sum(f.stat().st_size for f in path.iterdir())


def search_rows(path: Path, queries: np.ndarray, args: argparse.Namespace) -> list[tuple]:
    store = read_store(path)
    vectors = store.vectors["images"]
    rows, exact = [], None
    backends = ["numpy"] + (["faiss", "faiss-ivf"] if faiss_available() else [])
    for backend in backends:
        before, start = rss_bytes(), time.perf_counter()
        index = VectorIndex(vectors, backend)
        built, extra = time.perf_counter() - start, max(0, rss_bytes() - before)
        found = np.concatenate([index.search(q, 10)[1] for q in queries])
        exact = found if exact is None else exact
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact, strict=True)])
        query_iter = iter(np.tile(queries, (100, 1)))
        rate = per_second(lambda index=index, it=query_iter: index.search(next(it), 10), args.queries)
        rows.append((len(vectors), backend, rate, recall, built, store.nbytes(), extra))
        del index
    return rows


def clustered_ivf_row(size: int, args: argparse.Namespace) -> tuple:
    """IVF on vectors with cluster structure (as real embeddings have), queries near stored vectors: the
    (size, backend, queries/s, recall@10 against the exact search, build seconds)."""
    if not faiss_available():
        return ()
    rng = np.random.default_rng(size + 1)
    centres = rng.standard_normal((1024, DIMENSION)).astype(np.float32)
    vectors = centres[rng.integers(0, 1024, size)] + 0.08 * rng.standard_normal((size, DIMENSION), np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[rng.integers(0, size, args.queries)] + 0.04 * rng.standard_normal(
        (args.queries, DIMENSION), np.float32
    )
    exact = np.concatenate([VectorIndex(vectors, "numpy").search(q, 10)[1] for q in queries])
    start = time.perf_counter()
    index = VectorIndex(vectors, "faiss-ivf")
    built = time.perf_counter() - start
    found = np.concatenate([index.search(q, 10)[1] for q in queries])
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact, strict=True)])
    query_iter = iter(np.tile(queries, (100, 1)))
    return size, "faiss-ivf", per_second(lambda: index.search(next(query_iter), 10), args.queries), recall, built


def rerank_rate(pipe, path: Path, images: list, args: argparse.Namespace) -> tuple[float, float]:
    """Queries per second for text query -> ITC top-k over the store, without and with re-ranking its top R."""
    from blip_core.tasks.store_search import embed_query_texts, rerank

    store = read_store(path)
    index = VectorIndex(store.vectors["images"], "numpy")
    projection = np.random.default_rng(0).standard_normal((pipe.model.config.image_text_hidden_size, DIMENSION))

    def query(reranked: bool) -> None:
        vector = embed_query_texts(pipe, ["three green circles on a yellow background"], "transformers")[0]
        scores, _ = index.search(vector @ projection, max(10, args.rerank))  # the model's dim mapped to 256
        if reranked:
            pool = [images[i % len(images)] for i in range(len(scores[0]))]
            rerank(pipe, "three green circles on a yellow background", pool, scores[0], "transformers", 32)

    return per_second(lambda: query(False), 5), per_second(lambda: query(True), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--base", action="store_true", help="embed with a random base-size model, not the demo")
    parser.add_argument("--images", type=int, default=64, help="images to embed for the rate")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--rerank", type=int, default=128)
    args = parser.parse_args()
    print_description()  # where these figures were measured

    from blip_core.demo.tasks import held_out
    from blip_core.tasks.pipelines import pipeline

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        model = model_folder(args.base, scratch)
        pipe = pipeline("image-text-matching", model=str(model), framework="pt", dtype="float32")
        images = held_out(args.images).images
        rate = embedding_rate(pipe, images, args.batch_size)
        print(
            f"model: {'random base-size' if args.base else 'embedded demo'} ({model.name}), PyTorch float32, "
            f"{os.cpu_count()} CPUs; stores: synthetic unit vectors, {DIMENSION}-d"
        )
        print(f"images embedded per second: {rate:.1f} (batch {args.batch_size}, {args.images} images)\n")
        queries = np.random.default_rng(1).standard_normal((args.queries, DIMENSION)).astype(np.float32)
        header = f"{'stored':>9} {'backend':>9} {'queries/s':>10} {'recall@10':>9} {'build s':>8} "
        print(header + f"{'disk MB':>8} {'vectors MB':>10} {'index extra MB':>14}")
        rerank_rows = []
        for size in args.sizes:
            path, disk = synthetic_store(size, scratch)
            for stored, backend, qps, recall, built, nbytes, extra in search_rows(path, queries, args):
                print(
                    f"{stored:>9} {backend:>9} {qps:>10.1f} {recall:>9.3f} {built:>8.2f} "
                    f"{disk / 1e6:>8.1f} {nbytes / 1e6:>10.1f} {extra / 1e6:>14.1f}"
                )
            rerank_rows.append((size, *rerank_rate(pipe, path, images, args)))
            clustered = clustered_ivf_row(size, args)
            if clustered:
                stored, backend, qps, recall, built = clustered
                print(f"{stored:>9} {backend:>9} {qps:>10.1f} {recall:>9.3f} {built:>8.2f}   (clustered vectors)")
        print(
            f"\ntext query end to end (embed + NumPy top-k), without and with ITM re-ranking of the top {args.rerank}:"
        )
        for size, plain, reranked in rerank_rows:
            print(f"{size:>9} stored: {plain:.1f} queries/s without, {reranked:.2f} queries/s with re-ranking")


if __name__ == "__main__":
    main()
