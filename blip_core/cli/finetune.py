"""`blip finetune caption|vqa|retrieval`: fine-tune a checkpoint on a dataset, in PyTorch or Keras, on one
process or data-parallel.

    blip finetune caption --model Salesforce/blip-image-captioning-base --data photos/ --output-dir out/ \\
        --max-steps 1000 --batch-size 32 --learning-rate 1e-5 --eval-data held-out/ --eval-steps 200
    torchrun --nproc_per_node 8 -m blip_core.cli finetune retrieval ... --gather-negatives     # DDP, 8 workers
    blip finetune caption ... --framework tf --devices 2                                        # MirroredStrategy
    blip finetune caption ... --resume                                 # continue from the newest checkpoint

Exit codes: 0 trained; 2 nothing trained (a usage, data, model or output-folder problem: one line on stderr);
130 interrupted (the newest checkpoint is complete: --resume continues from it). Under torchrun, torchrun's own exit
code (1 when a worker failed) replaces these; a problem every worker meets is printed once, by worker 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from blip_core.cli.common import EXIT_ERROR, EXIT_OK, add_verbose_argument, one_line
from blip_core.training.options import OPTIMIZERS, SCHEDULES, TASKS

COMMANDS = ("finetune",)
EXIT_INTERRUPTED = 130


def add_parsers(commands: Any) -> None:
    sub = commands.add_parser("finetune", help="fine-tune a checkpoint (PyTorch DDP under torchrun, or Keras)")
    sub.add_argument("task", choices=TASKS)
    sub.add_argument("--model", required=True, help="the checkpoint to start from: a folder or Hub id")
    sub.add_argument(
        "--data", required=True, nargs="+", help="a folder with captions.jsonl/.csv (VQA: questions.jsonl), "
        "Parquet files or WebDataset .tar shards",
    )  # fmt: skip
    sub.add_argument("--output-dir", required=True, help="checkpoints and the final model go here")
    sub.add_argument("--eval-data", nargs="+", help="held-out data, in the same format, for --eval-steps")
    sub.add_argument("--framework", choices=["pt", "tf"], default="pt")
    length = sub.add_mutually_exclusive_group(required=True)
    length.add_argument("--max-steps", type=int, help="optimizer steps to train")
    length.add_argument("--epochs", type=float, help="passes over the data (instead of --max-steps)")
    sub.add_argument("--batch-size", type=int, default=8, help="the GLOBAL batch: split across workers (default 8)")
    sub.add_argument("--gradient-accumulation-steps", type=int, default=1, help="micro-batches per optimizer step")
    sub.add_argument("--learning-rate", type=float, default=1e-5)
    sub.add_argument("--lr-scheduler-type", choices=SCHEDULES, default="cosine")
    sub.add_argument("--warmup-steps", type=int, default=0)
    sub.add_argument("--weight-decay", type=float, default=0.05, help="on weight matrices (default 0.05)")
    sub.add_argument("--optimizer", choices=OPTIMIZERS, default="adamw")
    sub.add_argument("--bf16", action="store_true", help="bfloat16 autocast (PyTorch)")
    sub.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations: less memory")
    sub.add_argument("--seed", type=int, default=42)
    sub.add_argument("--eval-steps", type=int, help="evaluate on --eval-data every N steps (and at the end)")
    sub.add_argument("--save-steps", type=int, default=500, help="checkpoint every N steps (and at the end)")
    sub.add_argument("--save-total-limit", type=int, help="keep only the newest N checkpoints (default: all)")
    sub.add_argument("--logging-steps", type=int, default=10)
    sub.add_argument("--label-smoothing", type=float, default=0.1, help="caption/VQA (default 0.1, the paper's)")
    sub.add_argument("--prompt", help="caption: a prompt kept out of the loss, e.g. 'a picture of'")
    sub.add_argument("--max-length", type=int, default=40, help="text tokens kept (default 40)")
    sub.add_argument("--gather-negatives", action="store_true", help="retrieval: ITC/ITM negatives from every worker")
    sub.add_argument("--devices", type=int, help="TensorFlow: data-parallel replicas (MirroredStrategy)")
    sub.add_argument("--device", help="PyTorch: cpu or cuda (default: each worker's GPU when there is one)")
    sub.add_argument("--resume", action="store_true", help="continue from --output-dir's newest checkpoint")
    sub.add_argument("--force", action="store_true", help="start over in a non-empty --output-dir")
    sub.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_verbose_argument(sub)


OPTION_NAMES = (
    "max_steps", "epochs", "batch_size", "gradient_accumulation_steps", "learning_rate", "lr_scheduler_type",
    "warmup_steps", "weight_decay", "optimizer", "bf16", "gradient_checkpointing", "seed", "eval_steps",
    "save_steps", "save_total_limit", "logging_steps", "label_smoothing", "prompt", "max_length",
    "gather_negatives", "devices", "device", "resume", "force",
)  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """`blip finetune`: trains; prints the last log record (and held-out metrics) as JSON on stdout."""
    from blip_core.finetune.api import finetune

    options = {name: getattr(args, name) for name in OPTION_NAMES}
    data = args.data[0] if len(args.data) == 1 else args.data
    eval_data = None if not args.eval_data else (args.eval_data[0] if len(args.eval_data) == 1 else args.eval_data)
    try:
        history = finetune(
            args.task, args.model, data, args.output_dir, framework=args.framework, eval_data=eval_data,
            progress=not args.no_progress, **options,
        )  # fmt: skip
    except KeyboardInterrupt:
        print("blip finetune: interrupted; --resume continues from the newest checkpoint", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (OSError, ValueError, TypeError, ImportError, RuntimeError) as error:
        if not getattr(error, "reported_by_worker_0", False):  # under torchrun, one line for the whole job
            print(f"blip finetune: {one_line(error)}", file=sys.stderr)
        return EXIT_ERROR
    if history:
        print(json.dumps({key: value for record in history for key, value in record.items()}))
    return EXIT_OK
