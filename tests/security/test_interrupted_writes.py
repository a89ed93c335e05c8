"""Interrupted writes: every `blip-convert` subcommand and `save_pretrained` (both frameworks), failing with a full
disk (OSError ENOSPC at the k-th write operation) or killed (SIGKILL at the k-th write operation, in a subprocess),
leave the destination absent or complete (never a `config.json` beside missing, truncated or mixed weights), the
source byte-identical, and no temporary file after an error; after a kill the temporaries have names no loader
reads and a rerun succeeds and removes them.

Write operations counted (and failed): `write()` on files opened by `blip_core.io.atomic`, `torch.save`, h5py
`create_dataset`, `os.replace`, `os.fsync`, `os.mkdir`, file creation through `os.open` and `shutil.copyfile`.
A failing `write()` or `torch.save` first writes half of its bytes, as a disk filling up does.

Run as a script (`python -m tests.security.test_interrupted_writes K JOB_JSON`) it is the subprocess that kills
itself at the K-th write operation.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
CAPTION = "BlipForConditionalGeneration"
KERAS_FILE = "model.weights.h5"
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# -- fault injection -------------------------------------------------------------------------------------------


class Faults:
    """Counts write operations; the `at`-th one fails (ENOSPC) or kills this process (SIGKILL)."""

    def __init__(self, at: int, kill: bool = False) -> None:
        self.at, self.kill, self.calls = at, kill, 0

    @property
    def fired(self) -> bool:
        return self.calls >= self.at

    def hit(self, partial: Callable[[], Any] | None = None) -> None:
        self.calls += 1
        if self.calls != self.at:
            return
        if partial is not None:
            partial()
        if self.kill:
            os.kill(os.getpid(), signal.SIGKILL)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _FaultyFile(io.RawIOBase):
    """A binary file whose `write` counts as a write operation (half written when it fails)."""

    def __init__(self, stream: Any, faults: Faults) -> None:
        self.stream, self.faults = stream, faults

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.faults.hit(lambda: (self.stream.write(view[: len(view) // 2]), self.stream.flush()))
        return self.stream.write(view)

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.stream.fileno()

    def flush(self) -> None:
        if not self.stream.closed:
            self.stream.flush()

    def close(self) -> None:
        self.stream.close()
        super().close()


def install(faults: Faults, patch: Callable[[Any, str, Any], None]) -> None:
    """Route every write operation through `faults` (`patch` is `setattr` or `monkeypatch.setattr`)."""
    import blip_core.io.atomic

    def counted(function: Callable[..., Any], when: Callable[..., bool] = lambda *a, **k: True) -> Callable:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if when(*args, **kwargs):
                faults.hit()
            return function(*args, **kwargs)

        return wrapper

    real_open = open
    def faulty_open(path, mode="r", *a, **k):
        return _FaultyFile(real_open(path, mode, *a, **k), faults)

    patch(blip_core.io.atomic, "open", faulty_open)
    for name in ("replace", "fsync"):
        patch(os, name, counted(getattr(os, name)))
    patch(os, "mkdir", counted(os.mkdir, lambda path, *a, **k: not os.path.exists(path)))
    patch(os, "open", counted(os.open, lambda path, flags, *a, **k: bool(flags & os.O_CREAT)))
    patch(shutil, "copyfile", counted(shutil.copyfile))
    import h5py

    patch(h5py.Group, "create_dataset", counted(h5py.Group.create_dataset))
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        real_save = torch.save

        def save(obj: Any, target: Any, *args: Any, **kwargs: Any) -> None:
            def half() -> None:
                real_save(obj, target, *args, **kwargs)
                os.truncate(target, os.path.getsize(target) // 2)

            faults.hit(half)
            real_save(obj, target, *args, **kwargs)

        patch(torch, "save", save)


# -- jobs (run in-process, or in the killed subprocess) ---------------------------------------------------------


def run_job(job: dict, faults: Faults | None = None, patch: Callable[[Any, str, Any], None] = setattr) -> int:
    """A `blip-convert` command line (its exit code) or a `save_pretrained` (0); faults count only the writes."""
    if "cli" in job:
        from blip_conversion.cli import main

        if job["cli"][0] == "to-bin" or job["cli"][0] == "to-keras":
            import torch  # noqa: F401  (so that torch.save is counted)
        if faults is not None:
            install(faults, patch)
        return main(job["cli"])
    save = job["save"]
    if save["framework"] == "pt":
        import torch  # noqa: F401

        import blip_torch

        model = getattr(blip_torch, save["class"]).from_pretrained(save["source"])
    else:
        import blip_tf

        model = getattr(blip_tf, "TF" + save["class"]).from_pretrained(save["source"])
    if faults is not None:
        install(faults, patch)
    model.save_pretrained(save["dest"], **save.get("kwargs", {}))
    return 0


def setter(patch: pytest.MonkeyPatch) -> Callable[[Any, str, Any], None]:
    return lambda owner, name, value: patch.setattr(owner, name, value, raising=False)


def count_writes(job: dict, monkeypatch: pytest.MonkeyPatch) -> int:
    """How many write operations `job` makes (run once, nothing failing)."""
    faults = Faults(at=10**9)
    with monkeypatch.context() as patch:
        assert run_job(job, faults, setter(patch)) == 0
    return faults.calls


def points(total: int, every: bool) -> list[int]:
    """Which write operations to fail: all, or the first, some in the middle and the last few."""
    if every:
        return list(range(1, total + 1))
    return sorted({k for k in (1, 2, 3, total // 3, total // 2, 2 * total // 3, total - 2, total - 1, total) if k >= 1})


def kill_at(at: int, job: dict) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "tests.security.test_interrupted_writes", str(at), json.dumps(job)]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


# -- what a folder holds ----------------------------------------------------------------------------------------


def is_hidden(path: Path, base: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(base).parts)


def snapshot(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every file a loader could read (hidden temporaries left out)."""
    if not folder.exists():
        return {}
    return {  # Keras writes model.weights.h5 differently each time: its tensors are compared by `weights_of`
        str(path.relative_to(folder)): "keras"
        if path.name == KERAS_FILE
        else hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not is_hidden(path, folder)
    }


def temporaries(base: Path) -> list[Path]:
    return sorted(path for path in base.rglob("*") if path.name.startswith("."))


def weights_of(folder: Path) -> dict[str, np.ndarray]:
    """The canonical tensors `from_pretrained` would load (config.json and weights validated)."""
    from blip_conversion.convert import read_checkpoint

    return read_checkpoint(folder).tensors


def same_weights(first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> bool:
    return sorted(first) == sorted(second) and all(np.array_equal(first[name], second[name]) for name in first)


def assert_absent_or_complete(folder: Path, allowed: list[dict[str, str]], weights: list[dict]) -> None:
    """No config.json (nothing loads it), or exactly one of the `allowed` folders (old or new) and its weights."""
    if not (folder / "config.json").exists():
        return
    now = snapshot(folder)
    assert any(now == state for state in allowed), f"partial folder: {sorted(now)}"
    loaded = weights_of(folder)
    assert any(same_weights(loaded, expected) for expected in weights), "weights of neither the old nor the new save"


# -- the cases ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sources(tmp_path_factory, tiny_checkpoints) -> dict[str, Path]:
    """Source checkpoints: tiny caption models (seeds 0 and 1) in several formats, and an original .pth."""
    from blip_conversion.convert import to_bin, to_h5
    from tests.helpers.checkpoints import write_tiny_checkpoint
    from tests.helpers.original import original_state, save_original
    from tests.helpers.tiny import seeded_weights, tiny_config

    root = tmp_path_factory.mktemp("interrupt_sources")
    folders = {"safetensors": tiny_checkpoints[CAPTION], "other": write_tiny_checkpoint(CAPTION, root / "seed1", 1)}
    folders["bin"] = to_bin(str(folders["safetensors"]), str(root / "bin"))
    folders["h5"] = to_h5(str(folders["safetensors"]), str(root / "h5"))
    config = tiny_config(text_config={"hidden_size": 24})
    config.save_pretrained(root / "vqa_config")
    save_original(root / "vqa.pth", original_state(seeded_weights("BlipForQuestionAnswering", config, seed=2)))
    folders["pth"] = root / "vqa.pth"
    folders["pth_config"] = root / "vqa_config" / "config.json"
    return folders


def conversion_job(command: str, sources: dict[str, Path], destination: Path, *extra: str) -> dict:
    if command == "from-original":
        argv = [command, str(sources["pth"]), str(destination), "--task", "vqa", "--image-size", "40"]
        return {"cli": argv + ["--config", str(sources["pth_config"]), *extra]}
    source = {"to-safetensors": "bin", "to-bin": "safetensors", "to-h5": "safetensors"}.get(command, "h5")
    return {"cli": [command, str(sources[source]), str(destination), *extra]}


def older_conversion(sources: dict[str, Path], destination: Path) -> dict:
    """What the user had at the destination: another model (seed 1), so that old and new differ."""
    return {"cli": ["to-safetensors", str(sources["other"]), str(destination)]}


def source_paths(job: dict) -> list[Path]:
    """The files a job reads (its destination left out)."""
    argv = [job["cli"][1], *job["cli"][3:]] if "cli" in job else [job["save"]["source"]]
    return [Path(arg) for arg in argv if not arg.startswith("-") and Path(arg).exists()]


def hashes(paths: list[Path]) -> dict[str, Any]:
    return {
        str(path): snapshot(path) if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest() for path in paths
    }


def prepare(job: dict, work: Path, old_job: dict | None) -> None:
    """The starting state: an empty `work`, or one holding the result of `old_job` (what the user had)."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if old_job is not None:
        assert run_job(old_job) == 0


def reference(job: dict, work: Path, old_job: dict | None, destination: Path) -> tuple[dict, dict, dict, dict]:
    """(old snapshot, old weights, new snapshot, new weights) of `destination`, from an uninterrupted run."""
    prepare(job, work, old_job)
    old = snapshot(destination), (weights_of(destination) if destination.exists() else {})
    assert run_job(job) == 0
    return old[0], old[1], snapshot(destination), weights_of(destination)


def full_disk_run(job: dict, faults: Faults, patch: Callable, capsys: pytest.CaptureFixture) -> bool:
    """Run `job` with a full disk at `faults.at`; whether it failed (then with ENOSPC, naming the file)."""
    if "cli" in job:
        capsys.readouterr()
        code = run_job(job, faults, patch)
        err = capsys.readouterr().err
        assert code in (0, 2) and (code == 0 or "No space left on device" in err and str(ROOT) not in err), err
        assert code == 0 or err.count("\n") == 1 and "/" in err, err  # one line, naming the file
        return code == 2
    try:
        run_job(job, faults, patch)
    except OSError as error:
        assert error.errno == errno.ENOSPC and error.filename, error
        return True
    return False


def check_full_disk(
    job: dict, work: Path, destination: Path, old_job: dict | None, every: bool, monkeypatch, capsys
) -> int:
    old_files, old_weights, new_files, new_weights = reference(job, work, old_job, destination)
    prepare(job, work, old_job)
    total = count_writes(job, monkeypatch)
    assert total > 3
    for at in points(total, every):
        prepare(job, work, old_job)
        before = hashes(source_paths(job))
        faults = Faults(at)
        with monkeypatch.context() as patch:
            failed = full_disk_run(job, faults, setter(patch), capsys)
        assert faults.fired
        assert temporaries(work) == [], (at, temporaries(work))  # an error removes every temporary
        assert hashes(source_paths(job)) == before
        if not failed:  # the failing operation came after the commit (a folder's fsync): complete
            assert snapshot(destination) == new_files and same_weights(weights_of(destination), new_weights), at
        elif old_job is None:  # a new folder appears whole or not at all
            assert not destination.exists(), at
        elif "cli" in job:  # a conversion is all-or-nothing: the destination is exactly what it was
            assert snapshot(destination) == old_files, at
        else:
            assert_absent_or_complete(destination, [old_files, new_files], [old_weights, new_weights])
    return total


def check_kill(job: dict, work: Path, destination: Path, old_job: dict | None, at_points: list[int]) -> None:
    old_files, old_weights, new_files, new_weights = reference(job, work, old_job, destination)
    for at in at_points:
        prepare(job, work, old_job)
        before = hashes(source_paths(job))
        result = kill_at(at, job)
        assert result.returncode == -signal.SIGKILL, (at, result.returncode, result.stderr[-2000:])
        assert hashes(source_paths(job)) == before
        assert_absent_or_complete(destination, [old_files, new_files], [old_weights, new_weights])
        if "cli" in job and (destination / "config.json").exists():
            assert snapshot(destination) in (old_files, new_files)
        rerun = job
        if "cli" in job and destination.exists() and "--force" not in job["cli"]:
            rerun = {"cli": [*job["cli"], "--force"]}  # the kill came after the commit: complete, now refused
        assert run_job(rerun) == 0  # a rerun succeeds and removes what the killed run left
        assert temporaries(work) == [], (at, temporaries(work))
        assert snapshot(destination) == new_files and same_weights(weights_of(destination), new_weights)


def save_job(sources: dict[str, Path], destination: Path, framework: str = "pt", seed: int = 1, **kwargs) -> dict:
    source = sources["other" if seed else "safetensors"]
    return {"save": {"framework": framework, "class": CAPTION, "source": str(source), "dest": str(destination),
                     "kwargs": kwargs}}  # fmt: skip


FAST_CONVERSIONS = ["to-safetensors", "to-h5", "from-original"]
SLOW_CONVERSIONS = ["to-bin", "to-keras"]


@pytest.mark.parametrize(
    "command", FAST_CONVERSIONS + [pytest.param(name, marks=pytest.mark.slow) for name in SLOW_CONVERSIONS]
)
@pytest.mark.parametrize("force", [False, True], ids=["new", "force"])
def test_conversion_full_disk_leaves_nothing_partial(command, force, sources, tmp_path, monkeypatch, capsys, request):
    destination = tmp_path / "out"
    old_job = older_conversion(sources, destination) if force else None
    job = conversion_job(command, sources, destination, *(["--force"] if force else []))
    check_full_disk(job, tmp_path, destination, old_job, request.config.getoption("--run-slow"), monkeypatch, capsys)


@pytest.mark.parametrize("framework", ["pt", pytest.param("tf", marks=pytest.mark.slow)])
@pytest.mark.parametrize(
    "options",
    [{"max_shard_size": "60KB"}, {"max_shard_size": "60KB", "safe_serialization": False}, {}],
    ids=["sharded", "sharded-other-format", "single"],
)
def test_save_pretrained_full_disk_over_an_older_save(
    framework, options, sources, tmp_path, monkeypatch, capsys, request
):
    destination = tmp_path / "model"
    old_job = save_job(sources, destination, framework, seed=0, max_shard_size="60KB")
    job = save_job(sources, destination, framework, **options)
    check_full_disk(job, tmp_path, destination, old_job, request.config.getoption("--run-slow"), monkeypatch, capsys)


def test_save_pretrained_full_disk_into_a_new_folder(sources, tmp_path, monkeypatch, capsys):
    destination = tmp_path / "new" / "model"
    job = save_job(sources, destination, max_shard_size="60KB")
    check_full_disk(job, tmp_path, destination, None, False, monkeypatch, capsys)


def _kill_points(job: dict, work: Path, old_job: dict | None, monkeypatch, every: bool) -> list[int]:
    prepare(job, work, old_job)
    total = count_writes(job, monkeypatch)
    return points(total, True)[::3] + [total] if every else [total // 2, total - 1]  # mid-write, in the commit


@pytest.mark.parametrize("force", [False, True], ids=["new", "force"])
def test_conversion_killed_leaves_nothing_partial(force, sources, tmp_path, monkeypatch, request):
    destination = tmp_path / "out"
    old_job = older_conversion(sources, destination) if force else None
    job = conversion_job("to-safetensors", sources, destination, *(["--force"] if force else []))
    every = request.config.getoption("--run-slow")
    check_kill(job, tmp_path, destination, old_job, _kill_points(job, tmp_path, old_job, monkeypatch, every))


@pytest.mark.slow
@pytest.mark.parametrize("command", ["to-bin", "to-h5", "from-original", "to-keras"])
def test_every_conversion_killed_leaves_nothing_partial(command, sources, tmp_path, monkeypatch):
    destination = tmp_path / "out"
    old_job = older_conversion(sources, destination)
    job = conversion_job(command, sources, destination, "--force")
    check_kill(job, tmp_path, destination, old_job, _kill_points(job, tmp_path, old_job, monkeypatch, False))


@pytest.mark.parametrize("framework", ["pt", pytest.param("tf", marks=pytest.mark.slow)])
def test_save_pretrained_killed_over_an_older_save(framework, sources, tmp_path, monkeypatch, request):
    destination = tmp_path / "model"
    old_job = save_job(sources, destination, framework, seed=0, max_shard_size="60KB", safe_serialization=False)
    job = save_job(sources, destination, framework, max_shard_size="60KB")
    every = request.config.getoption("--run-slow")
    check_kill(job, tmp_path, destination, old_job, _kill_points(job, tmp_path, old_job, monkeypatch, every))


def test_existing_destination_is_refused_before_reading(sources, tmp_path, capsys):
    from blip_conversion.cli import main

    destination = tmp_path / "out"
    destination.mkdir()
    (destination / "keep.txt").write_text("mine")
    assert main(["to-safetensors", str(tmp_path / "no-such-source"), str(destination)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert snapshot(destination) == {"keep.txt": hashlib.sha256(b"mine").hexdigest()}


@pytest.mark.parametrize("inside", [False, True], ids=["same-folder", "parent-folder"])
def test_force_never_deletes_the_source(sources, tmp_path, capsys, inside):
    from blip_conversion.cli import main

    source = tmp_path / "parent" / "ckpt"
    shutil.copytree(sources["safetensors"], source)
    before = snapshot(tmp_path)
    destination = source.parent if inside else source
    assert main(["to-h5", str(source), str(destination), "--force"]) == 2
    assert "holds the source" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_stale_temporaries_of_live_processes_are_kept(tmp_path):
    from blip_core.io.atomic import atomic_write_text, remove_stale_temps, temp_name

    live = tmp_path / temp_name("config.json")  # this process: a write in progress
    live.write_text("x")
    dead = tmp_path / ".config.json.blip-tmp-999999999-0a1b2c3d"
    dead.write_text("y")
    atomic_write_text(tmp_path / "config.json", "{}")
    assert live.exists() and not dead.exists()
    assert remove_stale_temps(tmp_path) == []


def test_a_set_aside_folder_is_put_back(tmp_path):
    from blip_core.io.atomic import atomic_folder

    old = tmp_path / ".out.blip-tmp-999999999-0a1b2c3d.old"  # a kill between the two renames of a replacement
    (old / "previous").mkdir(parents=True)
    (old / "previous" / "config.json").write_text("{}")
    with pytest.raises(FileExistsError):
        with atomic_folder(tmp_path / "out"):
            pass
    assert (tmp_path / "out" / "config.json").read_text() == "{}" and not old.exists()


if __name__ == "__main__":  # the subprocess of `kill_at`
    sys.exit(run_job(json.loads(sys.argv[2]), Faults(int(sys.argv[1]), kill=True)))
