"""The output folder of a bulk job: shards written atomically, a manifest, and what a resumed run skips.

    OUT/manifest.json        the job, the input's fingerprint, the shards done (with their counts), complete or not
    OUT/part-00000.parquet   the rows of input records 0 .. shard_size-1, in input order (or .jsonl)
    OUT/part-00001.parquet   ...

Every input record is one row of exactly one shard: its outputs, or its `error` (an unreadable image). A shard file
is written under a temporary name and renamed into place, then the manifest is rewritten the same way to list it:
a run killed at any moment (SIGKILL included) leaves a manifest that lists only complete shards, and the same
command started again redoes only the shards it does not list. A finished output started again does nothing.
Temporaries of killed runs (`.part-....blip-tmp-<pid>-...`) are hidden names no reader globs; the next run
removes them.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from blip_core.bulk.records import require
from blip_core.io.atomic import atomic_path, atomic_write_text, is_temp_name, remove_stale_temps

MANIFEST = "manifest.json"
LOCK = ".blip-bulk.lock"  # held (flock) by the run writing the folder
MANIFEST_VERSION = 1
FORMATS = ("parquet", "jsonl")


class OutputExistsError(FileExistsError):
    """The output folder holds something this run may not continue or replace without being asked."""


def arrow_schema(columns: Sequence[tuple[str, str]]) -> Any:
    """The pyarrow schema of a job's columns ("string", "float32", "bool", "list<...>")."""
    pa = require("pyarrow")
    kinds = {"string": pa.string(), "float32": pa.float32(), "bool": pa.bool_()}

    def kind(name: str) -> Any:
        return pa.list_(kinds[name[5:-1]]) if name.startswith("list<") else kinds[name]

    return pa.schema([(name, kind(type_name)) for name, type_name in columns])


def source_identity(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """The input's identity as the manifest keeps it: kind, options, the number of files and a SHA-256 of the
    whole listing (sizes and modification times included), so a manifest stays small for millions of files."""
    import hashlib

    files = fingerprint.get("files", [])
    listing = json.dumps(files, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return {
        "kind": fingerprint.get("kind"),
        "options": fingerprint.get("options", {}),
        "files": len(files),
        "sha256": hashlib.sha256(listing).hexdigest(),
    }


def shard_name(index: int, output_format: str) -> str:
    return f"part-{index:05d}.{output_format}"


def _add_counts(total: dict[str, int], counts: dict[str, int]) -> dict[str, int]:
    return {name: total.get(name, 0) + counts.get(name, 0) for name in {*total, *counts}}


class OutputFolder:
    """A job's output folder: opened (checked against the job, or created), then shards, then `finish`."""

    def __init__(self, path: str | Path, job: Any, source: Any, output_format: str, shard_size: int) -> None:
        if output_format not in FORMATS:
            raise ValueError(f"output format must be one of {FORMATS}, got {output_format!r}")
        if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
            raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}")
        if output_format == "parquet":
            require("pyarrow")
        self.path, self.job, self.format, self.shard_size = Path(path), job, output_format, shard_size
        self.header = {
            "blip_bulk": MANIFEST_VERSION,
            "job": job.identity(),
            "format": output_format,
            "shard_size": shard_size,
            "source": source_identity(source.fingerprint()),
        }
        self.shards: dict[int, dict[str, Any]] = {}
        self.complete = False

    # Opening: a new folder, a resumable one, or a refusal.
    def open(self, overwrite: bool = False) -> None:
        """Create the folder, or resume the same job in it, holding its lock until `close`. Raises
        OutputExistsError for a folder in use by another run, or holding anything else."""
        if self.path.exists() and not self.path.is_dir():
            raise OutputExistsError(f"{self.path} exists and is not a folder")
        if not overwrite:
            refuse_foreign(self.path)  # before the lock file: nothing is added to a folder that is not ours
        self.created = not self.path.exists()
        self.lock()
        try:
            self._open(overwrite)
        except BaseException:
            self.close()
            raise

    def lock(self) -> None:
        """Take the folder's lock (`flock`, released by the OS when a run dies, SIGKILL included): two runs into
        one folder would mix their shards. No lock where the OS has no `fcntl` (Windows)."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock_fd = None
        try:
            import fcntl
        except ImportError:
            return
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            message = f"{self.path} is in use by another run: wait for it, or choose another folder"
            raise OutputExistsError(message) from None
        self._lock_fd = fd

    def close(self) -> None:
        """Release the lock; a folder this run created and wrote no shard to is removed (nothing to resume)."""
        if getattr(self, "created", False) and not self.shards and not self.complete:
            for name in (MANIFEST, LOCK):
                (self.path / name).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.path.rmdir()  # only if nothing else is there
        if getattr(self, "_lock_fd", None) is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _open(self, overwrite: bool) -> None:
        manifest = self.path / MANIFEST
        if overwrite:
            self._clear()
        elif manifest.is_file():
            self._resume(read_manifest(self.path))
        self.path.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.path)
        if not manifest.is_file() or not (self.shards or self.complete):
            self._write_manifest()

    def _resume(self, manifest: dict[str, Any]) -> None:
        if not manifest.get("shards") and not manifest.get("complete"):
            return  # no shard written (e.g. a model failed to load): nothing to keep, any job may start here
        if manifest.get("engine", "local") != "local":
            raise OutputExistsError(
                f"{self.path} holds the output of a Ray run (--engine ray, engine='ray'): run that again, choose "
                "another folder, or pass --overwrite (overwrite=True) to replace it"
            )
        different = [name for name in ("job", "format", "shard_size") if manifest.get(name) != self.header[name]]
        if different:
            details = differences(manifest.get("job", {}), self.header["job"]) if different == ["job"] else different
            raise OutputExistsError(
                f"{self.path} holds the output of a different job (differs in {', '.join(details)}): "
                "choose another folder, or pass --overwrite (overwrite=True) to replace it"
            )
        if manifest.get("source") != self.header["source"]:
            raise OutputExistsError(
                f"the input changed since {self.path} was started (files added, removed or modified): "
                "pass --overwrite (overwrite=True) to start again"
            )
        self.shards = {int(entry["index"]): entry for entry in manifest.get("shards", [])}
        self.complete = bool(manifest.get("complete"))

    def _clear(self) -> None:
        """--overwrite: the manifest first (a half-cleared folder is never taken for a resumable one), then shards."""
        if not self.path.is_dir():
            return
        (self.path / MANIFEST).unlink(missing_ok=True)
        for path in self.path.iterdir():
            if path.is_file() and path.name.startswith("part-") and path.suffix[1:] in FORMATS:
                path.unlink()

    # Writing.
    @property
    def done(self) -> set[int]:
        return set(self.shards)

    def write_shard(self, index: int, rows: list[dict[str, Any]], counts: dict[str, int]) -> None:
        """Shard `index` (its rows in input order), then the manifest that lists it."""
        name = shard_name(index, self.format)
        with atomic_path(self.path / name) as tmp:
            write_rows(tmp, rows, self.job.columns, self.format)
        self.shards[index] = {"index": index, "file": name, "counts": counts}
        self._write_manifest()

    def finish(self) -> dict[str, int]:
        """Mark the output complete; the summed counts of every shard."""
        self.complete = True
        self._write_manifest()
        return self.counts()

    def counts(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for entry in self.shards.values():
            total = _add_counts(total, entry["counts"])
        return dict(sorted(total.items()))

    def _write_manifest(self) -> None:
        shards = [self.shards[index] for index in sorted(self.shards)]
        manifest = {**self.header, "engine": "local", "shards": shards, "complete": self.complete}
        if self.complete:
            manifest["counts"] = self.counts()
        atomic_write_text(self.path / MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")


def refuse_foreign(path: Path) -> None:
    """OutputExistsError when `path` is a folder holding files but no bulk-job manifest."""
    if path.is_dir() and not (path / MANIFEST).is_file():
        if any(not is_temp_name(p.name) and p.name != LOCK for p in path.iterdir()):
            raise OutputExistsError(
                f"{path} is not empty and holds no bulk-job manifest: choose an empty or new folder, "
                "or pass --overwrite (overwrite=True) to write into it"
            )


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """`name: old -> new` for each differing field of two job identities."""

    def short(value: Any) -> str:
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 60 else text[:57] + "..."

    names = [name for name in sorted({*old, *new}) if old.get(name) != new.get(name)]
    return [f"{name}: {short(old.get(name))} -> {short(new.get(name))}" for name in names] or ["job"]


def write_rows(path: Path, rows: list[dict[str, Any]], columns: Sequence[tuple[str, str]], output_format: str) -> None:
    """Rows as one Parquet file (the job's schema) or JSON lines (keys in column order)."""
    names = [name for name, _ in columns]
    if output_format == "jsonl":
        with open(path, "w", encoding="utf-8") as stream:
            for row in rows:
                stream.write(json.dumps({name: row.get(name) for name in names}, ensure_ascii=False) + "\n")
        return
    pa, pq = require("pyarrow"), require("pyarrow.parquet")
    table = pa.Table.from_pylist([{name: row.get(name) for name in names} for row in rows], arrow_schema(columns))
    pq.write_table(table, path)


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of an output folder. Raises FileNotFoundError (no manifest) or ValueError (not JSON)."""
    manifest = Path(path) / MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(f"{path} holds no {MANIFEST}: not the output of a bulk job")
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{manifest} is not a bulk-job manifest: {err}") from None
    if not isinstance(data, dict) or data.get("blip_bulk") != MANIFEST_VERSION:
        raise ValueError(f"{manifest} is not a version-{MANIFEST_VERSION} bulk-job manifest")
    return data


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Every row of an output folder's listed shards (input order for the local engine), as dicts."""
    manifest = read_manifest(path)
    rows: list[dict[str, Any]] = []
    for entry in manifest["shards"]:
        file = Path(path) / entry["file"]
        if file.suffix == ".jsonl":
            with open(file, encoding="utf-8") as stream:
                rows += [json.loads(line) for line in stream if line.strip()]
        else:
            rows += require("pyarrow.parquet").read_table(file).to_pylist()
    return rows
