"""`blip demo` (also `python -m blip_core.demo`): the trained demo models, in PyTorch and TensorFlow.

A few held-out synthetic images (coloured shapes the models never saw in training) are
captioned, questioned and matched against their true caption and a caption with one detail
changed, by blip_torch and by blip_tf from the same embedded checkpoints. The two columns are
printed side by side with each output's largest difference across frameworks.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

from blip_core.demo.tasks import DEMO_MODELS_DIR, held_out
from blip_core.io.native_logs import quiet_native_logs

PARITY_BOUND = 1e-4


def _difference(a: np.ndarray, b: np.ndarray) -> str:
    if a.shape != b.shape:
        return f"shapes differ {a.shape} vs {b.shape}"
    if a.dtype.kind in "iu":
        return "identical" if np.array_equal(a, b) else f"{int((a != b).sum())} ids differ"
    return f"{float(np.abs(a.astype(np.float64) - b).max()):.1e} (scaled {_scaled(a, b):.1e})"


def _scaled(a: np.ndarray, b: np.ndarray) -> float:
    """The largest |a - b| / max(1, |b|): absolute for small values, relative for large ones."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float((np.abs(a - b) / np.maximum(1.0, np.abs(b))).max()) if a.size else 0.0


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's options, shared by `python -m blip_core.demo` and `blip demo`."""
    parser.add_argument("--count", type=int, default=4, help="held-out images to show (default 4)")
    parser.add_argument("--start", type=int, default=4, help="first held-out image (default 4: all three shapes)")
    parser.add_argument("--save", metavar="DIR", help="also write the images shown, as PNG, into DIR")
    parser.add_argument(
        "--verbose", action="store_true", help="let TensorFlow's and XLA's own log lines through to stderr"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="blip demo", description=__doc__.splitlines()[0])
    add_demo_arguments(parser)
    args = parser.parse_args(argv)
    with quiet_native_logs(not args.verbose):
        return run(args)


def run(args: argparse.Namespace) -> int:
    """Show the demo for parsed options (count, start, save)."""
    missing = [module for module in ("torch", "tensorflow") if importlib.util.find_spec(module) is None]
    if missing:
        print(
            f"blip demo runs both frameworks; install {' and '.join(missing)}: pip install 'blip-dual[all]'",
            file=sys.stderr,
        )
        return 2
    from blip_core.demo.runs import demo_models_present, run_demo_models

    if not demo_models_present():
        print(
            f"blip demo: the trained demo models are missing from {DEMO_MODELS_DIR}; run scripts/train_demo.py",
            file=sys.stderr,
        )
        return 2
    held = held_out(args.count, args.start)
    if args.save:
        folder = Path(args.save)
        folder.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(held.images):
            image.save(folder / f"held_out_{args.start + i}.png")
    runs, seconds = {}, {}
    for framework in ("pt", "tf"):
        started = time.perf_counter()
        runs[framework] = run_demo_models(framework, held)
        seconds[framework] = time.perf_counter() - started
    pt, tf = runs["pt"], runs["tf"]
    print(f"BLIP demo models (trained by scripts/train_demo.py) on {args.count} held-out synthetic images")
    print(f"{'':12}{'blip_torch (PyTorch)':50}{'blip_tf (TensorFlow/Keras)':50}")
    for i, scene in enumerate(held.scenes):
        print(f"\nimage {args.start + i}, truth: {scene.caption!r}")
        print(f"{'  caption':12}{pt.captions[i]!r:50}{tf.captions[i]!r:50}")
        print(f"  Q: {held.questions[i]}  (truth: {held.answers[i]})")
        print(f"{'  answer':12}{pt.answers[i]!r:50}{tf.answers[i]!r:50}")
        for column, label in ((0, scene.caption), (1, held.negatives[i])):
            pair = f"P(match) {pt.match_probability[i, column]:.3f}  cos {pt.match_cosine[i, column]:+.3f}"
            pair_tf = f"P(match) {tf.match_probability[i, column]:.3f}  cos {tf.match_cosine[i, column]:+.3f}"
            print(f"  match {label!r}")
            print(f"{'':12}{pair:50}{pair_tf:50}")
    print("\nlargest difference between the frameworks, per output:")
    worst = 0.0
    for name, value in pt.outputs().items():
        other = tf.outputs()[name]
        print(f"  {name:18} {_difference(value, other)}")
        if value.shape == other.shape and value.dtype.kind == "f":
            worst = max(worst, _scaled(value, other))
    same = all(np.array_equal(pt.outputs()[k], tf.outputs()[k]) for k in ("caption ids", "answer ids"))
    print(f"same ids in both frameworks: {same}; worst scaled float difference {worst:.1e} (bound {PARITY_BOUND:.0e})")
    print(f"time: PyTorch {seconds['pt']:.1f}s, TensorFlow {seconds['tf']:.1f}s (includes loading and XLA compilation)")
    return 0 if same and worst <= PARITY_BOUND else 1


if __name__ == "__main__":
    sys.exit(main())
