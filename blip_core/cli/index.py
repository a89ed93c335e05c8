"""`blip index build IMAGES... --out INDEX`: embed images (folders recursively) and texts into an embedding store.

    blip index build photos/ --out photos.index --texts captions.txt --progress
    blip index build more_photos/ --out photos.index --append     # adds what is not stored yet

Unreadable images are reported on stderr and skipped (exit code 1); an existing INDEX needs --force (replace)
or --append (add). The store is written whole or not at all (`blip_core.tasks.embedding_store`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from blip_core.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_SOME_FAILED,
    IMAGE_SUFFIXES,
    UsageError,
    add_runtime_arguments,
    add_verbose_argument,
    batches,
    empty_folders,
    expand_inputs,
    load_images,
    one_line,
    progress,
)

COMMANDS = ("index",)
TASK = "image-text-matching"


def add_parsers(commands: Any) -> None:
    index = commands.add_parser("index", help="build an embedding store to search with `blip search`")
    actions = index.add_subparsers(dest="index_action", required=True)
    build = actions.add_parser("build", help="embed images and texts into a store folder")
    build.add_argument("images", nargs="*", help="image files or folders (searched recursively)")
    build.add_argument("--out", required=True, help="the store folder to write")
    build.add_argument("--texts", help="a UTF-8 file of texts to store, one per line")
    add_model_arguments(build)
    build.add_argument("--batch-size", type=int, default=8)
    build.add_argument("--progress", action="store_true", help="show progress on stderr (default: on a terminal)")
    mode = build.add_mutually_exclusive_group()
    mode.add_argument("--force", action="store_true", help="replace an existing store")
    mode.add_argument("--append", action="store_true", help="add to an existing store (entries not in it yet)")
    add_verbose_argument(build)


def add_model_arguments(sub: argparse.ArgumentParser, model_help: str | None = None) -> None:
    """--model, --framework, --device, --dtype and --protocol (shared with `blip search`)."""
    add_runtime_arguments(sub, model_help or "a retrieval checkpoint folder or Hub id (default: the demo model)")
    sub.add_argument(
        "--protocol", choices=["transformers", "original"], help="'original': texts cleaned as the BLIP paper did"
    )


def load_pipeline(model: str | None, framework: str | None, device: str | None, dtype: str) -> Any:
    from blip_core.tasks.pipelines import pipeline

    return pipeline(TASK, model=model, framework=framework, device=device, dtype=dtype)


def model_name(model: str | None) -> str:
    """What the store records as its model: a local folder as an absolute path, a Hub id as given."""
    if model is None:
        return _default_model_quiet()
    return str(Path(model).resolve()) if Path(model).is_dir() else model


def _default_model_quiet() -> str:
    import warnings

    from blip_core.tasks.pipelines import default_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return default_model(TASK)


def read_texts(file: str) -> list[str]:
    """The non-blank lines of `file`, stripped. Raises OSError/ValueError naming the file (also when it holds none)."""
    try:
        lines = Path(file).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"--texts {file} is not UTF-8 text: {err}") from None
    texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        raise ValueError(f"--texts {file} holds no text (one per line expected)")
    return texts


def run(args: argparse.Namespace) -> int:
    try:
        return _build(args)
    except (ValueError, OSError, RuntimeError, TypeError, ImportError) as err:
        print(f"blip: error: {one_line(err)}", file=sys.stderr)
        return EXIT_ERROR


def _inputs(args: argparse.Namespace, stored: dict[str, set[str]]) -> tuple[list[str], list[str]]:
    """The image names and texts to embed (those already in an appended store left out, with a note)."""
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    texts = read_texts(args.texts) if args.texts else []
    names, empty = expand_inputs(args.images), empty_folders(args.images)
    for folder in empty:
        looked_for = ", ".join(sorted(IMAGE_SUFFIXES))
        print(f"blip: note: no image files in {folder} (looked for {looked_for})", file=sys.stderr)
    if not names and not texts:
        raise UsageError("index build needs images (files or folders holding some) or --texts")
    names = [str(Path(name).resolve()) if Path(name).exists() else name for name in names]  # ids from any folder
    new_names = [name for name in dict.fromkeys(names) if name not in stored.get("images", ())]
    new_texts = [text for text in dict.fromkeys(texts) if text not in stored.get("texts", ())]
    skipped = len(names) + len(texts) - len(new_names) - len(new_texts)
    if skipped:
        print(f"blip: note: {skipped} already stored or repeated, not embedded again", file=sys.stderr)
    return new_names, new_texts


def _build(args: argparse.Namespace) -> int:
    from blip_core.tasks.embedding_store import check_compatible, check_destination, read_store
    from blip_core.tasks.store_search import build_store

    mode = "force" if args.force else "append" if args.append else "new"
    check_destination(args.out, mode)
    existing = read_store(args.out, mmap=True) if mode == "append" and Path(args.out, "store.json").exists() else None
    if existing is not None and args.model is None:
        args.model = existing.metadata.get("model")  # appending: the store's own model by default
    metadata = {"model": model_name(args.model), "framework": args.framework or _framework(), "protocol": None}
    if existing is not None:
        check_compatible(existing, {"model": metadata["model"]}, args.out)
        if args.protocol and args.protocol != existing.metadata.get("protocol", args.protocol):
            raise UsageError(f"{args.out} was built with --protocol {existing.metadata['protocol']}: append with it")
    metadata["protocol"] = args.protocol or (existing.metadata.get("protocol") if existing else None) or "transformers"
    names, texts = _inputs(args, {kind: set(ids) for kind, ids in (existing.ids if existing else {}).items()})
    if not names and not texts:
        print(f"blip: nothing new to add to {args.out}", file=sys.stderr)
        return EXIT_OK
    pipe = load_pipeline(args.model, args.framework, args.device, args.dtype)
    failed: list[tuple[str, str]] = []
    show = args.progress or sys.stderr.isatty()

    def image_batches() -> Any:
        for chunk in progress(batches(names, args.batch_size), show):
            loaded, bad = load_images(chunk)
            for name, reason in bad:
                print(f"blip: skipped {name}: {reason}", file=sys.stderr)
            failed.extend(bad)
            yield loaded

    from blip_core.tasks.embedding_store import write_store

    store = write_store(args.out, build_store(pipe, image_batches(), texts, metadata, args.batch_size), mode)
    counts = ", ".join(f"{store.count(kind)} {kind}" for kind in store.kinds)
    print(f"{args.out}: {counts} ({store.dimension}-d, {store.metadata['model']})")
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _framework() -> str:
    from blip_core.tasks.pipelines import default_framework

    return default_framework()
