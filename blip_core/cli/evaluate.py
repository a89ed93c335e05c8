"""`blip eval caption|vqa|retrieval`: the paper's evaluation protocols on a folder of images and its annotations.

Each task is a module of this package (`eval_caption`, `eval_vqa`, `eval_retrieval`) with `add_arguments(parser)`
and `run(args) -> exit code`.
"""

from __future__ import annotations

import argparse
from typing import Any

from blip_core.cli import eval_caption, eval_retrieval, eval_vqa
from blip_core.cli.common import add_verbose_argument

COMMANDS = ("eval",)
TASKS = {"caption": eval_caption, "vqa": eval_vqa, "retrieval": eval_retrieval}


def add_parsers(commands: Any) -> None:
    evaluate = commands.add_parser("eval", help="evaluate captioning, VQA or retrieval as the BLIP paper did")
    tasks = evaluate.add_subparsers(dest="eval_task", required=True)
    for name, module in TASKS.items():
        sub = tasks.add_parser(name, help=module.HELP)
        module.add_arguments(sub)
        if not any(action.dest == "verbose" for action in sub._actions):
            add_verbose_argument(sub)


def run(args: argparse.Namespace) -> int:
    return TASKS[args.eval_task].run(args)
