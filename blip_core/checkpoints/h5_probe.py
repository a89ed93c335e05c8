"""Read an `.h5` weights file once in a forked child before reading it here: libhdf5 can crash the whole
process (a segmentation fault) on a damaged or crafted file, which no Python `try` catches. A child that
dies of a signal, or does not finish in time, becomes an `H5ReadError` naming the file; Python errors are
left to the real read in this process, which raises them with their own message.

Where `os.fork` is missing (Windows), the file is read directly.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

INDEX_TIMEOUT_S = 10.0  # opening and indexing (groups, attributes, dtypes): well under a second for real files
PROBE_TIMEOUT_S = 300.0  # reading every tensor: a child still reading after this long is stopped, the file refused
_POLL_S = 0.002


def read_all(open_source: Callable[[Path], Any], path: Path, indexed: Callable[[], None] = lambda: None) -> None:
    """Open `path` with `open_source` and read every tensor, ignoring Python errors (the caller reports them);
    `indexed()` is called once the file is open and indexed."""
    try:
        source = open_source(path)
        indexed()
        try:
            for name in source.keys():
                source.get(name)
        finally:
            source.close()
    except BaseException:  # noqa: BLE001 - in the child only a crash matters
        pass


def check_in_child(path: Path, open_source: Callable[[Path], Any], error: type[Exception]) -> None:
    """Run `read_all(open_source, path)` in a forked child; raise `error` if the child crashes, does not index
    the file within `INDEX_TIMEOUT_S` or does not finish within `PROBE_TIMEOUT_S`."""
    if not hasattr(os, "fork"):
        return
    try:  # h5py's global lock, held across the fork: free in the child, whatever other threads do
        from h5py._objects import phil
    except ImportError:  # a private name; without it only a concurrent h5py call at fork time could stall
        phil = contextlib.nullcontext()

    progress, report = os.pipe()
    with phil:
        pid = os.fork()
        if pid == 0:  # the child: read, then leave without running any of the parent's exit handlers
            faulthandler.disable()  # its crash is reported by the parent, as an error, not as a traceback dump
            os.close(progress)
            read_all(open_source, path, lambda: os.write(report, b"i"))
            os._exit(0)
    os.close(report)
    try:
        status, stage = _wait(pid, progress)
    finally:
        os.close(progress)
    if status is None:
        limit = INDEX_TIMEOUT_S if stage == "indexing" else PROBE_TIMEOUT_S
        raise error(f"{path}: {stage} this HDF5 file did not finish in {limit:.0f} s; refused")
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        raise error(f"{path}: the HDF5 library crashed reading this file ({name}); it is damaged or crafted; refused")


def _wait(pid: int, progress: int) -> tuple[int | None, str]:
    """(the child's wait status, or None after killing it when its stage ran out of time; the stage)."""
    os.set_blocking(progress, False)
    started = time.monotonic()
    stage, limit = "indexing", INDEX_TIMEOUT_S
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status, stage
        if stage == "indexing":
            try:
                if os.read(progress, 1):
                    stage, limit = "reading", PROBE_TIMEOUT_S
            except BlockingIOError:
                pass
        if time.monotonic() - started > limit:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None, stage
        time.sleep(_POLL_S)
