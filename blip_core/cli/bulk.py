"""`blip caption INPUT --out DIR` and `blip capfilt INPUT --out DIR`: bulk captioning and CapFilt over datasets.

    blip caption photos/ --out captions/ --progress                  # Parquet shards, resumable
    blip caption shards/{00000..00099}.tar --out captions/ --num-beams 3
    blip capfilt web.parquet --out filtered/ --captioner Salesforce/blip-image-captioning-large \\
        --filter Salesforce/blip-itm-large-coco --num-captions 3
    blip capfilt web.parquet --out filtered/ --engine ray --address auto --actors 8 --num-gpus 1

The same command started again after a kill resumes; on a finished output it does nothing. The counts are
printed on stdout as one JSON line. Exit codes: 0 every record done, 1 some records' images could not be used
(their rows carry the reason in `error`), 2 nothing done (usage, model or input problem: one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from blip_core.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_SOME_FAILED,
    UsageError,
    add_runtime_arguments,
    add_verbose_argument,
    one_line,
)

COMMANDS = ("capfilt",)
EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C
BULK_ONLY = {  # caption options that exist only with --out (name: default)
    "out_format": "parquet",
    "shard_size": 1000,
    "workers": None,
    "engine": "local",
    "address": None,
    "actors": None,
    "num_gpus": None,
    "actor_cpus": None,
    "overwrite": False,
    "image_column": None,
    "text_column": None,
    "key_column": None,
}
CAPFILT_GENERATION = {  # the captioner's other generation options (name: type)
    "max_new_tokens": int,
    "min_new_tokens": int,
    "top_k": int,
    "temperature": float,
    "repetition_penalty": float,
    "length_penalty": float,
    "no_repeat_ngram_size": int,
}


def add_bulk_arguments(sub: argparse.ArgumentParser) -> None:
    """The dataset options: output folder and format, sharding, workers, engine, input columns."""
    group = sub.add_argument_group("datasets (with --out)")
    group.add_argument("--out-format", choices=["parquet", "jsonl"], help="shard format (default parquet)")
    group.add_argument("--shard-size", type=int, help="records per output shard (default 1000)")
    group.add_argument("--workers", type=int, help="preprocessing processes (default: up to 4; 0: none)")
    group.add_argument("--engine", choices=["local", "ray"], help="'ray': run on Ray Data (blip-dual[scale])")
    group.add_argument("--address", help="the Ray cluster to join (e.g. auto); default: a local Ray")
    group.add_argument("--actors", type=int, help="Ray model actors (default: 1 per GPU, else the CPUs less one)")
    group.add_argument("--num-gpus", type=float, help="GPUs per Ray model actor")
    group.add_argument("--actor-cpus", type=float, help="CPUs per Ray model actor (default 1; its torch threads)")
    group.add_argument("--overwrite", action="store_true", help="replace what --out holds instead of resuming")
    group.add_argument("--image-column", help="Parquet: the image column (bytes, path or {bytes, path})")
    group.add_argument("--text-column", help="Parquet: the web-text column")
    group.add_argument("--key-column", help="Parquet: a column of unique record keys")


def add_parsers(commands: Any) -> None:
    sub = commands.add_parser("capfilt", help="CapFilt: synthetic captions, then an ITM filter on every text")
    sub.add_argument("inputs", nargs="+", help="an image folder, Parquet files or WebDataset .tar shards")
    sub.add_argument("--out", required=True, help="the output folder (resumed when it holds this job)")
    sub.add_argument("--captioner", help="captioning checkpoint folder or Hub id (default: the demo model)")
    sub.add_argument("--filter", help="retrieval (ITM) checkpoint folder or Hub id (default: the demo model)")
    sub.add_argument("--num-captions", type=int, default=1, help="synthetic captions per image (default 1)")
    sub.add_argument("--sampling", choices=["nucleus", "beam"], default="nucleus", help="how captions are written")
    sub.add_argument("--top-p", type=float, help="nucleus sampling's top-p (default 0.9, the paper's)")
    sub.add_argument("--num-beams", type=int, help="with --sampling beam (default 3)")
    sub.add_argument("--threshold", type=float, default=0.5, help="keep a text whose ITM probability is above this")
    sub.add_argument("--protocol", choices=["transformers", "original"], default="transformers")
    sub.add_argument("--max-text-length", type=int, default=35, help="tokens per scored text (default 35)")
    sub.add_argument("--prompt", help="the captioner's prompt, e.g. 'a picture of' (removed from the captions)")
    sub.add_argument("--seed", type=int, default=0, help="sampling seed (with each record's key)")
    for name, kind in CAPFILT_GENERATION.items():
        sub.add_argument("--" + name.replace("_", "-"), type=kind)
    add_runtime_arguments(sub, None)
    sub.add_argument("--batch-size", type=int, default=8)
    sub.add_argument("--progress", action="store_true", help="show a progress bar (default: on a terminal)")
    add_bulk_arguments(sub)
    add_verbose_argument(sub)


def _absent(value: Any) -> bool:
    """Whether a bulk flag was not given (None, or False for --overwrite); 0 is a given value."""
    return value is None or value is False


def bulk_options(args: argparse.Namespace) -> dict[str, Any]:
    """The engine options of a bulk command, defaults filled in."""
    from blip_core.bulk.engine import DEFAULT_WORKERS

    values = {name: getattr(args, name, None) for name in BULK_ONLY}
    # `is`, not `in (None, False)`: 0 == False, and --workers 0 / --shard-size 0 are values, not absent flags
    values = {name: default if _absent(values[name]) else values[name] for name, default in BULK_ONLY.items()}
    return {
        "output_format": values["out_format"],
        "shard_size": values["shard_size"],
        "workers": DEFAULT_WORKERS if values["workers"] is None else values["workers"],
        "engine": values["engine"],
        "ray_address": values["address"],
        "ray_actors": values["actors"],
        "num_gpus": values["num_gpus"],
        "actor_cpus": values["actor_cpus"],
        "overwrite": values["overwrite"],
        "progress": bool(args.progress or sys.stderr.isatty()),
        "image_column": values["image_column"],
        "text_column": values["text_column"],
        "key_column": values["key_column"],
        "framework": args.framework,
        "device": args.device,
        "dtype": args.dtype,
        "batch_size": args.batch_size,
    }


DATASET_SUFFIXES = (".parquet", ".tar")


def check_without_out(args: argparse.Namespace) -> None:
    """`blip caption` without --out: the dataset options would be ignored, and dataset files cannot be read as
    images, so both are refused."""
    given = [name for name in BULK_ONLY if not _absent(getattr(args, name, None))]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise UsageError(f"{flags} apply to datasets: add --out DIR")
    datasets = [item for item in args.images if str(item).lower().endswith(DATASET_SUFFIXES)]
    if datasets:
        raise UsageError(f"{datasets[0]} is a dataset (Parquet or WebDataset): caption it with --out DIR")


def check_with_out(args: argparse.Namespace) -> None:
    """`blip caption --out`: --format is the stdout form's; shards take --out-format."""
    if args.format != "text":
        raise UsageError("--format is for captions on stdout; with --out, choose the shard format with --out-format")


def run_caption(args: argparse.Namespace, generation: dict[str, Any]) -> int:
    """`blip caption ... --out DIR` with the generation options `blip caption` took from the command line."""
    from blip_core.bulk.api import caption_dataset

    def call() -> Any:
        check_with_out(args)
        options = dict(generation)
        seed = options.pop("seed", 0)
        return caption_dataset(
            args.images, args.out, model=args.model, prompt=args.prompt, seed=seed, **bulk_options(args), **options
        )

    return _report(call, "caption")


def run(args: argparse.Namespace) -> int:
    """`blip capfilt`."""
    from blip_core.bulk.api import capfilt

    def call() -> Any:
        generation = {name: getattr(args, name) for name in CAPFILT_GENERATION if getattr(args, name) is not None}
        return capfilt(
            args.inputs,
            args.out,
            captioner=args.captioner,
            filter_model=args.filter,
            num_captions=args.num_captions,
            sampling=args.sampling,
            top_p=args.top_p,
            num_beams=args.num_beams,
            threshold=args.threshold,
            protocol=args.protocol,
            max_text_length=args.max_text_length,
            prompt=args.prompt,
            seed=args.seed,
            **bulk_options(args),
            **generation,
        )

    return _report(call, "capfilt")


# The Python API's names in its messages, as the command line spells them.
FLAGS = {
    "overwrite=True": "--overwrite",
    "batch_size": "--batch-size",
    "shard_size": "--shard-size",
    "ray_actors": "--actors",
    "actor_cpus": "--actor-cpus",
    "num_gpus": "--num-gpus",
    "ray_address": "--address",
    "key_column": "--key-column",
    "image_column": "--image-column",
    "text_column": "--text-column",
    "output_format": "--out-format",
    "filter_model": "--filter",
    "num_captions": "--num-captions",
    "max_text_length": "--max-text-length",
    "engine='ray'": "--engine ray",
    "workers=0": "--workers 0",
    "workers": "--workers",
}
_FLAG_PATTERN = re.compile(r"(?<![\w-])(" + "|".join(re.escape(name) for name in FLAGS) + r")(?![\w=])")


def command_line_message(error: BaseException) -> str:
    """An error of the Python API as one line naming the command's options (`--batch-size`, not `batch_size`);
    where a message already names both ("--overwrite (overwrite=True)"), once."""
    text = one_line(error)
    for python, flag in FLAGS.items():
        text = text.replace(f"{flag} ({python})", flag)
    return _FLAG_PATTERN.sub(lambda match: FLAGS[match.group(1)], text)


def _report(call: Any, kind: str) -> int:
    """Run a bulk call; its counts on stdout (JSON), a sentence on stderr, the exit code."""
    try:
        summary = call()
    except KeyboardInterrupt:
        message = f"blip: {kind}: interrupted; the shards written are kept: run the same command to resume"
        print(message, file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, OSError, RuntimeError, TypeError, ImportError) as err:
        print(f"blip: error: {command_line_message(err)}", file=sys.stderr)
        return EXIT_ERROR
    counts = summary.counts
    print(json.dumps(counts))
    print(f"blip: {kind}: {_sentence(counts, summary)}", file=sys.stderr)
    return EXIT_SOME_FAILED if counts.get("failed") else EXIT_OK


def _sentence(counts: dict[str, int], summary: Any) -> str:
    done = "already complete, nothing to do; " if summary.processed == 0 and counts.get("records") else ""
    records = counts.get("records", 0)
    text = f"{done}{records} record{'' if records == 1 else 's'}, {counts.get('failed', 0)} unusable"
    if "captions_kept" in counts:
        text += (
            f"; kept {counts['web_kept']} of {counts['web_texts']} web texts and "
            f"{counts['captions_kept']} of {counts['captions']} synthetic captions"
        )
    return f"{text}; output in {summary.out_dir}"
