"""The `blip` command: caption, answer, match and embed images from the shell, in PyTorch or TensorFlow.

    blip caption photos/ --format jsonl
    blip vqa cat.jpg -q "how many cats are there?"
    blip match cat.jpg -t "a cat" "a dog"
    blip embed cat.jpg dog.jpg        blip embed --text "a cat" "a dog"
    blip caption shards/ --out captions/        blip capfilt web.parquet --out filtered/

Exit codes: 0 every input done, 1 some inputs failed (reported on stderr and skipped),
2 nothing could be done: a usage, model or network problem, or no image to work on (an empty
folder, or no input readable as an image); one line on stderr says which, and stdout stays empty.

TensorFlow's, XLA's and absl's C++ log lines (oneDNN notices, CPU-feature and CUDA probing) are
kept off stderr unless `--verbose` is given.

Each sub-command is a module of this package with `add_parsers(commands)` and either `FIELDS` (commands that
write one record per input image: `run(args, writer, images)`) or `COMMANDS` (commands with their own flow:
`run(args) -> exit code`); a new one is added to `SUB_COMMANDS` below.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn

from blip_core.cli import bulk, demo, embed, evaluate, finetune, generate, index, match, search
from blip_core.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_SOME_FAILED,
    IMAGE_SUFFIXES,
    UsageError,
    Writer,
    empty_folders,
    expand_inputs,
    load_images,
    one_line,
)
from blip_core.io.native_logs import quiet_native_logs

# in the order `blip --help` lists them
SUB_COMMANDS = (generate, bulk, match, embed, index, search, evaluate, finetune, demo)
MODEL_COMMANDS = {name: module for module in SUB_COMMANDS for name in getattr(module, "FIELDS", ())}
OWN_FLOW_COMMANDS = {name: module for module in SUB_COMMANDS for name in getattr(module, "COMMANDS", ())}


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors are one line on stderr (exit 2) naming `--help`, not the whole usage
    text; sub-command parsers are made of the same class."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="blip", description="BLIP in PyTorch or TensorFlow, from the shell.")
    commands = parser.add_subparsers(dest="command", required=True)
    for module in SUB_COMMANDS:
        module.add_parsers(commands)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"blip: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `blip` with `argv` (default: the command line); returns the exit code."""
    args = _parser().parse_args(argv)
    with quiet_native_logs(not args.verbose), warnings.catch_warnings():
        warnings.showwarning = _one_line_warning  # a sentence for the user, not a source location
        return _main(args)


def _main(args: argparse.Namespace) -> int:
    if args.command in OWN_FLOW_COMMANDS:
        return OWN_FLOW_COMMANDS[args.command].run(args)
    if args.command == "caption" and args.out is not None:  # a dataset, through the bulk engine
        return bulk.run_caption(args, generate.generation_options(args))
    try:
        if args.command == "caption":
            bulk.check_without_out(args)
        if args.command == "embed" and not args.images and not args.text:
            raise UsageError("embed needs images or --text")
        if args.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
        texts_only = args.command == "embed" and bool(args.text)
        names, empty = expand_inputs(args.images), empty_folders(args.images)
        looked_for = f"looked for {', '.join(sorted(IMAGE_SUFFIXES))}"
        if empty and not names and not texts_only:
            raise UsageError(f"no image files in {', '.join(empty)} ({looked_for})")
        for folder in empty:
            print(f"blip: note: no image files in {folder} ({looked_for})", file=sys.stderr)
        images, failed = load_images(names)
        for name, reason in failed:
            print(f"blip: skipped {name}: {reason}", file=sys.stderr)
        if not images and not texts_only:
            raise UsageError("no readable images among the inputs")
        module = MODEL_COMMANDS[args.command]
        fields = module.fields(args) if hasattr(module, "fields") else module.FIELDS[args.command]
        module.run(args, Writer(args.format, fields), images)
    except (ValueError, OSError, RuntimeError, TypeError, ImportError) as err:
        print(f"blip: error: {one_line(err)}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_SOME_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
