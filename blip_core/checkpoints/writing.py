"""The framework-neutral half of `save_pretrained`: its options, weight files, shards and their index.

Both trees hand over canonical arrays (PyTorch names and layout); this module writes them as
`model.safetensors` (default), `pytorch_model.bin` or `tf_model.h5`, split into shards above
`max_shard_size` with `transformers`' file names and index JSON, for a `variant` if asked. Every file
is written atomically; weight files left by an earlier save that would shadow the new ones on load
are removed afterwards (see `stale_weight_files`). `staged_save` makes one whole save all-or-nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from blip_core.io.atomic import atomic_write_text, staged_folder
from blip_core.io.hub import (
    PT_WEIGHTS_INDEX_NAME,
    PT_WEIGHTS_NAME,
    SAFE_WEIGHTS_INDEX_NAME,
    SAFE_WEIGHTS_NAME,
    TF_WEIGHTS_INDEX_NAME,
    TF_WEIGHTS_NAME,
    WEIGHT_CANDIDATES,
    add_variant,
    shard_names,
)
from blip_core.io.hub_upload import check_save_kwargs

DEFAULT_MAX_SHARD_SIZE = "5GB"
# format -> (single file, index) that save_pretrained writes.
WRITTEN_FILES = {
    "safetensors": (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME),
    "bin": (PT_WEIGHTS_NAME, PT_WEIGHTS_INDEX_NAME),
    "h5": (TF_WEIGHTS_NAME, TF_WEIGHTS_INDEX_NAME),
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?)\s*([KMGT])(i?)B\s*", re.IGNORECASE)


@dataclass(frozen=True)
class SaveOptions:
    """What `save_pretrained` was asked: which format, how large a shard, which variant, whether to write."""

    is_main_process: bool = True
    max_shard_size: int = 5 * 10**9
    safe_serialization: bool = True
    variant: str | None = None
    save_function: Callable[[Any, Any], Any] | None = None


def parse_shard_size(value: int | str) -> int:
    """`max_shard_size` in bytes: an int, or "5GB"/"500MB"/"10KB"/"1TB" (powers of 1000, as `transformers`'
    PyTorch `save_pretrained` reads them, through `huggingface_hub`) or "1GiB"/"500MiB" (powers of 1024, which
    its TF `save_pretrained` also takes). Units are case-insensitive; "5Gb" is bytes, as in PyTorch.

    Raises:
        ValueError: anything else, or a size below one byte.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"max_shard_size must be an int (bytes) or a string such as '5GB', got {value!r}")
    size = value
    if isinstance(value, str):
        match = _SIZE.fullmatch(value)
        if match is None:
            raise ValueError(f"max_shard_size={value!r} is not a size such as '5GB', '500MB' or '1GiB'")
        number, unit, binary = match.groups()
        power = "KMGT".index(unit.upper()) + 1
        size = int(float(number) * ((1024 if binary else 1000) ** power))
    if size < 1:
        raise ValueError(f"max_shard_size must be at least 1 byte, got {value!r}")
    return size


def parse_save_options(
    class_name: str,
    is_main_process: bool,
    push_to_hub: bool,
    max_shard_size: int | str,
    safe_serialization: bool,
    variant: str | None,
    save_function: Any,
    kwargs: dict[str, Any],
) -> SaveOptions:
    """Check `save_pretrained`'s arguments (both trees take `transformers`' PyTorch signature).

    Raises:
        ValueError: `push_to_hub=True` (nothing is written to the Hub here), a bad size or variant.
        TypeError: an argument `save_pretrained` does not take.
    """
    kwargs = dict(kwargs)
    if "save_config" in kwargs:  # transformers' old name of is_main_process
        is_main_process = kwargs.pop("save_config")
    check_save_kwargs(class_name, push_to_hub, kwargs)
    if variant is not None and (not isinstance(variant, str) or not re.fullmatch(r"[\w\-]+", variant)):
        raise ValueError(f"variant must be a name such as 'fp16' (letters, digits, '_' or '-'), got {variant!r}")
    if save_function is not None and not callable(save_function):
        raise TypeError(f"save_function must be callable, got {type(save_function).__name__}")
    return SaveOptions(
        is_main_process=bool(is_main_process),
        max_shard_size=parse_shard_size(max_shard_size),
        safe_serialization=bool(safe_serialization),
        variant=variant,
        save_function=save_function,
    )


def plan_shards(
    sizes: Mapping[str, int], filename: str, max_shard_size: int, shares: Mapping[str, str] | None = None
) -> tuple[dict[str, list[str]], int]:
    """(shard file name -> tensor names in order, total bytes), as `transformers` splits them (through
    `huggingface_hub`): a tensor that would tip a shard over `max_shard_size` starts a new one; one larger
    than it has its own; a tensor in `shares` (name -> storage owner) shares that storage: same shard,
    counted once. A single shard keeps `filename`; several are `model-00001-of-00003.safetensors`, ..."""
    from huggingface_hub.serialization import split_state_dict_into_shards_factory

    shares = dict(shares or {})
    stem, extension = filename.rsplit(".", 1)
    split = split_state_dict_into_shards_factory(
        {name: (size, shares.get(name, name)) for name, size in sizes.items()},
        get_storage_size=lambda entry: entry[0],
        get_storage_id=lambda entry: entry[1],
        filename_pattern=f"{stem}{{suffix}}.{extension}",
        max_shard_size=max_shard_size,
    )
    return {name: list(tensors) for name, tensors in split.filename_to_tensors.items()}, split.metadata["total_size"]


def _with_tied_aliases(
    arrays: Mapping[str, np.ndarray], class_name: str, config: Any
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """`arrays` plus each tied alias they omit, holding its source's very array (`pytorch_model.bin` keeps
    them, sharing one storage, as `torch.save` of a `transformers` state dict does); and alias -> source."""
    from blip_core.weights import tied_pairs

    out, shares = dict(arrays), {}
    for pair in tied_pairs(class_name, config):
        if pair.alias not in out and pair.source in out:
            out[pair.alias] = out[pair.source]
            shares[pair.alias] = shares[pair.source] = pair.source
    return out, shares


def write_weights(
    directory: Path,
    arrays: Mapping[str, np.ndarray],
    options: SaveOptions,
    *,
    fmt: str,
    bf16_names: frozenset[str] = frozenset(),
    class_name: str = "",
    config: Any = None,
    total_parameters: int | None = None,
) -> list[Path]:
    """Write `arrays` (canonical names, PyTorch layout, in order) as `fmt` ("safetensors", "bin" or "h5"),
    sharded above `options.max_shard_size`, then remove stale weight files; returns the files written."""
    if not arrays:
        raise ValueError(f"save_pretrained: no tensors to save in {directory}")
    single, index_name = (add_variant(name, options.variant) for name in WRITTEN_FILES[fmt])
    shares: dict[str, str] = {}
    if fmt == "h5":
        from blip_core.checkpoints.h5_writer import tf_h5_entries

        entries = {entry.name: entry for entry in tf_h5_entries(arrays, class_name, config, bf16_names)}
        sizes = {name: entry.value.nbytes for name, entry in entries.items()}
    else:
        if fmt == "bin":
            arrays, shares = _with_tied_aliases(arrays, class_name, config)
        sizes = {name: np.asarray(value).nbytes for name, value in arrays.items()}
    shards, total_size = plan_shards(sizes, single, options.max_shard_size, shares)
    written = []
    for filename, names in shards.items():
        path = directory / filename
        if fmt == "h5":
            written.append(_write_h5(path, [entries[name] for name in names], sharded=len(shards) > 1))
        else:
            written.append(_write_file(path, fmt, {name: arrays[name] for name in names}, bf16_names, options))
    if len(shards) > 1:
        metadata: dict[str, Any] = {"total_size": total_size}
        if fmt != "h5" and total_parameters is not None:  # transformers' TF port writes only total_size
            metadata["total_parameters"] = total_parameters
        weight_map = {name: filename for filename, names in shards.items() for name in names}
        index = {"metadata": metadata, "weight_map": weight_map}
        atomic_write_text(directory / index_name, json.dumps(index, indent=2, sort_keys=True) + "\n")
        written.append(directory / index_name)
    for stale in stale_weight_files(directory, fmt, options.variant, {path.name for path in written}):
        stale.unlink()
    return written


@contextlib.contextmanager
def staged_save(directory: str | os.PathLike, fmt: str, variant: str | None) -> Iterator[Path]:
    """Yield the folder to write one `save_pretrained` into; the files land in `directory` only when the block
    ends cleanly (`blip_core.io.atomic.staged_folder`): a new directory appears whole; in an existing one
    `config.json` is removed first and written last, after the weights and the removal of stale weight files,
    so an interrupted save never leaves a `config.json` beside missing, truncated or mixed weights.
    """

    def remove_stale(final: Path, written: set[str]) -> None:
        for stale in stale_weight_files(final, fmt, variant, written):
            stale.unlink()

    with staged_folder(directory, last=("config.json",), before_last=remove_stale) as work:
        yield work


def _write_file(
    path: Path, fmt: str, tensors: Mapping[str, np.ndarray], bf16_names: frozenset[str], options: SaveOptions
) -> Path:
    if fmt == "safetensors":
        from blip_core.checkpoints.safetensors_io import write_safetensors

        return write_safetensors(path, tensors, metadata={"format": "pt"}, bf16_names=bf16_names)
    from blip_core.checkpoints.bin_writer import write_bin

    return write_bin(path, tensors, bf16_names=bf16_names, save_function=options.save_function)


def _write_h5(path: Path, entries: list[Any], sharded: bool) -> Path:
    from blip_core.checkpoints.h5_writer import write_h5_entries, write_h5_shard

    return write_h5_shard(path, entries) if sharded else write_h5_entries(path, entries)


def _shard_pattern(single: str) -> re.Pattern[str]:
    stem, extension = single.rsplit(".", 1)
    return re.compile(rf"{re.escape(stem)}-\d{{5}}-of-\d{{5}}\.{re.escape(extension)}")


def stale_weight_files(directory: Path, fmt: str, variant: str | None, written: set[str]) -> list[Path]:
    """Weight files of an earlier save that `from_pretrained(directory, variant=variant)` would read
    instead of (or mixed with) the ones just written, and only those.

    `transformers` removes only old shards of the format it writes; it leaves an older `model.safetensors`
    beside a new `pytorch_model.bin` (or beside new shards), and then loads the old weights. Here these go:
    each format read before `fmt` (its file, its index and the shards that index lists), the other layout
    of `fmt` (the single file when shards were written, the index when a single file was), and old shards
    of `fmt` that were not rewritten. Other variants and formats read after `fmt` stay.
    """
    order = [candidate for candidate, _, _ in WEIGHT_CANDIDATES]
    stale: list[Path] = []
    for _, single, index in WEIGHT_CANDIDATES[: order.index(fmt) + 1]:
        single, index = add_variant(single, variant), add_variant(index, variant)
        pattern = _shard_pattern(single)
        names = {single, index}
        if (directory / index).is_file() and index not in written:
            extension = "." + single.rsplit(".", 1)[1]
            try:  # only weight files of that format: an index never makes another kind of file go
                names.update(name for name in shard_names(directory / index) if name.endswith(extension))
            except ValueError:  # an unreadable index: its shards are found by name below
                pass
        names.update(name for name in os.listdir(directory) if pattern.fullmatch(name))
        stale.extend(directory / name for name in sorted(names - written) if (directory / name).is_file())
    return stale
