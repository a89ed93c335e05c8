"""`blip eval caption`: (being written for issue 15)."""

from __future__ import annotations

import argparse

HELP = "caption evaluation"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `blip eval caption`."""


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("blip eval caption is not written yet")
