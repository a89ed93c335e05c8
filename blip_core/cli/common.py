"""What every `blip` sub-command shares: exit codes, the common options, input expansion and image loading,
one-line errors, progress on stderr, and the record writer (text, JSON lines or CSV on stdout)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from blip_core.processing.image_loading import to_pil_or_array

EXIT_OK, EXIT_SOME_FAILED, EXIT_ERROR = 0, 1, 2
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MESSAGE_LIMIT = 600  # characters of an error line; a wrong checkpoint lists hundreds of tensors


class UsageError(ValueError):
    """A problem with the command line itself."""


def one_line(error: BaseException) -> str:
    """An error as one line of at most `MESSAGE_LIMIT` characters (whitespace collapsed, the start kept)."""
    line = " ".join(str(error).split())
    return line if len(line) <= MESSAGE_LIMIT else line[: MESSAGE_LIMIT - 3] + "..."


def add_common_arguments(sub: argparse.ArgumentParser, images_required: bool = True) -> None:
    """The inputs, model, runtime and output options of every sub-command that runs a model."""
    sub.add_argument("images", nargs="+" if images_required else "*", help="image files, folders or URLs")
    add_runtime_arguments(
        sub, "a folder or Hub id (default: the embedded demo model, else Salesforce's)", onnx=True
    )
    sub.add_argument("--batch-size", type=int, default=8)
    sub.add_argument("--format", choices=["text", "jsonl", "csv"], default="text")
    sub.add_argument("--progress", action="store_true", help="show progress on stderr")
    add_verbose_argument(sub)


def add_runtime_arguments(sub: argparse.ArgumentParser, model_help: str | None, onnx: bool = False) -> None:
    """Which model runs, and where: --model (unless `model_help` is None: commands naming their models
    otherwise), --framework (with `onnx`, also an export of `blip-convert to-onnx` in ONNX Runtime), --device,
    --dtype (every sub-command that runs one)."""
    if model_help is not None:
        sub.add_argument("--model", help=model_help)
    if onnx:
        sub.add_argument(
            "--framework",
            choices=["pt", "tf", "onnx"],
            help="default: onnx for a folder of blip-convert to-onnx, else PyTorch when installed",
        )
    else:
        sub.add_argument("--framework", choices=["pt", "tf"], help="default: PyTorch when installed")
    sub.add_argument("--device", help="e.g. cpu, cuda, /GPU:0")
    sub.add_argument(
        "--dtype", choices=["float32", "bfloat16", "float16", "auto"], default="float32", help="weights dtype"
    )


def add_verbose_argument(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--verbose", action="store_true", help="let TensorFlow's and XLA's own log lines through to stderr"
    )


def pipeline_for(args: argparse.Namespace, task: str) -> Any:
    """The pipeline a sub-command runs, from its common options."""
    from blip_core.tasks.pipelines import pipeline

    return pipeline(
        task,
        model=args.model,
        framework=args.framework,
        batch_size=args.batch_size,
        device=args.device,
        dtype=args.dtype,
    )


def expand_inputs(items: Sequence[str]) -> list[str]:
    """Files, URLs, and the images inside folders (sorted, recursively)."""
    return [name for item in items for name in _folder_images(item)]


def _folder_images(item: str) -> list[str]:
    path = Path(item)
    if not path.is_dir():
        return [item]
    return [str(p) for p in sorted(path.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]


def empty_folders(items: Sequence[str]) -> list[str]:
    """The folders among `items` that hold no image file."""
    return [item for item in items if Path(item).is_dir() and not _folder_images(item)]


def load_images(names: list[str]) -> tuple[list[tuple[str, Any]], list[tuple[str, str]]]:
    """(name, image) for every readable input, and (name, reason) for the others."""
    loaded, failed = [], []
    for name in names:
        try:
            loaded.append((name, to_pil_or_array(name)))
        except (ValueError, OSError) as err:  # unreadable, missing, or not an image
            failed.append((name, str(err)))
    return loaded, failed


def batches(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def progress(items: list, enabled: bool) -> Iterator:
    for index, item in enumerate(items, start=1):
        yield item
        if enabled:
            print(f"\r[{index}/{len(items)}]", end="" if index < len(items) else "\n", file=sys.stderr, flush=True)


class Writer:
    """One record per result, as text (tab-separated), JSON lines or CSV."""

    def __init__(self, style: str, fields: list[str]) -> None:
        self.style, self.fields = style, fields
        self.csv = csv.DictWriter(sys.stdout, fieldnames=fields) if style == "csv" else None
        if self.csv:
            self.csv.writeheader()

    def write(self, record: dict[str, Any]) -> None:
        if self.style == "jsonl":
            print(json.dumps(record, ensure_ascii=False))
        elif self.csv:
            self.csv.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in record.items()})
        else:
            print("\t".join(_text(record[field]) for field in self.fields))
        sys.stdout.flush()


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:.4f}" for v in value) + "]"
    return str(value)
