"""`blip eval vqa`: VQA accuracy (the official metric, `blip_core.tasks.vqa_accuracy`) of answers generated, or
ranked from a candidate list as the BLIP paper did, on an annotated image folder.

    blip eval vqa --annotations vqa_val.jsonl --images val2014/ --mode rank --answers answer_list.json \\
        --protocol original

Annotation formats: `blip_core.tasks.vqa_annotations`. Writes one JSON object to stdout: the accuracy (percent, as
the official tool reports it), the number of questions, the mode and protocol; `--predictions FILE` also keeps
every answer as JSON lines (written atomically; an existing file is kept unless `--overwrite`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from blip_core.cli.common import EXIT_ERROR, EXIT_OK, UsageError, add_runtime_arguments, batches, one_line, progress

HELP = "VQA accuracy of generated or ranked answers, as the BLIP paper"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `blip eval vqa`."""
    parser.add_argument("--annotations", required=True, help="JSON lines, a JSON list, or VQA v2 annotations")
    parser.add_argument("--questions", help="the VQA v2 questions file, when --annotations is a VQA v2 file")
    parser.add_argument("--images", required=True, help="the folder the annotations' image paths are relative to")
    parser.add_argument("--mode", choices=["generate", "rank"], default="generate")
    parser.add_argument("--answers", help="candidate answers for --mode rank: a JSON list or one per line")
    parser.add_argument("--protocol", choices=["transformers", "original"], default="transformers")
    parser.add_argument(
        "--normalize-references",
        action="store_true",
        help="normalise the references as the predictions (for raw answers; VQA v2's are already normalised)",
    )
    parser.add_argument("--predictions", help="also write every question's answer here (JSON lines)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --predictions file")
    add_runtime_arguments(parser, "a VQA checkpoint folder or Hub id (default: the embedded demo model)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--progress", action="store_true", help="show progress on stderr")


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the metrics; 2 with one line on stderr when nothing could be done."""
    try:
        metrics = _evaluate(args)
    except (ValueError, OSError, RuntimeError, TypeError, ImportError) as err:
        print(f"blip: error: {one_line(err)}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(metrics))
    return EXIT_OK


def _checked(args: argparse.Namespace) -> list[str] | None:
    """The candidate answers (rank mode), after checking the options that need no file."""
    from blip_core.tasks.vqa_annotations import read_answer_list

    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    if not Path(args.images).is_dir():
        raise UsageError(f"--images {args.images!r} is not a folder")
    if args.predictions and Path(args.predictions).exists() and not args.overwrite:
        raise UsageError(f"--predictions {args.predictions!r} exists; pass --overwrite to replace it")
    if args.mode == "rank":
        if not args.answers:
            raise UsageError("--mode rank needs --answers (the candidate answer list)")
        return read_answer_list(args.answers)
    if args.answers:
        raise UsageError("--answers is for --mode rank")
    return None


def _evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from blip_core.cli.common import pipeline_for
    from blip_core.processing.image_loading import to_pil_or_array
    from blip_core.tasks.vqa_accuracy import vqa_accuracy
    from blip_core.tasks.vqa_annotations import read_vqa_annotations

    candidates = _checked(args)
    questions = read_vqa_annotations(args.annotations, args.images, args.questions)
    pipe = pipeline_for(args, "visual-question-answering")
    options: dict[str, Any] = {"protocol": args.protocol}
    if candidates is not None:
        options.update(candidate_answers=candidates, top_k=1)
    root, predictions = Path(args.images), []
    for chunk in progress(batches(questions, args.batch_size), args.progress):
        pairs = [{"image": to_pil_or_array(str(root / item.image)), "question": item.question} for item in chunk]
        results = pipe(pairs, **options)
        predictions.extend(result[0]["answer"] for result in results)
    accuracy = vqa_accuracy(predictions, [item.answers for item in questions], args.normalize_references)
    if args.predictions:
        _write_predictions(args.predictions, questions, predictions)
    return {
        "vqa_accuracy": round(100.0 * accuracy, 2),
        "questions": len(questions),
        "mode": args.mode,
        "protocol": args.protocol,
    }


def _write_predictions(path: str, questions: list, predictions: list[str]) -> None:
    from blip_core.io.atomic import atomic_write_text

    lines = [
        json.dumps({"question_id": q.question_id, "image": q.image, "question": q.question, "answer": answer})
        for q, answer in zip(questions, predictions, strict=True)
    ]
    atomic_write_text(path, "\n".join(lines) + "\n")
