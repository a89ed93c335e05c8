"""Atomic writes: files and whole folders are written under temporary names, then renamed into place.

- a file: a temporary file beside the target, flushed and fsynced, then one `os.replace`;
- a new folder: a temporary sibling folder, renamed into place when complete;
- a folder that already holds files (`save_pretrained` into an existing directory): new files are staged in a
  temporary sub-folder, then moved in with the `last` ones (`config.json`) removed first and moved in last, so a
  loader never finds a `config.json` beside half-replaced weights;
- replacing a folder (`blip-convert --force`): the complete new folder is swapped with the old one in one
  `renameat2(RENAME_EXCHANGE)` where Linux offers it, else by two renames (the old folder is put back on error).

An error removes every temporary file. After a kill (SIGKILL, power loss) temporaries may remain; their names
(`.<target>.blip-tmp-<pid>-<random>`) are never read by a loader, and the next write to the same place removes
those of dead processes (putting a set-aside old folder back if its destination is missing).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

TEMP_MARK = ".blip-tmp-"
_TEMP = re.compile(r"\.(?P<target>.*)\.blip-tmp-(?P<pid>\d+)-[0-9a-f]+(?P<old>\.old)?")
_STAGE = "staged"  # target name of the staging sub-folder inside an existing directory


def temp_name(target_name: str, old: bool = False) -> str:
    """A hidden name no loader reads, unique, tagged with this process id (for `remove_stale_temps`)."""
    return f".{target_name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}" + (".old" if old else "")


def is_temp_name(name: str) -> bool:
    """Whether `name` is one of this module's temporary names."""
    return _TEMP.fullmatch(name) is not None


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def remove_stale_temps(directory: str | os.PathLike, target_names: Iterable[str] | None = None) -> list[Path]:
    """Remove the temporaries that killed processes left in `directory` (for `target_names` only, if given).

    A set-aside old folder (`....old`) whose target is missing is renamed back instead: it is the user's data.
    Returns the paths removed or restored. Temporaries of live processes are left alone.
    """
    directory = Path(directory)
    wanted = None if target_names is None else set(target_names)
    handled = []
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return handled
    for name in names:
        match = _TEMP.fullmatch(name)
        if match is None or (wanted is not None and match["target"] not in wanted) or _pid_alive(int(match["pid"])):
            continue
        path, target = directory / name, directory / match["target"]
        if match["old"] and (path / "previous").exists() and not target.exists():
            os.replace(path / "previous", target)
        _remove(path)
        handled.append(path)
    return handled


@contextlib.contextmanager
def _naming(target: Path) -> Iterator[None]:
    """An OSError that names no file (a full disk inside a writer) is raised again naming `target`."""
    try:
        yield
    except OSError as error:
        if error.filename is not None or error.errno is None:
            raise
        raise OSError(error.errno, f"{error.strerror or error} while writing", str(target)) from error


def _fsync_path(path: Path, directory: bool = False) -> None:
    """Flush a file (or a folder's entries) to disk; folders where the OS cannot are skipped."""
    try:
        fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    except OSError:
        if directory:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; it replaces `target` (fsynced) only when the block ends cleanly.

    Raises whatever the block or the file system raises (OSError ENOSPC, naming `target`, ...); the temporary
    is then removed.
    """
    target = Path(target)
    tmp = target.parent / temp_name(target.name)
    try:
        with _naming(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(target.parent, [target.name])
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the usual mode, after the umask
            yield tmp
            _fsync_path(tmp)
            os.replace(tmp, target)
        _fsync_path(target.parent, directory=True)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_open(target: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a binary stream whose content replaces `target` when the block ends cleanly."""
    with atomic_path(target) as tmp, open(tmp, "wb") as stream:
        yield stream


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> None:
    with atomic_open(target) as stream:
        stream.write(data)


def atomic_write_text(target: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def exchange_paths(first: Path, second: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux `renameat2(RENAME_EXCHANGE)`); False where unsupported."""
    rename = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if rename is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if rename(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def _replace_folder(work: Path, destination: Path) -> None:
    """Put the complete folder `work` at `destination`, replacing the folder there (removed afterwards)."""
    if exchange_paths(work, destination):
        shutil.rmtree(work, ignore_errors=True)  # now the old folder
        return
    old = destination.parent / temp_name(destination.name, old=True)
    os.mkdir(old)
    os.replace(destination, old / "previous")
    try:
        os.replace(work, destination)
    except BaseException:
        os.replace(old / "previous", destination)  # the user's folder back where it was
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_folder(destination: str | os.PathLike, replace: bool = False) -> Iterator[Path]:
    """Yield an empty temporary sibling folder; it becomes `destination` when the block ends cleanly.

    An existing `destination` is replaced (only after the new folder is complete) when `replace`, else
    FileExistsError is raised before anything is written. On error the temporary folder is removed.
    """
    destination = Path(destination)
    work = destination.parent / temp_name(destination.name)
    try:
        with _naming(destination):
            destination.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(destination.parent, [destination.name])
            if destination.exists() and not replace:
                raise FileExistsError(errno.EEXIST, "destination exists", str(destination))
            os.mkdir(work)
            yield work
            if destination.exists():
                _replace_folder(work, destination)
            else:
                os.replace(work, destination)
        _fsync_path(destination.parent, directory=True)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def staged_folder(
    directory: str | os.PathLike,
    last: tuple[str, ...] = (),
    before_last: Callable[[Path, set[str]], None] | None = None,
) -> Iterator[Path]:
    """Yield a temporary folder for the files of one save into `directory` (created if missing); commit them
    when the block ends cleanly. Files of `directory` the save does not write stay.

    A missing `directory` is made whole (`atomic_folder`). An existing one gets its `last` files removed first,
    the other new files moved in, `before_last(directory, names written)` called (to remove stale files), and
    the `last` files moved in last: interrupted, it has no `last` file (`config.json`), so nothing loads it.
    """
    directory = Path(directory)
    if not directory.exists():
        with atomic_folder(directory) as work:
            yield work
        return
    stage = directory / temp_name(_STAGE)
    try:
        with _naming(directory):
            remove_stale_temps(directory, [_STAGE])
            os.mkdir(stage)
            yield stage
            _commit(stage, directory, last, before_last)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _commit(
    stage: Path, directory: Path, last: tuple[str, ...], before_last: Callable[[Path, set[str]], None] | None
) -> None:
    """Move the staged files into `directory`: the `last` ones removed first and moved in last."""
    names = set(os.listdir(stage))
    for name in last:
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()
    for name in sorted(names - set(last)):
        os.replace(stage / name, directory / name)
    if before_last is not None:
        before_last(directory, names)
    for name in last:
        if name in names:
            os.replace(stage / name, directory / name)
    _fsync_path(directory, directory=True)
