"""The options of a fine-tuning run (`blip finetune`, `blip_core.finetune.finetune`), checked once, shared by the
PyTorch and Keras trainers and stored in every checkpoint so that `--resume` can refuse a changed run.

Names follow `transformers.TrainingArguments` where one exists (`max_steps`, `learning_rate`, `lr_scheduler_type`,
`warmup_steps`, `weight_decay`, `gradient_accumulation_steps`, `eval_steps`, `save_steps`, `logging_steps`, `bf16`,
`gradient_checkpointing`, `seed`), except `batch_size`, which is the GLOBAL batch of one optimizer step: split
across the workers, then into `gradient_accumulation_steps` micro-batches.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

TASKS = ("caption", "vqa", "retrieval")
FRAMEWORKS = ("pt", "tf")
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("constant", "linear", "cosine")
# What a resumed run must share with the run that wrote the checkpoint (the rest, e.g. eval or save intervals,
# may change between the two): these decide which examples each step sees and how the weights move.
RUN_DEFINING = (
    "task",
    "framework",
    "batch_size",
    "gradient_accumulation_steps",
    "max_steps",
    "learning_rate",
    "lr_scheduler_type",
    "warmup_steps",
    "weight_decay",
    "optimizer",
    "seed",
    "label_smoothing",
    "gather_negatives",
    "prompt",
    "max_length",
)


@dataclass
class FinetuneOptions:
    """One fine-tuning run. `model`: a Hub id or a folder; `data` / `eval_data`: a folder with `captions.jsonl` or
    `captions.csv` (captioning, retrieval) or `questions.jsonl` (VQA), or Parquet files / WebDataset shards
    (captioning, retrieval); `output_dir`: where checkpoints and the final model go.

    Length: `max_steps` optimizer steps, or `epochs` passes over the data (`len(data) // batch_size` steps each: the
    last incomplete batch of an epoch is dropped, as `DistributedSampler(drop_last=True)` does). `eval_steps`:
    evaluate on `eval_data` every N steps (and at the end); `save_steps`: checkpoint every N steps (and at the end);
    `save_total_limit`: keep only the newest N checkpoints (default: all).
    Raises ValueError (a bad value, naming the option) or TypeError from `check()`.
    """

    task: str
    model: str
    data: Any
    output_dir: str
    framework: str = "pt"
    eval_data: Any = None
    max_steps: int | None = None
    epochs: float | None = None
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-5
    lr_scheduler_type: str = "cosine"
    warmup_steps: int = 0
    weight_decay: float = 0.05
    optimizer: str = "adamw"
    bf16: bool = False
    gradient_checkpointing: bool = False
    seed: int = 42
    eval_steps: int | None = None
    save_steps: int | None = 500
    save_total_limit: int | None = None
    logging_steps: int = 10
    label_smoothing: float = 0.1
    prompt: str | None = None
    max_length: int = 40
    gather_negatives: bool = False
    devices: int | None = None
    device: str | None = None
    resume: bool = False
    force: bool = False
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> FinetuneOptions:
        """Raises ValueError naming the first bad option; returns self."""
        _choice("task", self.task, TASKS)
        _choice("framework", self.framework, FRAMEWORKS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("lr_scheduler_type", self.lr_scheduler_type, SCHEDULES)
        if (self.max_steps is None) == (self.epochs is None):
            raise ValueError("give exactly one of max_steps and epochs")
        _positive_int("batch_size", self.batch_size)
        _positive_int("gradient_accumulation_steps", self.gradient_accumulation_steps)
        _positive_int("logging_steps", self.logging_steps)
        _positive_int("max_length", self.max_length)
        for name in ("max_steps", "eval_steps", "save_steps", "save_total_limit", "devices"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        if self.epochs is not None and not (isinstance(self.epochs, (int, float)) and 0 < self.epochs < math.inf):
            raise ValueError(f"epochs must be a positive number, got {self.epochs!r}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an integer >= 0, got {self.warmup_steps!r}")
        for name, low in (("learning_rate", 0.0), ("weight_decay", 0.0), ("label_smoothing", 0.0)):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < low:
                raise ValueError(f"{name} must be a finite number >= {low}, got {value!r}")
        if self.label_smoothing >= 1:
            raise ValueError(f"label_smoothing must be below 1, got {self.label_smoothing}")
        if self.batch_size % self.gradient_accumulation_steps:
            raise ValueError(
                f"batch_size {self.batch_size} must be a multiple of gradient_accumulation_steps "
                f"{self.gradient_accumulation_steps} (each micro-batch holds batch_size / workers / accumulation)"
            )
        if self.gather_negatives and self.task != "retrieval":
            raise ValueError("gather_negatives applies to the retrieval task (its contrastive negatives) only")
        if self.prompt is not None and self.task != "caption":
            raise ValueError("prompt applies to the caption task only")
        if self.resume and self.force:
            raise ValueError("give resume (continue the run in output_dir) or force (start over in it), not both")
        if self.eval_steps is not None and self.eval_data is None:
            raise ValueError("eval_steps needs eval_data: the held-out examples to evaluate on")
        if self.devices is not None and self.framework != "tf":
            raise ValueError("devices sets TensorFlow's data-parallel replicas; for PyTorch, launch with torchrun")
        return self

    def micro_batch_size(self, world_size: int) -> int:
        """Examples per worker per micro-batch. Raises ValueError when the global batch does not split evenly."""
        parts = world_size * self.gradient_accumulation_steps
        if self.batch_size % parts:
            raise ValueError(
                f"batch_size {self.batch_size} must split evenly over {world_size} worker(s) x "
                f"{self.gradient_accumulation_steps} accumulation step(s); use a multiple of {parts}"
            )
        return self.batch_size // parts

    def due(self, every: int | None, done: int, total: int) -> bool:
        """Whether something done every `every` steps (logging, evaluation, checkpoints; None: never) is due after
        step `done` of `total`: on its multiples, and always after the last step."""
        return bool(every and done % every == 0) or done == total

    def to_json(self) -> dict[str, Any]:
        """The options as JSON values (paths as strings)."""
        values = asdict(self)
        for name in ("data", "eval_data", "model", "output_dir"):
            value = values[name]
            values[name] = [str(v) for v in value] if isinstance(value, (list, tuple)) else value and str(value)
        return values

    def changed_from(self, saved: dict[str, Any]) -> list[str]:
        """The run-defining options whose value differs from a checkpoint's (`saved`: its `to_json()`)."""
        mine = self.to_json()
        return [name for name in RUN_DEFINING if saved.get(name) != mine[name]]

    @classmethod
    def names(cls) -> list[str]:
        """Every option name."""
        return [item.name for item in fields(cls)]


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
