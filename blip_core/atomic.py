"""Atomic file writes: a temporary file beside the target, then one rename.

A crash or an error mid-write leaves the previous file (or nothing) in place,
never a truncated one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; it replaces `target` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; give the usual mode
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_open(target: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a binary stream whose content replaces `target` when the block ends cleanly."""
    with atomic_path(target) as tmp, open(tmp, "wb") as stream:
        yield stream
        stream.flush()
        os.fsync(stream.fileno())


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> None:
    with atomic_open(target) as stream:
        stream.write(data)


def atomic_write_text(target: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
