"""`blip caption` and `blip vqa`: generated text per image, with the generation options of `generate`."""

from __future__ import annotations

import argparse
from typing import Any

from blip_core.cli.bulk import add_bulk_arguments
from blip_core.cli.common import Writer, add_common_arguments, batches, pipeline_for, progress

TASKS = {"caption": "image-to-text", "vqa": "visual-question-answering"}
FIELDS = {"caption": ["file", "caption"], "vqa": ["file", "question", "answer"]}
RANKED_FIELDS = ["file", "question", "answer", "score"]  # `blip vqa --answers`: one record per ranked answer
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


def add_parsers(commands: Any) -> None:
    caption = commands.add_parser("caption", help="caption images")
    add_common_arguments(caption)
    caption.add_argument("--prompt", help="text the caption starts with, e.g. 'a picture of'")
    caption.add_argument(
        "--out", help="a dataset (folder, Parquet, WebDataset .tar) captioned into shards in this folder, resumably"
    )
    add_generation_arguments(caption)
    add_bulk_arguments(caption)
    vqa = commands.add_parser("vqa", help="answer a question about images")
    add_common_arguments(vqa)
    vqa.add_argument("-q", "--question", required=True)
    vqa.add_argument(
        "--answers", help="rank these candidate answers (a JSON list or one per line); --top-k: how many to show"
    )
    vqa.add_argument("--protocol", choices=["transformers", "original"], default="transformers")
    add_generation_arguments(vqa)


def add_generation_arguments(sub: argparse.ArgumentParser) -> None:
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


def generation_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options given on the command line (0 is a value: `--seed 0`, `--top-k 0`; an absent flag is not)."""
    values = {name: getattr(args, name, None) for name in GENERATION_OPTIONS}
    return {name: value for name, value in values.items() if value is not None and value is not False}


def fields(args: argparse.Namespace) -> list[str]:
    """The record fields of this run: ranked answers (`blip vqa --answers`) add their score."""
    return RANKED_FIELDS if getattr(args, "answers", None) else FIELDS[args.command]


def ranking_options(args: argparse.Namespace) -> dict[str, Any]:
    """`blip vqa`'s pipeline options beside the question: the candidates and `top_k` when ranking, the protocol.

    Raises UsageError for generation options with --answers, and for --top-k without --answers or --do-sample."""
    from blip_core.cli.common import UsageError
    from blip_core.tasks.vqa_annotations import read_answer_list

    options: dict[str, Any] = {"protocol": args.protocol}
    if not args.answers:
        if args.top_k is not None and not args.do_sample:  # it would be silently ignored: say what it means
            raise UsageError(
                "--top-k is the number of ranked answers with --answers, or a sampling option with --do-sample; "
                "greedy and beam search ignore it"
            )
        return options
    generation = sorted(set(generation_options(args)) - {"top_k"})
    if generation:
        raise UsageError(f"--answers ranks candidates: generation options {generation} do not apply")
    if args.top_k is not None and args.top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {args.top_k}")
    return {**options, "candidate_answers": read_answer_list(args.answers), "top_k": args.top_k or 1}


def run(args: argparse.Namespace, writer: Writer, images: list[tuple[str, Any]]) -> None:
    if args.command == "vqa" and args.answers:
        return _run_ranking(args, writer, images)
    extra = {"prompt": args.prompt} if args.command == "caption" else {"question": args.question}
    if args.command == "vqa" and ranking_options(args)["protocol"] != "transformers":  # also refuses a lone --top-k
        extra["protocol"] = args.protocol
    pipe = pipeline_for(args, TASKS[args.command])
    for chunk in progress(batches(images, args.batch_size), args.progress):
        results = pipe([image for _, image in chunk], **extra, **generation_options(args))
        for (name, _), result in zip(chunk, results, strict=True):
            if args.command == "caption":
                writer.write({"file": name, "caption": result[0]["generated_text"]})
            else:
                writer.write({"file": name, "question": args.question, "answer": result[0]["answer"]})


def _run_ranking(args: argparse.Namespace, writer: Writer, images: list[tuple[str, Any]]) -> None:
    """`blip vqa --answers`: the `--top-k` best candidates per image (default 1), best first, with their scores."""
    options = ranking_options(args)
    pipe = pipeline_for(args, TASKS[args.command])
    for chunk in progress(batches(images, args.batch_size), args.progress):
        results = pipe([image for _, image in chunk], question=args.question, **options)
        for (name, _), result in zip(chunk, results, strict=True):
            for record in result:
                writer.write({"file": name, "question": args.question, **record})
