"""Resumption of bulk jobs: `blip caption/capfilt --out` SIGKILLed at several points (chosen by watching the
output folder) leaves a consistent folder and no orphan worker process, and the same command started again
finishes with exactly the rows of an uninterrupted run; a finished run started again touches nothing; crashes
injected in-process at the N-th shard or manifest write resume to the same rows."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import blip_core.bulk.shards as shards_module
from blip_core.bulk import capfilt, caption_dataset, read_output
from blip_core.bulk.shards import LOCK, read_manifest
from blip_core.io.atomic import is_temp_name
from tests.helpers import bulk_data

pytestmark = pytest.mark.filterwarnings("ignore:no model given")

REPO = Path(__file__).resolve().parents[2]
SHARD, BATCH, RECORDS = 3, 2, 30
SHARDS = RECORDS // SHARD  # 10
GUARD_S = 300  # only against a hung child: the kill points are chosen by watching the folder, never by time
JOBS = {  # command -> (extra CLI flags, the same job through the Python API, expected counts)
    "caption": ([], caption_dataset, {"failed": 4, "records": 30}),
    "capfilt": (["--num-captions", "2"], lambda *a, **k: capfilt(*a, num_captions=2, **k), None),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path, expected = bulk_data.write_folder(tmp_path_factory.mktemp("bulk_resume"), "jsonl")
    assert len(expected) == RECORDS
    return path


@pytest.fixture(scope="module")
def references(folder, tmp_path_factory):
    """command -> (rows, manifest) of an uninterrupted run of the same job (in-process, inline preparation)."""
    found = {}
    for command, (_, call, counts) in JOBS.items():
        out = tmp_path_factory.mktemp(f"reference_{command}") / "out"
        summary = call(folder, out, batch_size=BATCH, shard_size=SHARD, workers=0)
        assert summary.processed == RECORDS and (counts is None or summary.counts == counts)
        found[command] = (read_output(out), read_manifest(out))
    return found


def _command(command: str, folder: Path, out: Path) -> list[str]:
    # --verbose: without it the CLI's stderr filter waits 10 s at exit on the worker pool's resource tracker
    # (it inherits the filter's pipe); see the report of issue 16's engine tests.
    flags = ["--out", str(out), "--shard-size", str(SHARD), "--batch-size", str(BATCH), "--workers", "1"]
    return [sys.executable, "-m", "blip_core.cli", command, str(folder), *flags, "--verbose", *JOBS[command][0]]


def _group(pgid: int) -> list[str]:
    """The live (not zombie) processes of a process group, as 'pid state cmdline'."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(f"{name} {fields[0]} {cmdline[:120]}")
    return found


def _listed(out: Path) -> dict | None:
    try:
        return json.loads((out / "manifest.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _kill_when(args: list[str], out: Path, ready) -> dict | None:
    """Start the command in its own session, SIGKILL it once `ready(manifest or None)`, check that no process
    of its group survives; the manifest seen when the kill was decided."""
    process = subprocess.Popen(
        args, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + GUARD_S
        while not ready(seen := _listed(out)):
            assert process.poll() is None, f"finished before the kill point: {process.stderr.read().decode()}"
            assert time.monotonic() < deadline, "the command hung"
            time.sleep(0.002)
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL
        survivors = _group(process.pid)
        for _ in range(200):  # the workers notice their parent's death and exit
            if not survivors:
                break
            time.sleep(0.05)
            survivors = _group(process.pid)
        assert not survivors, f"orphans of the killed run: {survivors}"
    finally:
        process.stderr.close()
        if _group(process.pid):
            os.killpg(process.pid, signal.SIGKILL)  # after the failure above: leave nothing running
    return seen


def _hidden(name: str) -> bool:
    """A temporary of a killed write, or the folder's lock file: names no reader globs."""
    return is_temp_name(name) or name == LOCK


def _check_consistent(out: Path, columns: int) -> list[int]:
    """A killed run's folder: the manifest parses and lists only complete shards; every other visible file is a
    complete shard not listed yet; the rest are hidden temporaries. The listed shard indices."""
    import pyarrow.parquet as pq

    if not out.exists() or not (out / "manifest.json").exists():
        assert not out.exists() or all(_hidden(name) for name in os.listdir(out)), os.listdir(out)
        return []
    manifest = read_manifest(out)
    assert manifest["complete"] is False
    listed = {entry["file"]: entry for entry in manifest["shards"]}
    for name in os.listdir(out):
        if name == "manifest.json" or _hidden(name):
            continue
        assert re.fullmatch(r"part-\d{5}\.parquet", name), f"unexpected file {name}"
        table = pq.read_table(out / name)  # complete, listed or not
        assert (table.num_rows, table.num_columns) == (SHARD, columns), name
        if name in listed:
            assert listed[name]["counts"]["records"] == SHARD
    assert all((out / name).is_file() for name in listed)
    return sorted(entry["index"] for entry in manifest["shards"])


def _finish(args: list[str]) -> tuple[int, dict, str]:
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=GUARD_S)
    return done.returncode, json.loads(done.stdout), done.stderr


@pytest.mark.parametrize("command", sorted(JOBS))
def test_killed_runs_resume_to_the_uninterrupted_rows(folder, references, tmp_path, command):
    rows, reference_manifest = references[command]
    columns = len(rows[0])
    out = tmp_path / "out"
    args = _command(command, folder, out)
    # (a) the manifest written, no shard yet; (b) one more shard listed; (c) most shards listed. Each run resumes
    # the folder the previous kill left.
    done: list[int] = []
    for least in (0, 1, 7):
        target = max(least, len(done) + 1) if least else 0
        seen = _kill_when(args, out, lambda m, n=target: m is not None and len(m["shards"]) >= n)
        before, done = done, _check_consistent(out, columns)
        assert done == list(range(len(done))) and len(done) >= len({e["index"] for e in seen["shards"]}) >= target
        assert len(done) < SHARDS and set(done) >= set(before)
    assert len(done) >= 7
    code, counts, _ = _finish(args)
    assert code == 1  # 4 broken images: rows with their reason
    final = read_output(out)
    assert final == rows
    assert sorted(row["key"] for row in final) == sorted({row["key"] for row in final}) and len(final) == RECORDS
    manifest = read_manifest(out)
    assert manifest["complete"] and manifest["job"] == reference_manifest["job"]
    assert counts == manifest["counts"] == reference_manifest["counts"]

    # (d) every shard written, `complete` not yet: the run started again only marks it complete.
    manifest["complete"] = False
    del manifest["counts"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    code, counts, stderr = _finish(args)
    assert (code, counts) == (1, reference_manifest["counts"]) and "already complete" in stderr
    assert read_output(out) == rows and read_manifest(out)["complete"]

    # A finished run started again does nothing: every file untouched.
    mtimes = {path.name: path.stat().st_mtime_ns for path in out.iterdir()}
    visible = sorted(name for name in mtimes if name != LOCK)
    assert visible == ["manifest.json"] + [f"part-{i:05d}.parquet" for i in range(SHARDS)]
    code, counts, stderr = _finish(args)
    assert (code, counts) == (1, reference_manifest["counts"]) and "already complete" in stderr
    assert {path.name: path.stat().st_mtime_ns for path in out.iterdir()} == mtimes


class _Crash(RuntimeError):
    pass


def _crash_at(monkeypatch, name: str, at: int) -> None:
    """`shards.<name>` raises at its `at`-th call (the calls before it run normally)."""
    real, calls = getattr(shards_module, name), []

    def crashing(*args, **kwargs):
        calls.append(1)
        if len(calls) == at:
            raise _Crash(f"injected at {name} call {at}")
        return real(*args, **kwargs)

    monkeypatch.setattr(shards_module, name, crashing)


# Manifest writes: 1 on opening, then 1 per shard (2 .. 11), then 1 when complete (12). Shard writes: 1 .. 10.
CRASHES = [("atomic_write_text", n) for n in (1, 2, 7, 11, 12)] + [("write_rows", n) for n in (1, 4, 10)]


@pytest.mark.parametrize(("function", "at"), CRASHES)
@pytest.mark.parametrize("command", sorted(JOBS))
def test_crash_at_the_nth_write_resumes_to_the_same_rows(
    folder, references, tmp_path, monkeypatch, command, function, at
):
    rows, _ = references[command]
    call = JOBS[command][1]
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        _crash_at(patch, function, at)
        with pytest.raises(_Crash):
            call(folder, out, batch_size=BATCH, shard_size=SHARD, workers=0)
    done = _check_consistent(out, len(rows[0]))
    listed = at - 2 if function == "atomic_write_text" else at - 1  # shards listed before the crash
    assert done == list(range(max(listed, 0)))
    summary = call(folder, out, batch_size=BATCH, shard_size=SHARD, workers=0)
    assert summary.processed == RECORDS - SHARD * len(done)
    assert read_output(out) == rows and read_manifest(out)["complete"]
