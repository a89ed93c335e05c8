"""`blip eval retrieval`: the BLIP paper's two-stage image-text retrieval on an annotated image folder, and its
recall@1/5/10 (`blip_core.tasks.retrieval`, `blip_core.tasks.retrieval_metrics`).

    blip eval retrieval --annotations flickr30k_test.json --images flickr30k/ --k 128 --protocol original

The annotations are Karpathy-style JSON (`[{"image": "relative/path.jpg", "caption": ["...", ...]}, ...]`), image
paths relative to `--images`. Writes one JSON object to stdout: the nine numbers of the original's `itm_eval`
(percentages) with the corpus size, k and protocol.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from blip_core.cli.common import EXIT_ERROR, EXIT_OK, UsageError, add_runtime_arguments, one_line

HELP = "image-text retrieval recall@1/5/10 (ITC top-k, ITM re-ranking), as the BLIP paper"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `blip eval retrieval`."""
    parser.add_argument("--annotations", required=True, help="Karpathy-style JSON: [{image, caption: [...]}, ...]")
    parser.add_argument("--images", required=True, help="the folder the annotations' image paths are relative to")
    parser.add_argument("--k", type=int, default=128, help="candidates re-ranked by ITM per query (default 128)")
    parser.add_argument("--protocol", choices=["transformers", "original"], default="transformers")
    add_runtime_arguments(parser, "a retrieval checkpoint folder or Hub id (default: the embedded demo model)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--progress", action="store_true", help="show progress on stderr")


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the metrics; 2 with one line on stderr when nothing could be done."""
    try:
        metrics = _evaluate(args)
    except (ValueError, OSError, RuntimeError, TypeError, ImportError) as err:
        print(f"blip: error: {one_line(err)}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(metrics))
    return EXIT_OK


def _evaluate(args: argparse.Namespace) -> dict:
    from blip_core.cli.common import pipeline_for
    from blip_core.tasks.retrieval import retrieve
    from blip_core.tasks.retrieval_metrics import read_annotations, retrieval_recalls

    for name in ("k", "batch_size"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    root = Path(args.images)
    if not root.is_dir():
        raise UsageError(f"--images {args.images!r} is not a folder")
    truth = read_annotations(args.annotations)
    paths = [root / name for name in truth.images]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} annotated images are not under {args.images}: {', '.join(missing[:5])}"
        )
    pipe = pipeline_for(args, "image-text-matching")
    scores = retrieve(
        pipe.model,
        pipe.processor,
        [str(path) for path in paths],
        truth.texts,
        k=args.k,
        protocol=args.protocol,
        batch_size=args.batch_size,
        progress=args.progress,
    )
    metrics = retrieval_recalls(scores.image_to_text, scores.text_to_image, truth)
    return {**metrics, "images": len(truth.images), "texts": len(truth.texts), "k": args.k, "protocol": args.protocol}
