"""XLA programs cached across processes: `generate` compiles one XLA program per shape (17-24 s at base size on
2 CPU cores); TensorFlow can keep compiled programs in a folder and load them in later processes instead.

Opt-in, with the environment variable `BLIP_XLA_CACHE`: `1` for `$XDG_CACHE_HOME/blip-dual/xla/<TensorFlow
version>-<CPU fingerprint>` (a program compiled for one CPU's instruction set must never run on another, e.g. from
a home folder shared over NFS), or a folder of your choice. Not on by default: TensorFlow writes a cache entry in
place (not atomically), so a process reading an entry another is still writing fails instead of compiling;
use one folder per concurrently starting process group. A `TF_XLA_FLAGS` that already names a persistent cache
folder is left as it is. It must be set before TensorFlow's first XLA compilation in the
process; `import blip_tf` does it, first (when TensorFlow was imported before, set `TF_XLA_FLAGS` yourself).
"""

from __future__ import annotations

import hashlib
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from blip_core.modeling.cpu_features import cpu_flags

FLAG = "--tf_xla_persistent_cache_directory"
DISABLED = ("0", "off", "false", "no", "")
DEFAULT = ("1", "on", "true", "yes")


def cache_folder(environ: dict[str, str] | None = None) -> Path | None:
    """The folder compiled programs go to, or None when disabled."""
    environ = os.environ if environ is None else environ
    chosen = environ.get("BLIP_XLA_CACHE", "").strip()
    if chosen.lower() in DISABLED:
        return None
    if chosen.lower() not in DEFAULT:
        return Path(chosen).expanduser()
    base = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "blip-dual" / "xla" / f"tf-{_tensorflow_version()}-{_cpu_fingerprint()}"


def enable(environ: dict[str, str] | None = None) -> Path | None:
    """Add the cache folder to `TF_XLA_FLAGS` (creating it, private to the user); the folder, or None when
    disabled, already configured, or not creatable (then programs are compiled as usual)."""
    environ = os.environ if environ is None else environ
    if FLAG in environ.get("TF_XLA_FLAGS", ""):
        return None
    folder = cache_folder(environ)
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        return None
    environ["TF_XLA_FLAGS"] = f"{environ.get('TF_XLA_FLAGS', '')} {FLAG}={folder}".strip()
    return folder


def _tensorflow_version() -> str:
    for name in ("tensorflow-cpu", "tensorflow"):
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return "unknown"


def _cpu_fingerprint() -> str:
    flags = cpu_flags()
    return hashlib.sha256(" ".join(sorted(flags or ())).encode()).hexdigest()[:12]


enable()  # on import: `blip_tf/__init__.py` imports this module before anything imports TensorFlow
