"""The same bulk job on Ray Data, for a cluster: read, preprocess on CPUs, models in an actor pool, Parquet out.

    source.ray_dataset()                       read_parquet / read_webdataset / read_binary_files
      .repartition(target_num_rows_per_block)  blocks of one batch, so every actor gets work
      .map_batches(prepare_batch)              decode + resize on CPU tasks (one stage)
      .map_batches(ModelStage, compute=pool)   the job's models, loaded once per actor (num_gpus per actor)
      .write_parquet(OUT)                      part-ray-*.parquet, then OUT/manifest.json

Every record's row equals the local engine's: keys, captions (sampling is keyed by the record), errors and keep
decisions exactly; the scores to float32 rounding, since Ray forms its own batches (see `jobs`). Rows are not in
input order (compare by key). A Ray run is not resumable: Ray retries failed tasks itself, and a run
that did not finish leaves no complete manifest, so the same command refuses to reuse OUT without --overwrite.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from blip_core.bulk.engine import DuplicateKeyError
from blip_core.bulk.jobs import error_row
from blip_core.bulk.prepare import Prepared, Preparer
from blip_core.bulk.records import BulkSummary, Record, require
from blip_core.bulk.shards import (
    LOCK,
    MANIFEST,
    MANIFEST_VERSION,
    OutputExistsError,
    OutputFolder,
    arrow_schema,
    differences,
    read_manifest,
    refuse_foreign,
)
from blip_core.io.atomic import atomic_write_text, is_temp_name

PREPARE_MEMORY = 512 * 2**20  # bytes a preprocessing task may use: large decoded images and a batch of pixels


def prepare_batch(batch: Any, preparer: Preparer) -> Any:
    """The CPU stage on an Arrow batch: rows (key, image, path, text) -> key, text, error (strings, nulls kept)
    and one tensor column `pixels_<i>` per processor (zeros for a record that failed, whose `error` says why)."""
    pa = require("pyarrow")
    from ray.data.extensions import ArrowTensorArray

    columns = [batch.column(name).to_pylist() for name in ("key", "image", "path", "text")]
    records = [Record(str(key), image, path, text) for key, image, path, text in zip(*columns, strict=True)]
    prepared = preparer(records)
    out = {
        "key": pa.array([p.key for p in prepared], pa.string()),
        "text": pa.array([p.text for p in prepared], pa.string()),
        "error": pa.array([p.error for p in prepared], pa.string()),
    }
    for index, processor in enumerate(preparer.image_processors):
        shape = next((p.pixels[index].shape for p in prepared if p.pixels), None) or _processor_shape(processor)
        pixels = [p.pixels[index] if p.pixels else np.zeros(shape, np.float32) for p in prepared]
        out[f"pixels_{index}"] = ArrowTensorArray.from_numpy(np.stack(pixels))
    return pa.table(out)


def _processor_shape(processor: Any) -> tuple[int, int, int]:
    size = processor.to_dict().get("size", {})
    return (3, int(size.get("height", 384)), int(size.get("width", 384)))


class ModelStage:
    """A Ray actor running the job's models (loaded once, in `__init__`) on batches of prepared rows."""

    def __init__(self, job: Any, threads: int = 1) -> None:
        if job.runtime.framework == "pt":
            import torch

            torch.set_num_threads(max(1, threads))
        self.job, self.runner = job, job.runner()
        self.schema = arrow_schema(job.columns)

    def __call__(self, batch: Any) -> Any:
        pixel_names = sorted(name for name in batch.column_names if name.startswith("pixels_"))
        pixels = [batch.column(name).combine_chunks().to_numpy() for name in pixel_names]
        keys, texts, errors = (batch.column(name).to_pylist() for name in ("key", "text", "error"))
        rows: list[dict[str, Any] | None] = []
        good: list[tuple[int, Prepared]] = []
        for row, (key, text, error) in enumerate(zip(keys, texts, errors, strict=True)):
            item = Prepared(key, text)
            if error is not None:
                item.error = error
                rows.append(error_row(self.job, item))
                continue
            item.pixels = tuple(np.asarray(column[row], np.float32) for column in pixels)
            good.append((row, item))
            rows.append(None)
        size = self.job.batch_size
        for start in range(0, len(good), size):
            part = good[start : start + size]
            for (row, _), result in zip(part, self.runner.run([item for _, item in part]), strict=True):
                rows[row] = result
        pa = require("pyarrow")
        names = [name for name, _ in self.job.columns]
        return pa.Table.from_pylist([{name: row.get(name) for name in names} for row in rows], self.schema)


def _filenames() -> Any:
    from ray.data.datasource import FilenameProvider

    class Names(FilenameProvider):
        def get_filename_for_block(self, block: Any, write_uuid: str, task_index: int, block_index: int) -> str:
            return f"part-ray-{write_uuid}-{task_index:06d}-{block_index:06d}.parquet"

        def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
            return f"part-ray-{write_uuid}-{task_index:06d}.parquet"

    return Names(file_format="parquet")


def _actors(ray: Any, actors: int | None, num_gpus: float | None, actor_cpus: float) -> int:
    """The model actors: as asked, else one per `num_gpus` GPUs, else as many as leave one CPU for reading and
    preprocessing. Raises ValueError when the actors would hold every CPU: the read and preprocessing tasks
    would then wait forever (Ray Data stalls without an error)."""
    resources = ray.cluster_resources()
    cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
    if actors is None:
        actors = int(gpus // num_gpus) if num_gpus and gpus else int((cpus - 1) // actor_cpus)
        actors = max(1, actors)
    elif isinstance(actors, bool) or not isinstance(actors, int) or actors < 1:
        raise ValueError(f"ray_actors must be a positive integer, got {actors!r}")
    if actors * actor_cpus > cpus - 1:
        raise ValueError(
            f"{actors} model actors of {actor_cpus:g} CPUs leave no CPU for reading and preprocessing on this Ray "
            f"cluster ({cpus:g} CPUs): use fewer actors (--actors) or fewer CPUs per actor (--actor-cpus)"
        )
    return actors


def run_ray(
    job: Any,
    source: Any,
    out_dir: Path,
    *,
    overwrite: bool = False,
    ray_address: str | None = None,
    ray_actors: int | None = None,
    num_gpus: float | None = None,
    actor_cpus: float = 1.0,
    workers: int | None = None,
    progress: bool = False,
) -> Any:
    """Run `job` over `source` on Ray Data into `out_dir` (Parquet); a BulkSummary.

    Joins `ray_address` ("auto": the running cluster) or the session already started in this process, else
    starts a local Ray (and stops it after). Raises OutputExistsError for an `out_dir` in use, MissingExtraError
    when ray is not installed.
    """
    ray = require("ray")
    folder = OutputFolder(out_dir, job, source, "parquet", 1)
    if not overwrite:
        refuse_foreign(Path(out_dir))  # before the lock file: nothing is added to a folder that is not ours
    folder.created = not Path(out_dir).exists()
    folder.lock()
    try:
        previous = _check_folder(folder, overwrite)
        if previous is not None:
            return BulkSummary(previous, 0, str(out_dir), engine="ray")
        options = {"actors": ray_actors, "num_gpus": num_gpus, "actor_cpus": actor_cpus, "workers": workers}
        _pipeline(ray, job, source, Path(out_dir), ray_address, progress, options)
        counts = _finish(folder, job)
        folder.complete = True
    finally:
        folder.close()
    return BulkSummary(counts, counts.get("records", 0), str(out_dir), engine="ray")


def _pipeline(ray: Any, job: Any, source: Any, out_dir: Path, address: Any, progress: bool, options: dict) -> None:
    """Read, prepare, run the models and write Parquet on Ray (joining `address`, this process's session, or a local
    Ray started for the run)."""
    ray_actors, num_gpus = options["actors"], options["num_gpus"]
    actor_cpus, workers = options["actor_cpus"], options["workers"]
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, ignore_reinit_error=True, logging_level=logging.WARNING)
    try:
        data = require("ray.data")
        data.DataContext.get_current().enable_progress_bars = bool(progress)
        if not progress:  # Ray Data's own INFO lines (plans, operator progress) only with progress asked for
            logging.getLogger("ray.data").setLevel(logging.WARNING)
        processors, _ = job.image_processors()
        # Blocks of one batch (streaming, no shuffle): a single Parquet file or tar shard is one block as read, and
        # would feed one actor only.
        dataset = source.ray_dataset().repartition(target_num_rows_per_block=job.batch_size)
        dataset = dataset.map_batches(
            prepare_batch,
            fn_kwargs={"preparer": Preparer(processors)},
            batch_size=job.batch_size,
            batch_format="pyarrow",
            compute=data.TaskPoolStrategy(size=workers) if workers else None,
            # Each task reserves the memory it decodes in; also a stage of its own this way: Ray fuses stages of
            # equal resources, which would decode inside the model actors, without overlap with the model.
            memory=PREPARE_MEMORY,
        )
        dataset = dataset.map_batches(
            ModelStage,
            fn_constructor_kwargs={"job": job, "threads": max(1, int(actor_cpus))},
            batch_size=job.batch_size,
            batch_format="pyarrow",
            compute=data.ActorPoolStrategy(size=_actors(ray, ray_actors, num_gpus, actor_cpus)),
            num_gpus=num_gpus or 0,
            num_cpus=actor_cpus,
        )
        dataset.write_parquet(str(out_dir), filename_provider=_filenames())
    finally:
        if started:
            ray.shutdown()


def _check_folder(folder: OutputFolder, overwrite: bool) -> dict[str, int] | None:
    """The counts of a complete output of this same job (nothing to do), None to run; refuses anything else,
    naming what differs."""
    path = folder.path
    if overwrite:
        folder._clear()
        return None
    if not any(not is_temp_name(p.name) and p.name != LOCK for p in path.iterdir()):
        return None
    manifest = path / MANIFEST
    if not manifest.is_file():
        raise OutputExistsError(
            f"{path} is not empty and holds no bulk-job manifest (or a Ray run that did not finish: a Ray run does not "
            "resume): choose an empty or new folder, or pass --overwrite (overwrite=True)"
        )
    data = read_manifest(path)
    if data.get("engine") != "ray":
        reason = "the output of a local run (resume it without --engine ray)"
    elif not data.get("complete"):
        reason = "a Ray run that did not finish (a Ray run does not resume)"
    elif data.get("job") != folder.header["job"]:
        changed = ", ".join(differences(data["job"], folder.header["job"]))
        reason = f"the output of a different job (differs in {changed})"
    elif data.get("source") != folder.header["source"]:
        reason = "the output of an earlier input (files added, removed or modified since)"
    else:
        return data.get("counts", {})
    raise OutputExistsError(f"{path} holds {reason}: choose another folder, or pass --overwrite (overwrite=True)")


def _finish(folder: OutputFolder, job: Any) -> dict[str, int]:
    """Write the manifest of a finished Ray run: its files and the counts read back from them."""
    pq = require("pyarrow.parquet")
    files = sorted(p.name for p in folder.path.glob("part-ray-*.parquet"))
    rows = [row for name in files for row in pq.read_table(folder.path / name).to_pylist()]
    keys: dict[str, int] = {}
    for row in rows:  # the local engine checks keys as it reads; Ray reads in parallel, so they are checked here
        keys[row["key"]] = keys.get(row["key"], 0) + 1
    repeated = sorted(key for key, count in keys.items() if count > 1)
    if repeated:
        raise DuplicateKeyError(
            f"{len(repeated)} keys occur more than once in the input, e.g. {repeated[0]!r}: keys must be unique (for "
            f"Parquet, name a unique column with --key-column); {folder.path} is left without a complete manifest"
        )
    counts = dict(sorted(job.counts(rows).items()))
    header = {**folder.header, "shard_size": None}
    shards = [{"index": i, "file": name} for i, name in enumerate(files)]
    manifest = {**header, "blip_bulk": MANIFEST_VERSION, "engine": "ray", "shards": shards, "complete": True}
    atomic_write_text(folder.path / MANIFEST, json.dumps({**manifest, "counts": counts}, indent=1) + "\n")
    return counts
