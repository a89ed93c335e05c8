"""`blip eval vqa`: (being written for issue 15)."""

from __future__ import annotations

import argparse

HELP = "vqa evaluation"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `blip eval vqa`."""


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("blip eval vqa is not written yet")
