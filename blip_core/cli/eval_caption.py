"""`blip eval caption`: caption a folder of images with the BLIP paper's protocol and, given reference captions,
score them (BLEU-4, CIDEr, exact match; `blip_core.tasks.caption_metrics`).

    blip eval caption --images val2014/ --annotations coco_karpathy_test.json --out captions.jsonl \\
        --model ./blip-captioning-base --protocol original

The paper's protocol: the prompt "a picture of ", beam search with 3 beams, `min_length` 5 and `max_length` 20
(both counting the whole row: [DEC], the prompt's tokens and the new ones), no repetition penalty, and the prompt
cut from the decoded caption. `--protocol original` also scores beams with the original's length rule
(`beam_length_rule="whole_sequence"`, its `transformers` 4.15); `transformers` (the default) keeps 4.57's.
Writes one JSON object to stdout: the images captioned, the protocol and prompt, and with `--annotations` the
metrics and two counts (`unannotated_images`: in the folder, not scored; `missing_images`: annotated, not found);
`--out FILE` keeps the captions as JSON lines {"image", "caption"} (written atomically; an existing file is kept
unless `--overwrite`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from blip_core.cli.common import EXIT_ERROR, EXIT_OK, UsageError, add_runtime_arguments, batches, one_line, progress

HELP = "caption a folder with the paper's protocol; BLEU-4 and CIDEr against references"
PAPER_PROMPT = "a picture of "
PROTOCOLS = ("transformers", "original")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `blip eval caption`."""
    parser.add_argument("--images", required=True, help="a folder of images (searched recursively)")
    parser.add_argument(
        "--annotations", help="reference captions: a Karpathy-style list of {image, caption: [...]} or COCO captions"
    )
    parser.add_argument("--out", help="write the captions here (JSON lines: image, caption)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="transformers")
    parser.add_argument("--prompt", default=PAPER_PROMPT, help=f"default {PAPER_PROMPT!r}; '' for none")
    add_runtime_arguments(parser, "a captioning checkpoint folder or Hub id (default: the embedded demo model)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--progress", action="store_true", help="show progress on stderr")


def generation_options(protocol: str) -> dict[str, Any]:
    """`generate` options of the paper's caption protocol; ValueError for an unknown protocol."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    options: dict[str, Any] = {"num_beams": 3, "max_length": 20, "min_length": 5, "repetition_penalty": 1.0}
    if protocol == "original":
        options["beam_length_rule"] = "whole_sequence"
    return options


def without_prompt(text: str, prompt: str) -> str:
    """The caption after the prompt, as the original cut it (`caption[len(prompt):]`), when the decoded text
    starts with the prompt (spaces around it ignored); otherwise the whole text, stripped."""
    stripped = prompt.strip()
    text = text.strip()
    if stripped and text.startswith(stripped):
        return text[len(stripped) :].strip()
    return text


def run(args: argparse.Namespace) -> int:
    """Caption, score and print the summary; 2 with one line on stderr when nothing could be done."""
    try:
        summary = _evaluate(args)
    except (ValueError, OSError, RuntimeError, TypeError, ImportError) as err:
        print(f"blip: error: {one_line(err)}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(summary))
    return EXIT_OK


def _checked(args: argparse.Namespace) -> list[str]:
    """The images (paths relative to --images), after checking the options."""
    from blip_core.cli.common import expand_inputs

    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    if not args.out and not args.annotations:
        raise UsageError("nothing to report: give --annotations (metrics) and/or --out (the captions)")
    if not Path(args.images).is_dir():
        raise UsageError(f"--images {args.images!r} is not a folder")
    if args.out and Path(args.out).exists() and not args.overwrite:
        raise UsageError(f"--out {args.out!r} exists; pass --overwrite to replace it")
    names = [Path(name).relative_to(args.images).as_posix() for name in expand_inputs([args.images])]
    if not names:
        raise UsageError(f"no image files in {args.images!r}")
    return names


def _evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from blip_core.cli.common import pipeline_for
    from blip_core.io.atomic import atomic_write_text
    from blip_core.processing.image_loading import to_pil_or_array
    from blip_core.tasks import caption_metrics

    names = _checked(args)
    references = caption_metrics.read_caption_references(args.annotations) if args.annotations else None
    counts: dict[str, int] = {}
    if references is not None:
        keys = caption_metrics.match_references(names, references)
        if not keys:
            raise ValueError(f"no image of {args.images!r} is named in {args.annotations!r}")
        counts = {"unannotated_images": len(names) - len(keys), "missing_images": len(references) - len(keys)}
        names = [name for name in names if name in keys]  # only the annotated images are captioned and scored
    pipe, options = pipeline_for(args, "image-to-text"), generation_options(args.protocol)
    prompt = args.prompt or None
    captions: dict[str, str] = {}
    for chunk in progress(batches(names, args.batch_size), args.progress):
        images = [to_pil_or_array(str(Path(args.images) / name)) for name in chunk]
        results = pipe(images, prompt=prompt, generate_kwargs=options)
        for name, result in zip(chunk, results, strict=True):
            captions[name] = without_prompt(result[0]["generated_text"], args.prompt)
    if args.out:
        records = [{"image": name, "caption": text} for name, text in captions.items()]
        atomic_write_text(Path(args.out), caption_metrics.captions_jsonl(records))
    summary: dict[str, Any] = {"images": len(captions), **counts, "protocol": args.protocol, "prompt": args.prompt}
    if references is not None:
        scored = {keys[name]: text for name, text in captions.items()}
        summary.update(caption_metrics.caption_scores(scored, references))
    return summary
