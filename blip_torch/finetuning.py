"""`blip finetune` in PyTorch: one process, or data-parallel under `torchrun` with DistributedDataParallel.

Launched by `torchrun --nproc_per_node N` (or any launcher that sets `WORLD_SIZE`, `RANK`, `LOCAL_RANK` and the
rendezvous variables), every worker runs the same program: it joins the process group (nccl on GPUs, gloo on the
CPU), trains its slice of every global batch (`blip_core.training.plan.StepPlan`, the role a DistributedSampler
plays: the same seeded order in every worker, a contiguous share each, the last incomplete batch dropped), and DDP
averages the gradients. Only worker 0 logs, evaluates and writes; the others wait for it at each checkpoint.
Twin of `blip_tf/finetuning.py` (tf.distribute + Keras `fit`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import blip_torch
from blip_core.processing.processor import BlipProcessor
from blip_core.training.options import FinetuneOptions
from blip_core.training.plan import StepPlan, learning_rates, total_steps
from blip_core.training.run_folder import (
    OPTIMIZER_FILE,
    RunLock,
    check_resumable,
    check_same_data,
    checkpoint_name,
    checkpoint_state,
    prepare_output_dir,
    prune_checkpoints,
    read_arrays,
    read_state,
    write_arrays,
    write_state,
)
from blip_core.training.run_log import RunLog
from blip_core.training.step_batches import StepBatches, TrainingExamples
from blip_torch.objectives import Objective, Peers

SHARED_ERROR_GRACE = 3.0  # seconds a worker waits before exiting on the error worker 0 reports
TASK_CLASSES = {
    "caption": "BlipForConditionalGeneration",
    "vqa": "BlipForQuestionAnswering",
    "retrieval": "BlipForImageTextRetrieval",
}


@dataclass
class _Workers:
    """This process's place among the data-parallel workers."""

    rank: int
    world_size: int
    device: torch.device
    gather_group: Any = None  # a process group of its own for the loss's gathers, apart from DDP's
    started_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()

    def share(self, value: Any) -> Any:
        """Worker 0's `value`, in every worker."""
        if self.world_size == 1:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]


def join_workers(device: str | None) -> _Workers:
    """Join the process group that `torchrun` describes in the environment (`WORLD_SIZE` > 1), or run alone.
    The device: `device` if given, else the GPU `LOCAL_RANK` when CUDA is available, else the CPU."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is not None:
        target = torch.device(device)
    else:
        target = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if target.type == "cuda" and target.index is None:
        target = torch.device("cuda", local_rank)
    if world_size == 1:
        return _Workers(0, 1, target)
    started = not torch.distributed.is_initialized()
    if started:
        torch.distributed.init_process_group("nccl" if target.type == "cuda" else "gloo")
    if target.type == "cuda":
        torch.cuda.set_device(target)
    rank = torch.distributed.get_rank()
    return _Workers(rank, torch.distributed.get_world_size(), target, torch.distributed.new_group(), started)


def build_optimizer(model: torch.nn.Module, options: FinetuneOptions) -> torch.optim.Optimizer:
    """AdamW or plain SGD; weight decay on the matrices only (not on biases and norm gains, as `transformers`'
    Trainer and timm do)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    plain = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": options.weight_decay}, {"params": plain, "weight_decay": 0.0}]
    if options.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=options.learning_rate)
    return torch.optim.AdamW(groups, lr=options.learning_rate, eps=1e-8)


def _parameter_names(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The canonical name of each optimizer parameter, in the optimizer's order."""
    names = {id(p): name for name, p in model.named_parameters()}
    return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]


def optimizer_arrays(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, np.ndarray]:
    """The optimizer's per-parameter state as arrays named `<parameter>/<slot>` (e.g. `.../exp_avg`)."""
    names = _parameter_names(model, optimizer)
    arrays = {}
    for index, slots in optimizer.state_dict()["state"].items():
        for slot, value in slots.items():
            arrays[f"{names[index]}/{slot}"] = torch.as_tensor(value).detach().cpu().numpy()
    return arrays


def load_optimizer_arrays(model: torch.nn.Module, optimizer: torch.optim.Optimizer, arrays: dict) -> None:
    """Put `optimizer_arrays` back. Raises ValueError when they belong to another model or optimizer."""
    names = _parameter_names(model, optimizer)
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    state: dict[int, dict[str, torch.Tensor]] = {}
    known = set()
    for index, name in enumerate(names):
        slots = {key.rsplit("/", 1)[1]: value for key, value in arrays.items() if key.rsplit("/", 1)[0] == name}
        known.update(f"{name}/{slot}" for slot in slots)
        for slot, value in slots.items():
            if value.ndim and tuple(value.shape) != tuple(parameters[index].shape):
                raise ValueError(
                    f"optimizer state {name}/{slot} has shape {tuple(value.shape)}, the parameter "
                    f"{tuple(parameters[index].shape)}: the checkpoint belongs to another model"
                )
        if slots:
            state[index] = {slot: torch.from_numpy(np.array(value)) for slot, value in slots.items()}
    unknown = sorted(set(arrays) - known)
    if unknown:
        raise ValueError(f"the checkpoint's optimizer state names parameters this model lacks, e.g. {unknown[0]!r}")
    saved = optimizer.state_dict()
    optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})


def rng_arrays(device: torch.device) -> dict[str, np.ndarray]:
    """This worker's random-generator states (CPU, and its GPU's) as uint8 arrays."""
    arrays = {"torch": torch.get_rng_state().numpy()}
    if device.type == "cuda":
        arrays["cuda"] = torch.cuda.get_rng_state(device).numpy()
    return arrays


def restore_rng(arrays: dict[str, np.ndarray], path: Path, device: torch.device) -> None:
    """Put `rng_arrays` back. Raises ValueError naming `path` for arrays that are not generator states."""
    for name in ("torch", "cuda") if device.type == "cuda" else ("torch",):
        state = arrays.get(name)
        if state is None or state.dtype != np.uint8 or state.ndim != 1:
            raise ValueError(f"{path} holds no {name} generator state (a uint8 vector named {name!r})")
        try:
            if name == "torch":
                torch.set_rng_state(torch.from_numpy(state.copy()))
            else:
                torch.cuda.set_rng_state(torch.from_numpy(state.copy()), device)
        except RuntimeError as error:
            raise ValueError(f"{path}: the {name} generator state does not fit this PyTorch: {error}") from None


def _to_tensors(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    """NumPy batch -> tensors on the device, keeping each array's dtype (float32 pixels, float64 draws)."""
    return {key: torch.from_numpy(value).to(device) for key, value in batch.items()}


def _tensorboard(output_dir: Path) -> tuple[Any, Callable[[str, float, int], None] | None]:
    """torch.utils.tensorboard's writer into output_dir/runs and a scalar function, when the `tensorboard` package
    is installed; else (None, None)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # the `tensorboard` package is not installed
        return None, None
    writer = SummaryWriter(str(output_dir / "runs"))
    return writer, lambda tag, value, step: writer.add_scalar(tag, value, step)


class Trainer:
    """One fine-tuning run (see the module docstring); `run()` trains and returns the log history."""

    def __init__(
        self,
        options: FinetuneOptions,
        examples: TrainingExamples,
        evaluate: Callable[[Any, int], dict[str, float]] | None = None,
        on_step: Callable[[int, float], None] | None = None,
    ) -> None:
        self.options, self.examples, self.evaluate, self.on_step = options.check(), examples, evaluate, on_step
        self.workers = join_workers(options.device)
        self.output_dir = Path(options.output_dir)
        self.lock = RunLock(self.output_dir)

    def run(self) -> list[dict[str, Any]]:
        try:
            return self._run()
        finally:
            self.lock.release()
            if self.workers.started_here and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()

    def _prepare(self) -> Path | None:
        """Worker 0 checks the output folder; every worker gets its verdict (the checkpoint or the error)."""
        outcome: Any = None
        if self.workers.main:
            try:
                outcome = prepare_output_dir(self.options)
                self.output_dir.mkdir(parents=True, exist_ok=True)
                self.lock.acquire()
            except (OSError, ValueError) as error:
                outcome = error
        outcome = self.workers.share(outcome)
        if isinstance(outcome, BaseException):
            if not self.workers.main:
                outcome.reported_by_worker_0 = True  # the command prints it once, from worker 0
                time.sleep(SHARED_ERROR_GRACE)  # torchrun stops every worker when the first one exits: let 0 print
            raise outcome
        return outcome

    def _load(self, resume_from: Path | None) -> None:
        options, workers = self.options, self.workers
        model_class = getattr(blip_torch, TASK_CLASSES[options.task])
        source = resume_from or options.model
        self.processor = BlipProcessor.from_pretrained(source)
        self.model = model_class.from_pretrained(source, torch_dtype=torch.float32).to(workers.device)
        if options.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        self.plan = StepPlan(
            len(self.examples),
            options.batch_size,
            options.seed,
            workers.world_size,
            options.gradient_accumulation_steps,
        )
        self.batches = StepBatches(self.processor, self.examples, options, self.plan)
        self.total = total_steps(options, len(self.examples))
        self.rates = learning_rates(options, self.total)
        self.optimizer = build_optimizer(self.model, options)
        self.start, self.resumed_log = 0, None
        torch.manual_seed(options.seed + workers.rank)
        if resume_from is not None:
            state = read_state(resume_from)
            check_same_data(state, len(self.examples), resume_from)
            check_resumable(state, self.total, workers.world_size, resume_from)
            self.start, self.resumed_log = state["step"], state.get("log_history")
            load_optimizer_arrays(self.model, self.optimizer, read_arrays(resume_from / OPTIMIZER_FILE))
            rng = resume_from / f"rng-{workers.rank}.safetensors"
            if rng.is_file():  # absent when the run had fewer workers: this one keeps its seed
                restore_rng(read_arrays(rng), rng, workers.device)

    def _run(self) -> list[dict[str, Any]]:
        options, workers = self.options, self.workers
        resume_from = self._prepare()
        self._load(resume_from)
        peers = Peers(workers.gather_group if options.gather_negatives else None)
        objective = Objective(self.model, options.task, options.label_smoothing, peers)
        wrapped = objective
        if workers.world_size > 1:
            device_ids = [workers.device.index] if workers.device.type == "cuda" else None
            wrapped = torch.nn.parallel.DistributedDataParallel(objective, device_ids=device_ids)
        writer, scalar = _tensorboard(self.output_dir) if workers.main else (None, None)
        self.log = RunLog(
            self.output_dir, self.total, self.start, workers.main, options.progress, scalar, self.resumed_log
        )
        self.model.train()
        try:
            if self.evaluate is not None and self.start == 0:
                self._evaluate(0)  # the starting point, to compare with
            for step in range(self.start, self.total):
                loss = self._step(wrapped, step)
                self._after_step(step + 1, loss)
        finally:
            self.log.close()
            if writer is not None:
                writer.close()
        if workers.main:
            self.model.save_pretrained(self.output_dir)
            self.processor.save_pretrained(self.output_dir)
        workers.barrier()
        return self.log.history

    def _step(self, wrapped: torch.nn.Module, step: int) -> float:
        """One optimizer step over this worker's micro-batches; returns the global step's loss."""
        options, workers = self.options, self.workers
        for group in self.optimizer.param_groups:
            group["lr"] = float(self.rates[step])
        total = torch.zeros((), dtype=torch.float64, device=workers.device)
        for micro in range(options.gradient_accumulation_steps):
            batch = _to_tensors(self.batches.batch(step, workers.rank, micro), workers.device)
            last = micro == options.gradient_accumulation_steps - 1
            sync = contextlib.nullcontext() if workers.world_size == 1 or last else wrapped.no_sync()
            autocast = torch.autocast(workers.device.type, torch.bfloat16, enabled=options.bf16)
            with sync:
                with autocast:
                    loss = wrapped(batch)
                (loss * workers.world_size).backward()  # DDP averages the workers' gradients; the shares add up
            total += loss.detach().double()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if workers.world_size > 1:
            torch.distributed.all_reduce(total)
        return float(total)

    def _after_step(self, done: int, loss: float) -> None:
        options, workers = self.options, self.workers
        rate, epoch = float(self.rates[done - 1]), self.plan.epoch_of(done)
        self.log.train_step(done, loss, rate, epoch, logged=options.due(options.logging_steps, done, self.total))
        if self.evaluate is not None and options.due(options.eval_steps, done, self.total):
            self._evaluate(done)
        if options.due(options.save_steps, done, self.total):
            self.save_checkpoint(done)
        if self.on_step is not None and workers.main:
            self.on_step(done, loss)  # after the step's evaluation and checkpoint

    def _evaluate(self, step: int) -> None:
        """Held-out metrics of the model after `step` steps (0: before training), on worker 0."""
        if self.workers.main:
            self.model.eval()
            with torch.no_grad():
                self.log.evaluation(step, self.evaluate(self.model, step))
            self.model.train()
        self.workers.barrier()

    def save_checkpoint(self, step: int) -> None:
        """checkpoint-<step>: written in a temporary folder by every worker (its RNG), renamed by worker 0."""
        from blip_core.io.atomic import atomic_folder

        workers = self.workers
        destination = self.output_dir / checkpoint_name(step)
        with atomic_folder(destination, replace=True) if workers.main else contextlib.nullcontext() as work:
            folder = Path(workers.share(str(work) if workers.main else None))
            write_arrays(folder / f"rng-{workers.rank}.safetensors", rng_arrays(workers.device))
            if workers.main:
                self.model.save_pretrained(folder)
                self.processor.save_pretrained(folder)
                write_arrays(folder / OPTIMIZER_FILE, optimizer_arrays(self.model, self.optimizer))
                epoch, examples, history = self.plan.epoch_of(step), len(self.examples), self.log.history
                state = checkpoint_state(step, epoch, "pt", workers.world_size, examples, self.options, history)
                write_state(folder, state)
            workers.barrier()  # every worker's files are in before worker 0 renames the folder into place
        if workers.main:
            prune_checkpoints(self.output_dir, self.options.save_total_limit)


def finetune(
    options: FinetuneOptions,
    examples: TrainingExamples,
    evaluate: Callable[[Any, int], dict[str, float]] | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> list[dict[str, Any]]:
    """Run one fine-tuning (see `Trainer`); returns worker 0's log history (empty in the others)."""
    return Trainer(options, examples, evaluate, on_step).run()
