"""Output folders written all-or-nothing, and progress on stderr for big conversions."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
PROGRESS_MIN_BYTES = 256 * 2**20  # below this, conversions are quick and silent


class DestinationExistsError(FileExistsError):
    """The destination exists and --force was not given."""


@contextlib.contextmanager
def output_folder(destination: str | os.PathLike, force: bool) -> Iterator[Path]:
    """Yield a temporary folder beside `destination`; it becomes `destination` only if the block succeeds.

    An existing destination is replaced only with `force`, and only after the new one is complete.
    """
    destination = Path(destination)
    if destination.exists() and not force:
        raise DestinationExistsError(f"{destination} already exists; pass --force to replace it")
    destination.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        yield work
        if destination.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{destination.name}.old.", dir=destination.parent))
            os.replace(destination, old / "previous")
            os.replace(work, destination)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(work, destination)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def progress(items: Iterable[T], total_bytes: int, sizes: dict, label: str) -> Iterator[T]:
    """Yield items, printing a percentage by bytes to stderr when the job is big."""
    show = total_bytes >= PROGRESS_MIN_BYTES and sys.stderr.isatty() or os.environ.get("BLIP_PROGRESS") == "1"
    done, last = 0, -1
    for item in items:
        yield item
        done += sizes.get(item, 0)
        percent = int(100 * done / max(total_bytes, 1))
        if show and percent != last:
            print(f"\r{label}: {percent:3d}% of {total_bytes / 2**20:.0f} MiB", end="", file=sys.stderr, flush=True)
            last = percent
    if show:
        print(file=sys.stderr)
