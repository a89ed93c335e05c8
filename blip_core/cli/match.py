"""`blip match`: image-text matching, the ITM probability and the ITC cosine of each image with each text."""

from __future__ import annotations

import argparse
from typing import Any

from blip_core.cli.common import Writer, add_common_arguments, pipeline_for, progress

FIELDS = {"match": ["file", "text", "itm_score", "itc_score"]}


def add_parsers(commands: Any) -> None:
    match = commands.add_parser("match", help="image-text matching: ITM probability and ITC cosine")
    add_common_arguments(match)
    match.add_argument("-t", "--text", nargs="+", required=True)


def run(args: argparse.Namespace, writer: Writer, images: list[tuple[str, Any]]) -> None:
    pipe = pipeline_for(args, "image-text-matching")
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
