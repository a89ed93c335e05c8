"""Quiet TensorFlow's, XLA's and absl's C++ start-up logging for the command line (never for the library).

TensorFlow writes lines such as `I0000 00:00:... port.cc:153] oneDNN custom operations are on`
and `E0000 ... oneDNN supports DT_HALF only on platforms with AVX-512` from C++ straight to file
descriptor 2; `TF_CPP_MIN_LOG_LEVEL` no longer silences all of them (absl logs before it is
read). `quiet_native_logs()` sets the level for libraries not yet loaded, lowers the Python
`tensorflow` and `absl` loggers, and passes stderr through a filter that drops lines in those
formats while everything else (the command's own messages, Python warnings) goes through
unchanged. Only the `blip` commands call it, and only without `--verbose`: importing blip_tf or
building a pipeline changes no environment variable and no logger.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator

# absl / glog: "I0000 00:00:1795973874.328172    6809 port.cc:153] ..." (seconds since the epoch
# before absl is initialised, "12:34:56.789" after); TF's own:
# "2025-09-17 14:44:05.157831: I external/local_xla/xla/tsl/cuda/cudart_stub.cc:32] ..."
NATIVE_LINE = re.compile(
    rb"^(?:[IWEF]\d{4} [\d:.]+\s+\d+ \S+:\d+\]"
    rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] \S+:\d+\]"
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\.)"
)
_MAYBE_NATIVE = re.compile(rb"^(?:[IWEF]\d{0,4}|\d{1,4}|\d{4}-|WARNING: All|To enable the)")
_QUIET_LOGGERS = ("tensorflow", "absl", "jax", "h5py")


def is_native_log_line(line: bytes) -> bool:
    """Whether a stderr line is a C++ log record from TensorFlow, XLA or absl."""
    return NATIVE_LINE.match(line) is not None


class _Filter:
    """Copies a pipe to the real stderr, line by line, without the native log lines."""

    def __init__(self, read_fd: int, out_fd: int) -> None:
        self.read_fd, self.out_fd, self.pending = read_fd, out_fd, b""

    def _write(self, data: bytes) -> None:
        while data:
            data = data[os.write(self.out_fd, data) :]

    def feed(self, data: bytes) -> None:
        lines = (self.pending + data).splitlines(keepends=True)
        self.pending = b""
        for line in lines:
            if not line.endswith((b"\n", b"\r")):
                if _MAYBE_NATIVE.match(line[:32]) and len(line) < 4096:
                    self.pending = line  # could be the start of a log line: wait for its end
                else:
                    self._write(line)  # a partial line of the command's own (a progress counter)
            elif not is_native_log_line(line):
                self._write(line)

    def finish(self) -> None:
        """Write out what is left of an unfinished last line, unless it is a log line."""
        if self.pending and not is_native_log_line(self.pending):
            self._write(self.pending)
        self.pending = b""

    def run(self) -> None:
        while data := os.read(self.read_fd, 65536):
            self.feed(data)
        self.finish()
        os.close(self.read_fd)


@contextlib.contextmanager
def quiet_native_logs(enabled: bool = True) -> Iterator[None]:
    """Within the block, TensorFlow/XLA/absl C++ log lines are kept off stderr (for commands only).

    The process's stderr (fd 2) is routed through a pipe and a filtering thread, restored on exit.
    Sets `TF_CPP_MIN_LOG_LEVEL=3` unless the environment already sets it, and raises the
    `tensorflow`/`absl` Python loggers to ERROR.
    """
    if not enabled:
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    sys.stderr.flush()
    try:
        saved = os.dup(2)
        read_fd, write_fd = os.pipe()
    except OSError:  # no fd 2 to filter (a detached process): nothing to quieten
        yield
        return
    os.dup2(write_fd, 2)
    os.close(write_fd)
    pump = threading.Thread(target=_Filter(read_fd, saved).run, name="blip-stderr-filter", daemon=True)
    pump.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes our end of the pipe: the filter drains it and stops
        pump.join(timeout=1)
        if not pump.is_alive():
            os.close(saved)
        # Else a child process that outlives the block (multiprocessing's resource tracker, a local Ray node) still
        # holds the pipe: the filter (a daemon thread) goes on passing its lines to the saved stderr, kept open.
