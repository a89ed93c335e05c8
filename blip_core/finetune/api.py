"""`finetune(...)`: the Python face of `blip finetune`; it reads the data, then hands the run to the chosen
framework's trainer (`blip_torch.finetuning`, `blip_tf.finetuning`), imported only then."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

from blip_core.finetune.data import read_examples
from blip_core.finetune.evaluation import HeldOutEvaluator
from blip_core.processing.processor import BlipProcessor
from blip_core.training.options import FinetuneOptions

TRAINERS = {"pt": "blip_torch.finetuning", "tf": "blip_tf.finetuning"}


def finetune(
    task: str,
    model: str | os.PathLike,
    data: str | os.PathLike | list,
    output_dir: str | os.PathLike,
    *,
    framework: str = "pt",
    eval_data: str | os.PathLike | list | None = None,
    on_step: Callable[[int, float], None] | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Fine-tune `model` (a Hub id or folder) for `task` ("caption", "vqa", "retrieval") on `data`, writing
    checkpoints and the final model to `output_dir`; `options` are `FinetuneOptions` fields (`max_steps` or
    `epochs`, `batch_size` (global), `learning_rate`, ...). Runs data-parallel when started by `torchrun`
    (PyTorch) or with `devices=N` (TensorFlow). `on_step(step, loss)` is called by the first worker after each
    optimizer step. Returns the first worker's log records (`log.jsonl`'s lines).

    Raises ValueError for a bad option or data, FileExistsError for a non-empty `output_dir` without
    `resume`/`force`, FileNotFoundError for missing data, ImportError naming the extra a framework needs.
    """
    settings = FinetuneOptions(
        task=task, model=str(model), data=data, output_dir=str(output_dir), framework=framework,
        eval_data=eval_data, **options,
    ).check()  # fmt: skip
    examples = read_examples(task, data)
    evaluator = None
    if eval_data is not None:
        processor = BlipProcessor.from_pretrained(settings.model)
        evaluator = HeldOutEvaluator(read_examples(task, eval_data), processor, framework, settings.prompt)
    try:
        trainer = importlib.import_module(TRAINERS[framework])
    except ImportError as error:
        framework_module = (error.name or "").split(".")[0] in ("torch", "tensorflow", "keras")
        if not framework_module:
            raise
        extra = "torch" if framework == "pt" else "tf"
        raise ImportError(
            f"fine-tuning with framework={framework!r} needs {error.name}: pip install 'blip-dual[{extra}]'"
        ) from error
    return trainer.finetune(settings, examples, evaluator, on_step)
