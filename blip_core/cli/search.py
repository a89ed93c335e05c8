"""`blip search INDEX "a dog on a beach" -k 10 [--rerank 128]` and `blip search INDEX --image photo.jpg -k 10`.

A text query searches the stored images, an image query the stored texts (or the images when the store has no
texts); `--target` chooses. Scores are ITC cosines, or with `--rerank N` the original BLIP's ITM logit of the
match class plus the cosine, for the best N by cosine (at least k). One record per result: rank, id, score.
The query is embedded by the model the store records unless `--model` says otherwise (same dimension needed),
in PyTorch unless `--framework tf` (both trees embed alike).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from blip_core.cli.common import EXIT_ERROR, EXIT_OK, EXIT_SOME_FAILED, UsageError, Writer, load_images, one_line
from blip_core.cli.index import add_model_arguments, load_pipeline

COMMANDS = ("search",)
FIELDS = ["rank", "id", "score"]


def add_parsers(commands: Any) -> None:
    search = commands.add_parser("search", help="search an embedding store by text or image")
    search.add_argument("index", help="a store folder made by `blip index build`")
    search.add_argument("query", nargs="?", help="the text to search for")
    search.add_argument("--image", help="an image to search with instead of a text")
    search.add_argument("-k", "--top-k", dest="k", type=int, default=10, help="how many results (default 10)")
    search.add_argument("--rerank", type=int, metavar="N", help="re-rank the best N by ITM (N >= k)")
    search.add_argument("--target", choices=["images", "texts"], help="which stored kind to search")
    search.add_argument(
        "--backend",
        choices=["auto", "numpy", "faiss", "faiss-ivf"],
        default="auto",
        help="numpy/faiss: exact; faiss-ivf: approximate, for millions (needs blip-dual[search])",
    )
    add_model_arguments(search, "the model that embeds the query (default: the one the store records)")
    search.add_argument("--batch-size", type=int, default=16, help="pairs per ITM batch when re-ranking")
    search.add_argument("--format", choices=["text", "jsonl", "csv"], default="text")
    search.add_argument("--verbose", action="store_true", help="let TensorFlow's and XLA's own log lines through")


def run(args: argparse.Namespace) -> int:
    try:
        return _search(args)
    except (ValueError, OSError, RuntimeError, TypeError, ImportError) as err:
        print(f"blip: error: {one_line(err)}", file=sys.stderr)
        return EXIT_ERROR


def _check(args: argparse.Namespace) -> None:
    if (args.query is None) == (args.image is None):
        raise UsageError("give a text query or --image FILE (one of them)")
    if args.query is not None and not args.query.strip():
        raise UsageError("the text query is empty")
    if args.k < 1:
        raise UsageError(f"-k must be at least 1, got {args.k}")
    if args.rerank is not None and args.rerank < args.k:
        raise UsageError(f"--rerank must be at least -k ({args.k}), got {args.rerank}")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")


def _search(args: argparse.Namespace) -> int:
    from blip_core.tasks import store_search
    from blip_core.tasks.embedding_store import read_store
    from blip_core.tasks.vector_search import import_faiss

    _check(args)
    store = read_store(args.index, mmap=True)
    if args.backend.startswith("faiss"):
        import_faiss()  # the missing extra named before a model loads
    query_is_text = args.query is not None
    kind = store_search.target_kind(store, query_is_text, args.target)
    if args.rerank and (kind == "images") != query_is_text:
        raise UsageError(
            f"--rerank scores image-text pairs: a {'text' if query_is_text else 'image'} query cannot "
            f"re-rank stored {kind}"
        )
    query = _query_image(args.image) if not query_is_text else args.query
    protocol = args.protocol or store.metadata.get("protocol") or "transformers"
    pipe = load_pipeline(
        args.model or store.metadata.get("model"),
        args.framework,  # either tree embeds the same (within 1e-4), whichever built the store
        args.device,
        args.dtype,
    )
    if query_is_text:
        vector = store_search.embed_query_texts(pipe, [query], protocol)[0]
    else:
        vector = store_search.embed_query_images(pipe, [query])[0]
    scores, rows = store_search.search(store, vector, kind, max(args.k, args.rerank or 0), args.backend)
    failed = 0
    if args.rerank:
        scores, rows, failed = _reranked(args, pipe, store.ids[kind], kind, query, scores, rows, protocol)
    writer = Writer(args.format, FIELDS)
    for hit in store_search.hits(store.ids[kind], scores, rows, args.k):
        writer.write({"rank": hit.rank, "id": hit.id, "score": hit.score})
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _query_image(name: str) -> Any:
    loaded, failed = load_images([name])
    if failed:
        raise OSError(f"--image {name}: {failed[0][1]}")
    return loaded[0][1]


def _reranked(
    args: argparse.Namespace, pipe: Any, ids: list[str], kind: str, query: Any, scores: Any, rows: Any, protocol: str
) -> tuple[Any, Any, int]:
    """Scores ITM logit + cosine for the candidates; images that cannot be read again are reported and dropped."""
    from blip_core.tasks.store_search import rerank

    pool = [ids[int(row)] for row in rows]
    failed: list[tuple[str, str]] = []
    if kind == "images":
        loaded, failed = load_images(pool)
        for name, reason in failed:
            print(f"blip: skipped {name} (cannot re-rank it): {reason}", file=sys.stderr)
        readable = {name for name, _ in loaded}
        keep = [i for i, name in enumerate(pool) if name in readable]
        scores, rows, pool = scores[keep], rows[keep], [image for _, image in loaded]
    if not pool:
        raise OSError("none of the candidate images could be read again to re-rank them")
    return rerank(pipe, query, pool, scores, protocol, args.batch_size), rows, len(failed)
