"""Which examples every optimizer step trains on, and the learning rate of every step: pure functions of the
options, the same in every worker and in both frameworks, so that

- N data-parallel workers together see exactly the examples one process sees at the same global batch size (each
  worker takes a contiguous slice of the global batch; `gradient_accumulation_steps` cuts its slice again);
- a resumed run continues from the saved step number alone (the data position is the step);
- PyTorch and Keras runs with the same options see the same batches in the same order.

Each epoch is a seeded permutation of the examples (`numpy.random.default_rng([seed, epoch])`), cut into
`len(examples) // batch_size` global batches; the remainder is dropped, as `DistributedSampler(drop_last=True)`
does, so that every step has the full batch and a fixed per-example share of the loss.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from blip_core.training.options import FinetuneOptions


@dataclass(frozen=True)
class StepPlan:
    """The example indices of every step. `world_size` workers, each `rank` taking a slice of `batch_size`."""

    num_examples: int
    batch_size: int
    seed: int
    world_size: int = 1
    accumulation: int = 1

    def __post_init__(self) -> None:
        if self.num_examples < self.batch_size:
            raise ValueError(
                f"the training data has {self.num_examples} examples, fewer than one batch of {self.batch_size}: "
                "lower --batch-size or add data"
            )
        if self.batch_size % (self.world_size * self.accumulation):
            raise ValueError(
                f"batch_size {self.batch_size} must split evenly over {self.world_size} worker(s) x "
                f"{self.accumulation} accumulation step(s)"
            )

    @property
    def steps_per_epoch(self) -> int:
        return self.num_examples // self.batch_size

    @property
    def micro_batch_size(self) -> int:
        return self.batch_size // (self.world_size * self.accumulation)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """(num_examples,) int64: the order of epoch `epoch` (0-based); read-only (shared by a small cache: every
        micro-batch of every step asks for it)."""
        return _epoch_order(self.seed, epoch, self.num_examples)

    def step_indices(self, step: int) -> np.ndarray:
        """(batch_size,) int64: the examples of optimizer step `step` (0-based), over all workers."""
        epoch, position = divmod(step, self.steps_per_epoch)
        start = position * self.batch_size
        return self.epoch_order(epoch)[start : start + self.batch_size]

    def worker_slice(self, rank: int) -> slice:
        """The rows of a global batch that worker `rank` trains on."""
        size = self.batch_size // self.world_size
        return slice(rank * size, (rank + 1) * size)

    def micro_batches(self, step: int, rank: int) -> list[np.ndarray]:
        """Worker `rank`'s examples of step `step`, as `accumulation` micro-batches of `micro_batch_size`."""
        mine = self.step_indices(step)[self.worker_slice(rank)]
        return np.split(mine, self.accumulation)

    def epoch_of(self, step: int) -> float:
        """Epochs done before step `step` (fractional)."""
        return step / self.steps_per_epoch


@functools.lru_cache(maxsize=4)
def _epoch_order(seed: int, epoch: int, num_examples: int) -> np.ndarray:
    order = np.random.default_rng([seed, epoch]).permutation(num_examples)
    order.flags.writeable = False
    return order


def total_steps(options: FinetuneOptions, num_examples: int) -> int:
    """`max_steps`, or `ceil(epochs * steps per epoch)`."""
    if options.max_steps is not None:
        return options.max_steps
    return max(1, math.ceil(options.epochs * (num_examples // options.batch_size)))


def learning_rates(options: FinetuneOptions, steps: int) -> np.ndarray:
    """(steps,) float64: the learning rate of each optimizer step: a linear warm-up from 0 over `warmup_steps`
    (`learning_rate * step / warmup_steps`: step 0 trains at 0, as `transformers`' warm-up schedules do), then
    constant, a linear decay to 0, or half a cosine to 0 at `steps` (as `transformers`'
    `get_cosine_schedule_with_warmup`, 0.5 cycles)."""
    rate, warmup = float(options.learning_rate), options.warmup_steps
    values = np.empty(steps, np.float64)
    for step in range(steps):
        if step < warmup:
            values[step] = rate * step / max(1, warmup)
            continue
        progress = (step - warmup) / max(1, steps - warmup)
        if options.lr_scheduler_type == "linear":
            values[step] = rate * max(0.0, 1.0 - progress)
        elif options.lr_scheduler_type == "cosine":
            values[step] = rate * max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
        else:
            values[step] = rate
    return values
