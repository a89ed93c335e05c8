"""The `blip` command: caption, answer, match and embed images from the shell, in PyTorch or TensorFlow.

    blip caption photos/ --format jsonl
    blip vqa cat.jpg -q "how many cats are there?"
    blip match cat.jpg -t "a cat" "a dog"
    blip embed cat.jpg dog.jpg        blip embed --text "a cat" "a dog"

Exit codes: 0 every input done, 1 some inputs failed (reported on stderr and skipped),
2 nothing could be done: a usage, model or network problem, or no image to work on (an empty
folder, or no input readable as an image); one line on stderr says which, and stdout stays empty.

TensorFlow's, XLA's and absl's C++ log lines (oneDNN notices, CPU-feature and CUDA probing) are
kept off stderr unless `--verbose` is given.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from blip_core.demo import add_demo_arguments
from blip_core.image_loading import to_pil_or_array
from blip_core.native_logs import quiet_native_logs

EXIT_OK, EXIT_SOME_FAILED, EXIT_ERROR = 0, 1, 2
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
TASK_OF_COMMAND = {
    "caption": "image-to-text",
    "vqa": "visual-question-answering",
    "match": "image-text-matching",
    "embed": "image-text-matching",
}
GENERATION_OPTIONS = (
    "max_new_tokens",
    "min_new_tokens",
    "num_beams",
    "do_sample",
    "top_k",
    "top_p",
    "temperature",
    "repetition_penalty",
    "length_penalty",
    "no_repeat_ngram_size",
    "num_beam_groups",
    "diversity_penalty",
    "typical_p",
    "seed",
)


MESSAGE_LIMIT = 600  # characters of an error line; a wrong checkpoint lists hundreds of tensors


def one_line(error: BaseException) -> str:
    """An error as one line of at most `MESSAGE_LIMIT` characters (whitespace collapsed, the start kept)."""
    line = " ".join(str(error).split())
    return line if len(line) <= MESSAGE_LIMIT else line[: MESSAGE_LIMIT - 3] + "..."


class UsageError(ValueError):
    """A problem with the command line itself."""


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


def _generation_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options given on the command line (0 is a value: `--seed 0`, `--top-k 0`; an absent flag is not)."""
    values = {name: getattr(args, name, None) for name in GENERATION_OPTIONS}
    return {name: value for name, value in values.items() if value is not None and value is not False}


def _pipeline(args: argparse.Namespace, task: str):
    from blip_core.pipelines import pipeline

    return pipeline(
        task,
        model=args.model,
        framework=args.framework,
        batch_size=args.batch_size,
        device=args.device,
        dtype=args.dtype,
    )


def run_generation(args: argparse.Namespace, writer: Writer, images: list[tuple[str, Any]]) -> None:
    pipe = _pipeline(args, TASK_OF_COMMAND[args.command])
    extra = {"prompt": args.prompt} if args.command == "caption" else {"question": args.question}
    for chunk in progress(
        [images[i : i + args.batch_size] for i in range(0, len(images), args.batch_size)], args.progress
    ):
        results = pipe([image for _, image in chunk], **extra, **_generation_options(args))
        for (name, _), result in zip(chunk, results, strict=True):
            if args.command == "caption":
                writer.write({"file": name, "caption": result[0]["generated_text"]})
            else:
                writer.write({"file": name, "question": args.question, "answer": result[0]["answer"]})


def run_match(args: argparse.Namespace, writer: Writer, images: list[tuple[str, Any]]) -> None:
    pipe = _pipeline(args, "image-text-matching")
    for name, image in progress(images, args.progress):
        for result in pipe(image, text=args.text):
            writer.write(
                {
                    "file": name,
                    "text": result["text"],
                    "itm_score": result["itm_score"],
                    "itc_score": result["itc_score"],
                }
            )


def run_embed(args: argparse.Namespace, writer: Writer, images: list[tuple[str, Any]]) -> None:
    from blip_core.embeddings import embed_images, embed_texts

    pipe = _pipeline(args, "image-text-matching")
    if args.text:
        for text, vector in zip(args.text, embed_texts(pipe, args.text), strict=True):
            writer.write({"input": text, "embedding": [round(float(v), 6) for v in vector]})
    for chunk in progress(
        [images[i : i + args.batch_size] for i in range(0, len(images), args.batch_size)], args.progress
    ):
        for (name, _), vector in zip(chunk, embed_images(pipe, [image for _, image in chunk]), strict=True):
            writer.write({"input": name, "embedding": [round(float(v), 6) for v in vector]})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blip", description="BLIP in PyTorch or TensorFlow, from the shell.")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str, images_required: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("images", nargs="+" if images_required else "*", help="image files, folders or URLs")
        sub.add_argument("--model", help="a folder or Hub id (default: the embedded demo model, else Salesforce's)")
        sub.add_argument("--framework", choices=["pt", "tf"], help="default: PyTorch when installed")
        sub.add_argument("--device", help="e.g. cpu, cuda, /GPU:0")
        sub.add_argument(
            "--dtype", choices=["float32", "bfloat16", "float16", "auto"], default="float32", help="weights dtype"
        )
        sub.add_argument("--batch-size", type=int, default=8)
        sub.add_argument("--format", choices=["text", "jsonl", "csv"], default="text")
        sub.add_argument("--progress", action="store_true", help="show progress on stderr")
        sub.add_argument(
            "--verbose", action="store_true", help="let TensorFlow's and XLA's own log lines through to stderr"
        )
        return sub

    def generation(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--max-new-tokens", type=int)
        sub.add_argument("--min-new-tokens", type=int)
        sub.add_argument("--num-beams", type=int)
        sub.add_argument("--do-sample", action="store_true")
        sub.add_argument("--top-k", type=int)
        sub.add_argument("--top-p", type=float)
        sub.add_argument("--temperature", type=float)
        sub.add_argument("--repetition-penalty", type=float)
        sub.add_argument("--length-penalty", type=float)
        sub.add_argument("--no-repeat-ngram-size", type=int, help="never repeat an n-gram of this size")
        sub.add_argument("--num-beam-groups", type=int, help="diverse beam search: beams split into groups")
        sub.add_argument("--diversity-penalty", type=float, help="with --num-beam-groups")
        sub.add_argument("--typical-p", type=float, help="typical sampling (with --do-sample)")
        sub.add_argument("--seed", type=int)

    caption = command("caption", "caption images")
    caption.add_argument("--prompt", help="text the caption starts with, e.g. 'a picture of'")
    generation(caption)
    vqa = command("vqa", "answer a question about images")
    vqa.add_argument("-q", "--question", required=True)
    generation(vqa)
    match = command("match", "image-text matching: ITM probability and ITC cosine")
    match.add_argument("-t", "--text", nargs="+", required=True)
    embed = command("embed", "image and/or text embeddings (ITC space)", images_required=False)
    embed.add_argument("--text", nargs="+")
    demo = commands.add_parser("demo", help="caption, answer and match a few images in both frameworks")
    add_demo_arguments(demo)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"blip: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with quiet_native_logs(not args.verbose), warnings.catch_warnings():
        warnings.showwarning = _one_line_warning  # a sentence for the user, not a source location
        return _main(args)


def _main(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from blip_core.demo import run as demo

        return demo(args)
    try:
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
        fields = {
            "caption": ["file", "caption"],
            "vqa": ["file", "question", "answer"],
            "match": ["file", "text", "itm_score", "itc_score"],
            "embed": ["input", "embedding"],
        }[args.command]
        writer = Writer(args.format, fields)
        runner = {"caption": run_generation, "vqa": run_generation, "match": run_match, "embed": run_embed}[
            args.command
        ]
        runner(args, writer, images)
    except (ValueError, OSError, RuntimeError, TypeError, ImportError) as err:
        print(f"blip: error: {one_line(err)}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_SOME_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
