"""`blip demo`: the embedded demo models captioning, answering and matching in both frameworks."""

from __future__ import annotations

import argparse
from typing import Any

from blip_core.demo.show import add_demo_arguments

COMMANDS = ("demo",)


def add_parsers(commands: Any) -> None:
    demo = commands.add_parser("demo", help="caption, answer and match a few images in both frameworks")
    add_demo_arguments(demo)


def run(args: argparse.Namespace) -> int:
    from blip_core.demo.show import run as show

    return show(args)
