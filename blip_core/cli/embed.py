"""`blip embed`: L2-normalised image and/or text embeddings in the ITC space, one record per input."""

from __future__ import annotations

import argparse
from typing import Any

from blip_core.cli.common import Writer, add_common_arguments, batches, pipeline_for, progress

FIELDS = {"embed": ["input", "embedding"]}


def add_parsers(commands: Any) -> None:
    embed = commands.add_parser("embed", help="image and/or text embeddings (ITC space)")
    add_common_arguments(embed, images_required=False)
    embed.add_argument("--text", nargs="+")


def run(args: argparse.Namespace, writer: Writer, images: list[tuple[str, Any]]) -> None:
    from blip_core.tasks.embeddings import embed_images, embed_texts

    pipe = pipeline_for(args, "image-text-matching")
    if args.text:
        for text, vector in zip(args.text, embed_texts(pipe, args.text), strict=True):
            writer.write({"input": text, "embedding": [round(float(v), 6) for v in vector]})
    for chunk in progress(batches(images, args.batch_size), args.progress):
        for (name, _), vector in zip(chunk, embed_images(pipe, [image for _, image in chunk]), strict=True):
            writer.write({"input": name, "embedding": [round(float(v), 6) for v in vector]})
