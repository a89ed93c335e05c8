"""The local streaming engine: records read in order, decoded and preprocessed in worker processes while the
model runs, batched, and written in shards that a killed run resumes.

    source --(chunks of batch_size records)--> worker processes (decode, resize)  --(Prepared, in order)-->
    model batches of exactly batch_size (the last one padded) --> rows --> shard buffers --> OutputFolder

Records keep their input index: record n belongs to shard n // shard_size, at position n % shard_size, so the
shards of a resumed run hold exactly what an uninterrupted run's hold. A bounded number of chunks is in flight, so
memory stays flat however large the input. A record whose image cannot be used becomes an error row, never a
stopped run; a duplicate key stops the run (keys are how outputs resume and compare), naming both records.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from blip_core.bulk.jobs import error_row
from blip_core.bulk.prepare import Prepared, Preparer
from blip_core.bulk.records import Record, Source

DEFAULT_WORKERS = min(4, os.cpu_count() or 1)


class DuplicateKeyError(ValueError):
    """Two records of one input share a key."""


def numbered(source: Iterable[Record], skip_shards: set[int], shard_size: int) -> Iterator[tuple[int, Record]]:
    """(input index, record) of every record outside the shards to skip; every key is checked to be unique."""
    seen: dict[str, int] = {}
    for index, record in enumerate(source):
        if not isinstance(record.key, str) or not record.key:
            raise ValueError(f"record {index} of the input has no key (got {record.key!r})")
        if record.key in seen:
            raise DuplicateKeyError(
                f"records {seen[record.key]} and {index} of the input share the key {record.key!r}: keys must be "
                "unique (for Parquet, name a unique column with --key-column)"
            )
        seen[record.key] = index
        if index // shard_size not in skip_shards:
            yield index, record


def chunks(records: Iterator[tuple[int, Record]], size: int) -> Iterator[list[tuple[int, Record]]]:
    chunk: list[tuple[int, Record]] = []
    for entry in records:
        chunk.append(entry)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class _Inline:
    """An executor that prepares in this process (`workers=0`)."""

    def submit(self, function: Any, *args: Any) -> Future:
        future: Future = Future()
        future.set_result(function(*args))
        return future

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


def _exit_with_parent() -> None:
    """Worker initializer: a thread that ends this worker when the engine's process dies (SIGKILL included);
    a pool worker otherwise waits for work forever, an orphan holding its memory."""
    import signal
    import threading
    from multiprocessing.connection import wait

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the engine stops its workers
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="blip-parent-watch", daemon=True).start()


def _executor(workers: int) -> Any:
    if workers == 0:
        return _Inline()
    # spawn: fresh interpreters without the parent's torch/TensorFlow threads (fork would copy their locks).
    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_exit_with_parent)


class _Shards:
    """Rows gathered per shard until every record of the shard has one, then written."""

    def __init__(self, output: Any, job: Any, shard_size: int) -> None:
        self.output, self.job, self.shard_size = output, job, shard_size
        self.rows: dict[int, dict[int, dict[str, Any]]] = {}
        self.sizes: dict[int, int] = {}
        self.written = 0  # shards written by this run

    def expect(self, index: int) -> None:
        """Record `index` was read: the shards before its own are full-sized."""
        shard = index // self.shard_size
        self.rows.setdefault(shard, {})
        for earlier in [s for s in self.rows if s < shard and s not in self.sizes]:
            self.sizes[earlier] = self.shard_size
            self._flush(earlier)

    def end(self, last_index: int | None) -> None:
        """The input ended after record `last_index`: the last shard's size is known."""
        for shard in list(self.rows):
            self.sizes.setdefault(shard, self.shard_size)
        if last_index is not None:
            self.sizes[last_index // self.shard_size] = last_index % self.shard_size + 1
        for shard in list(self.rows):
            self._flush(shard)

    def add(self, index: int, row: dict[str, Any]) -> None:
        shard = index // self.shard_size
        self.rows[shard][index % self.shard_size] = row
        self._flush(shard)

    def _flush(self, shard: int) -> None:
        rows = self.rows.get(shard)
        if rows is None or shard not in self.sizes or len(rows) < self.sizes[shard]:
            return
        ordered = [rows[slot] for slot in sorted(rows)]
        self.output.write_shard(shard, ordered, self.job.counts(ordered))
        self.written += 1
        del self.rows[shard]


def run_local(
    job: Any,
    source: Source,
    output: Any,
    *,
    workers: int = DEFAULT_WORKERS,
    progress: bool = False,
    runner: Any = None,
) -> int:
    """Run `job` over `source` into `output` (an opened OutputFolder or MemoryOutput); the records processed.
    `runner`: the job's models already loaded (`job.runner()`), to run several inputs without loading again.

    Raises:
        DuplicateKeyError: two records share a key. RuntimeError: a worker process died (the output stays
        consistent: run again to resume). Whatever loading the models raises.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be a non-negative integer, got {workers!r}")
    shard_size, batch_size = output.shard_size, job.batch_size
    preparer = Preparer(job.image_processors()[0])
    loaded = [runner]  # the models load when the first batch is due: worker start-up overlaps their loading
    shards = _Shards(output, job, shard_size)
    bar = _bar(source, output, shard_size, progress, job.kind)
    pending: list[tuple[int, Prepared]] = []
    processed, last = 0, None

    def run_batch() -> None:
        if loaded[0] is None:
            loaded[0] = job.runner()
        rows = loaded[0].run([item for _, item in pending])
        for (index, _), row in zip(pending, rows, strict=True):
            shards.add(index, row)
        bar.update(len(pending))
        pending.clear()

    def take(indices: list[int], prepared: list[Prepared]) -> None:
        for index, item in zip(indices, prepared, strict=True):
            if item.error is not None:
                shards.add(index, error_row(job, item))
                bar.update(1)
                continue
            if pending and pending[0][0] // shard_size != index // shard_size:
                # batches never span two shards: a resumed run redoes a shard in exactly the batches (and batch
                # positions) of an uninterrupted run; GEMM kernels may round a row differently by its position
                run_batch()
            pending.append((index, item))
            if len(pending) == batch_size:
                run_batch()

    in_flight: deque[tuple[list[int], Future]] = deque()
    try:
        with _executor(workers) as executor:
            for chunk in chunks(numbered(source, output.done, shard_size), batch_size):
                indices = [index for index, _ in chunk]
                for index in indices:
                    shards.expect(index)
                last, processed = indices[-1], processed + len(indices)
                in_flight.append((indices, executor.submit(preparer, [record for _, record in chunk])))
                if len(in_flight) > 2 * max(workers, 1):
                    take(in_flight[0][0], in_flight.popleft()[1].result())
            while in_flight:
                take(in_flight[0][0], in_flight.popleft()[1].result())
    except BrokenProcessPool as err:
        if processed and not shards.written:
            raise RuntimeError(
                f"the preprocessing worker processes could not start ({err}). In a script, call bulk jobs under "
                "`if __name__ == '__main__':` (worker processes import the script), or pass workers=0"
            ) from None
        raise RuntimeError(
            f"a preprocessing worker process died ({err}); run the same command again to resume"
        ) from None
    if pending:
        run_batch()
    shards.end(last)
    bar.close()
    return processed


def _bar(source: Source, output: Any, shard_size: int, enabled: bool, kind: str) -> Any:
    """A tqdm bar (images/s and the time left) on stderr, starting at the records of shards already done."""
    from tqdm.auto import tqdm

    total = source.count() if enabled else None  # a tar input's count reads every shard's headers
    done = sum(entry["counts"]["records"] for entry in getattr(output, "shards", {}).values())
    return tqdm(total=total, initial=done, unit="img", desc=kind, disable=not enabled, file=sys.stderr)
