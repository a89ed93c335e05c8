"""Output folders written all-or-nothing, and progress on stderr for big conversions."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from blip_core.io.atomic import atomic_folder

T = TypeVar("T")
PROGRESS_MIN_BYTES = 256 * 2**20  # below this, conversions are quick and silent


class DestinationExistsError(FileExistsError):
    """The destination exists and --force was not given."""


def check_destination(destination: str | os.PathLike, force: bool, *sources: str | os.PathLike | None) -> None:
    """Refuse, before any work, a destination that exists without `force`, or one whose replacement would
    delete a source (the destination is a source, or a folder holding one).

    Raises:
        NotADirectoryError: `destination` is a file (never replaced, even with `force`).
        DestinationExistsError: `destination` exists and `force` is false.
        ValueError: replacing `destination` would remove a source.
    """
    destination = Path(destination)
    if not destination.exists():
        return
    if not destination.is_dir():  # --force replaces folders only: say so before suggesting it
        raise NotADirectoryError(f"{destination} exists and is not a folder; remove it or choose another name")
    if not force:
        raise DestinationExistsError(f"{destination} already exists; pass --force to replace it")
    target = destination.resolve()
    for source in sources:
        if source is None or not Path(source).exists():
            continue  # a Hub repo id
        resolved = Path(source).resolve()
        if resolved == target or target in resolved.parents:
            raise ValueError(
                f"destination {destination} holds the source {source}; --force would delete it, choose another folder"
            )


@contextlib.contextmanager
def output_folder(destination: str | os.PathLike, force: bool) -> Iterator[Path]:
    """Yield a temporary folder beside `destination`; it becomes `destination` only if the block succeeds
    (`blip_core.io.atomic.atomic_folder`: one rename, or one atomic exchange with an existing folder).

    An existing destination is replaced only with `force`, and only after the new one is complete.

    Raises:
        DestinationExistsError: `destination` exists and `force` is false (checked before anything is read).
    """
    destination = Path(destination)
    check_destination(destination, force)
    if destination.exists() and not destination.is_dir():
        raise NotADirectoryError(f"{destination} exists and is not a folder; remove it or choose another name")
    with atomic_folder(destination, replace=force) as work:
        yield work


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
