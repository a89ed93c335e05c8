"""`blip eval retrieval`: (being written for issue 15)."""

from __future__ import annotations

import argparse

HELP = "retrieval evaluation"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `blip eval retrieval`."""


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("blip eval retrieval is not written yet")
