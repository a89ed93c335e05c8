"""`blip finetune` in Keras: Keras `fit` under a `tf.distribute` strategy. Twin of `blip_torch/finetuning.py`.

`devices=N` (`--devices N`) trains data-parallel on N replicas with `tf.distribute.MirroredStrategy`: the first N
GPUs, or, on a machine without GPUs, the CPU split into N logical devices (which must happen before TensorFlow
starts, so a process that already ran TensorFlow with fewer CPUs is refused). The model and optimizer are built
inside the strategy's scope; `fit` feeds each replica a contiguous slice of every global batch (the same examples
PyTorch's workers get), each replica cuts its slice into `gradient_accumulation_steps` micro-batches inside one
traced step, and Keras sums the replicas' gradients. Checkpoints, evaluation and logging run in the callback after
each step, on the one process.

Several processes or machines: when `TF_CONFIG` names a cluster (`{"cluster": {"worker": ["host:port", ...]},
"task": {"type": "worker", "index": i}}`, every worker started with the same command), the strategy is
`tf.distribute.MultiWorkerMirroredStrategy`, created before anything else starts TensorFlow's runtime. Worker i's
replicas are global ranks i * L .. i * L + L - 1 (L: its GPUs, `devices` of them if given; one on a CPU) and each
feeds its own `StepPlan` slice (the rows torchrun's rank gets). Worker 0, the chief, checks the output folder,
evaluates, logs and writes every file; the others only train, and on `resume` read the chief's checkpoint, so the
output folder must be on a filesystem every worker sees.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import blip_tf
from blip_core.processing.processor import BlipProcessor
from blip_core.training.options import FinetuneOptions
from blip_core.training.plan import StepPlan, learning_rates, total_steps
from blip_core.training.run_folder import (
    OPTIMIZER_FILE,
    STATE_FILE,
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
from blip_core.weights import expected_params
from blip_tf.distribution import data_parallel_strategy, is_chief, is_multi_worker
from blip_tf.objectives import TFObjective, TFPeers
from blip_tf.training import _PyTorchAdamW

TASK_CLASSES = {
    "caption": "TFBlipForConditionalGeneration",
    "vqa": "TFBlipForQuestionAnswering",
    "retrieval": "TFBlipForImageTextRetrieval",
}
ANSWER_KEYS = ("decoder_input_ids", "decoder_attention_mask", "labels", "weights")  # VQA: K rows per question
class _TableSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The run's learning rate of each step (`blip_core.training.plan.learning_rates`), read at the optimizer's
    iteration count before its update."""

    def __init__(self, table: list[float]) -> None:
        self.table = [float(value) for value in table]

    def __call__(self, step: Any) -> tf.Tensor:
        index = tf.minimum(tf.cast(step, tf.int32), len(self.table) - 1)
        return tf.gather(tf.constant(self.table, tf.float32), index)

    def get_config(self) -> dict[str, Any]:
        return {"table": self.table}


def build_optimizer(
    model: Any, options: FinetuneOptions, rates: np.ndarray | None = None
) -> keras.optimizers.Optimizer:
    """Twin of `blip_torch.finetuning.build_optimizer`: AdamW or plain SGD on the run's learning-rate table, weight
    decay on the matrices only."""
    schedule = _TableSchedule(list(rates if rates is not None else [options.learning_rate]))
    if options.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(learning_rate=schedule, weight_decay=options.weight_decay or None)
    else:
        optimizer = _PyTorchAdamW(learning_rate=schedule, weight_decay=options.weight_decay, epsilon=1e-8)
    if options.weight_decay:
        optimizer.exclude_from_weight_decay(var_list=[v for v in model.trainable_variables if len(v.shape) < 2])
    return optimizer


def _parameter_names(model: Any) -> dict[int, str]:
    """id(variable) -> canonical parameter name (tied aliases share their variable's first name)."""
    names = {}
    for spec in expected_params(type(model).__name__, model.config):
        with contextlib.suppress(AttributeError, IndexError, TypeError):
            names.setdefault(id(model.variable(spec.name, spec.kind)), spec.name)
    return names


def optimizer_arrays(model: Any, optimizer: keras.optimizers.Optimizer) -> dict[str, np.ndarray]:
    """The optimizer's state as arrays named `<parameter>/<slot>` (Keras slots: `momentum`, `velocity`), plus
    `optimizer/iterations`; in Keras' layout (kernels as Keras holds them)."""
    names = _parameter_names(model)
    stems = {v.path.replace("/", "_"): names[id(v)] for v in model.trainable_variables if id(v) in names}
    arrays = {"optimizer/iterations": np.asarray(optimizer.iterations.numpy())}
    for slot in optimizer.variables:
        for stem, name in stems.items():
            if slot.name.startswith(stem + "_"):
                arrays[f"{name}/{slot.name[len(stem) + 1 :]}"] = np.asarray(slot.numpy())
    return arrays


def load_optimizer_arrays(model: Any, optimizer: keras.optimizers.Optimizer, arrays: dict) -> None:
    """Put `optimizer_arrays` back (the optimizer is built first). Raises ValueError for another model's state."""
    optimizer.build(model.trainable_variables)
    names = _parameter_names(model)
    stems = {v.path.replace("/", "_"): names[id(v)] for v in model.trainable_variables if id(v) in names}
    found = {"optimizer/iterations"}
    optimizer.iterations.assign(int(arrays["optimizer/iterations"]))
    for slot in optimizer.variables:
        for stem, name in stems.items():
            key = f"{name}/{slot.name[len(stem) + 1 :]}"
            if slot.name.startswith(stem + "_") and key in arrays:
                if tuple(arrays[key].shape) != tuple(slot.shape):
                    raise ValueError(f"optimizer state {key!r} has shape {arrays[key].shape}, expected {slot.shape}")
                slot.assign(arrays[key])
                found.add(key)
    unknown = sorted(set(arrays) - found)
    if unknown:
        raise ValueError(f"the checkpoint's optimizer state names parameters this model lacks, e.g. {unknown[0]!r}")


class _StepModel(keras.Model):
    """What `fit` trains: the BLIP model's objective over `accumulation` micro-batches per replica step."""

    def __init__(self, blip: Any, options: FinetuneOptions, answer_slots: int) -> None:
        super().__init__()
        self.blip, self.options, self.answer_slots = blip, options, answer_slots
        for layer in blip._flatten_layers():  # the tied LM head has no variable of its own: nothing to build
            if not layer.built and not layer.variables:
                layer.built = True
        self.built = True

    def call(self, batch: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        return self._loss(batch)

    def _loss(self, batch: dict[str, tf.Tensor]) -> tf.Tensor:
        context = tf.distribute.get_replica_context()
        peers = TFPeers(context if self.options.gather_negatives else None)
        batch = dict(batch)
        for key in ANSWER_KEYS:  # (B, K, ...) per question -> (B * K, ...) answer rows, as torch's batches hold them
            if key in batch and self.options.task == "vqa":
                batch[key] = tf.reshape(batch[key], tf.concat([[-1], tf.shape(batch[key])[2:]], 0))
        return TFObjective(self.blip, self.options.task, self.options.label_smoothing, peers).call(batch)

    def train_step(self, data: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        parts = self.options.gradient_accumulation_steps
        pieces = {key: tf.split(value, parts) for key, value in data.items()}
        variables = self.blip.trainable_variables
        gradients, total = None, tf.zeros((), tf.float32)
        for micro in range(parts):
            with tf.GradientTape() as tape:
                loss = self._loss({key: value[micro] for key, value in pieces.items()})
            new = [None if g is None else tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]
            gradients = new if gradients is None else [_add(a, b) for a, b in zip(gradients, new, strict=True)]
            total += loss
        self.optimizer.apply(gradients, variables)  # Keras sums the replicas' gradients: the shares add up
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        # fit averages returned values over replicas (along axis 0 across workers: a scalar has none, hence (1,))
        return {"step_loss": tf.reshape(total * replicas, (1,))}

    def _maybe_symbolic_build(self, iterator: Any = None, data_batch: Any = None) -> None:
        """Forced difference: everything is built before `fit` (layers here, the optimizer in `_load`); Keras'
        default would draw a batch and average it over the replicas, which MultiWorkerMirroredStrategy cannot do
        for a dict of tensors."""
        if not all(layer.built for layer in self._flatten_layers()) or not self.optimizer.built:
            super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)


def _add(first: tf.Tensor | None, second: tf.Tensor | None) -> tf.Tensor | None:
    return second if first is None else first if second is None else first + second


class _AfterStep(keras.callbacks.Callback):
    """Logging, evaluation, checkpoints and `on_step` after every optimizer step (torch's `_after_step`)."""

    def __init__(self, trainer: TFTrainer) -> None:
        super().__init__()
        self.trainer = trainer

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = float(np.reshape(logs["step_loss"], -1)[0])
        self.trainer._after_step(int(self.trainer.optimizer.iterations.numpy()), loss)


class TFTrainer:
    """Twin of `Trainer`: one fine-tuning run; `run()` trains and returns the log history."""

    def __init__(
        self,
        options: FinetuneOptions,
        examples: TrainingExamples,
        evaluate: Callable[[Any, int], dict[str, float]] | None = None,
        on_step: Callable[[int, float], None] | None = None,
    ) -> None:
        self.options, self.examples, self.evaluate, self.on_step = options.check(), examples, evaluate, on_step
        for flag, reason in (("bf16", "bfloat16 autocast"), ("gradient_checkpointing", "activation checkpointing")):
            if getattr(options, flag):
                raise ValueError(f"{flag} ({reason}) is PyTorch-only here; run with framework='pt' (--framework pt)")
        if options.device is not None:
            raise ValueError("device is PyTorch's; TensorFlow places replicas itself (choose them with devices=N)")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and "TF_CONFIG" not in os.environ:
            raise ValueError(
                "framework='tf' was started by torchrun (WORLD_SIZE is set), which launches PyTorch workers: every "
                "process would train alone; for Keras use devices=N (--devices N) or TF_CONFIG"
            )
        self.strategy = data_parallel_strategy(options.devices)  # first: TF_CONFIG's strategy precedes the runtime
        self.chief = is_chief(self.strategy)
        self.output_dir = Path(options.output_dir)
        self.lock = RunLock(self.output_dir)

    def run(self) -> list[dict[str, Any]]:
        try:
            return self._run()
        finally:
            self.lock.release()

    def _run(self) -> list[dict[str, Any]]:
        resume_from = self._prepare()
        self._load(resume_from)
        writer, scalar = _tensorboard(self.output_dir) if self.chief else (None, None)
        self.log = RunLog(
            self.output_dir, self.total, self.start, self.chief, self.options.progress, scalar, self.resumed_log
        )
        try:
            if self.evaluate is not None and self.start == 0 and self.chief:
                self._evaluate(0)  # the starting point, to compare with
            if self.start < self.total:
                if is_multi_worker(self.strategy):
                    data = self.strategy.distribute_datasets_from_function(self._worker_dataset)
                else:
                    data = self._dataset()
                self.step_model.fit(
                    data, epochs=1, steps_per_epoch=self.total - self.start, verbose=0, shuffle=False,
                    callbacks=[_AfterStep(self)],
                )  # fmt: skip
        finally:
            self.log.close()
            if writer is not None:
                writer.close()
        if self.chief:
            self.model.save_pretrained(self.output_dir)
            self.processor.save_pretrained(self.output_dir)
        return self.log.history

    def _prepare(self) -> Path | None:
        """The chief checks the output folder (`prepare_output_dir`). Under TF_CONFIG every worker learns its verdict
        (the step to resume from, or a refusal) and finds that checkpoint in the shared output folder. Raises the
        chief's error there, ValueError in the other workers, FileNotFoundError where the folder is not shared."""
        outcome: Any = None
        if self.chief:
            try:
                outcome = prepare_output_dir(self.options)
                self.output_dir.mkdir(parents=True, exist_ok=True)
                self.lock.acquire()
            except (OSError, ValueError) as error:
                outcome = error
        if is_multi_worker(self.strategy):
            failed = isinstance(outcome, BaseException)
            step = read_state(outcome)["step"] if isinstance(outcome, Path) else -1
            failed, step = _from_chief(self.strategy, [float(failed), float(step)])
            if failed and not self.chief:
                raise ValueError(
                    f"the chief worker (TF_CONFIG task 0) refused --output-dir {self.output_dir}: see its error"
                )
            if step >= 0 and not self.chief:
                outcome = self.output_dir / checkpoint_name(int(step))
                if not (outcome / STATE_FILE).is_file():
                    raise FileNotFoundError(
                        f"the chief resumes from {outcome}, which this worker cannot read: under TF_CONFIG the output "
                        "folder must be on a filesystem every worker sees"
                    )
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _load(self, resume_from: Path | None) -> None:
        options = self.options
        source = resume_from or options.model
        self.processor = BlipProcessor.from_pretrained(source)
        replicas = self.strategy.num_replicas_in_sync
        self.plan = StepPlan(
            len(self.examples), options.batch_size, options.seed, replicas, options.gradient_accumulation_steps
        )
        self.batches = StepBatches(self.processor, self.examples, options, self.plan)
        self.total = total_steps(options, len(self.examples))
        self.rates = learning_rates(options, self.total)
        self.start, self.resumed_log = 0, None
        if resume_from is not None:
            state = read_state(resume_from)
            check_same_data(state, len(self.examples), resume_from)
            check_resumable(state, self.total, self.plan.world_size, resume_from)
            self.start, self.resumed_log = state["step"], state.get("log_history")
        keras.utils.set_random_seed(options.seed + self.start)
        with self.strategy.scope():
            self.model = getattr(blip_tf, TASK_CLASSES[options.task]).from_pretrained(source, dtype="float32")
            self.step_model = _StepModel(self.model, options, getattr(self.batches, "answer_slots", 1))
            self.optimizer = build_optimizer(self.model, options, self.rates)
            self.step_model.compile(optimizer=self.optimizer)
            if resume_from is not None:
                load_optimizer_arrays(self.model, self.optimizer, read_arrays(resume_from / OPTIMIZER_FILE))
            else:
                self.optimizer.build(self.model.trainable_variables)

    def _dataset(self) -> tf.data.Dataset:
        """Every remaining step's global batch, rows in replica order then micro-batch order (fit gives each
        replica a contiguous slice; the replica's train_step cuts it into micro-batches)."""
        plan, batches, slots = self.plan, self.batches, getattr(self.batches, "answer_slots", 1)
        parts = [(rank, micro) for rank in range(plan.world_size) for micro in range(plan.accumulation)]

        def steps():
            for step in range(self.start, self.total):
                pieces = [batches.batch(step, rank, micro) for rank, micro in parts]
                batch = {key: np.concatenate([piece[key] for piece in pieces]) for key in pieces[0]}
                yield {key: _per_question(key, value, slots, self.options.task) for key, value in batch.items()}

        data = _generator_dataset(steps())
        return data.unbatch().batch(plan.batch_size, drop_remainder=True).prefetch(1)

    def _worker_dataset(self, context: tf.distribute.InputContext) -> tf.data.Dataset:
        """Under TF_CONFIG: this worker's rows only, one element per local replica and step (global rank
        worker * L + local replica; MultiWorkerMirroredStrategy hands a worker's elements to its replicas in turn)."""
        plan, batches, slots = self.plan, self.batches, getattr(self.batches, "answer_slots", 1)
        local = plan.world_size // context.num_input_pipelines
        ranks = [context.input_pipeline_id * local + index for index in range(local)]
        if context.get_per_replica_batch_size(plan.batch_size) != plan.batch_size // plan.world_size:
            raise ValueError(f"batch_size {plan.batch_size} does not split evenly over {plan.world_size} replicas")

        def steps():
            for step in range(self.start, self.total):
                for rank in ranks:
                    pieces = [batches.batch(step, rank, micro) for micro in range(plan.accumulation)]
                    batch = {key: np.concatenate([piece[key] for piece in pieces]) for key in pieces[0]}
                    yield {key: _per_question(key, value, slots, self.options.task) for key, value in batch.items()}

        return _generator_dataset(steps()).prefetch(1)

    def _after_step(self, done: int, loss: float) -> None:
        options = self.options
        rate, epoch = float(self.rates[done - 1]), self.plan.epoch_of(done)
        self.log.train_step(done, loss, rate, epoch, logged=options.due(options.logging_steps, done, self.total))
        if not self.chief:  # the chief alone evaluates and writes; neither calls a collective op
            return
        if self.evaluate is not None and options.due(options.eval_steps, done, self.total):
            self._evaluate(done)
        if options.due(options.save_steps, done, self.total):
            self.save_checkpoint(done)
        if self.on_step is not None:
            self.on_step(done, loss)  # after the step's evaluation and checkpoint

    def _evaluate(self, step: int) -> None:
        """Held-out metrics of the model after `step` steps (0: before training), in the chief."""
        self.log.evaluation(step, self.evaluate(self.model, step))

    def save_checkpoint(self, step: int) -> None:
        """checkpoint-<step>, written whole in a temporary folder, then renamed into place (by the chief only)."""
        from blip_core.io.atomic import atomic_folder

        if not self.chief:
            return
        with atomic_folder(self.output_dir / checkpoint_name(step), replace=True) as folder:
            self.model.save_pretrained(folder)
            self.processor.save_pretrained(folder)
            write_arrays(folder / OPTIMIZER_FILE, optimizer_arrays(self.model, self.optimizer))
            epoch, examples, history = self.plan.epoch_of(step), len(self.examples), self.log.history
            state = checkpoint_state(step, epoch, "tf", self.plan.world_size, examples, self.options, history)
            write_state(folder, state)
        prune_checkpoints(self.output_dir, self.options.save_total_limit)


def _from_chief(strategy: tf.distribute.Strategy, values: list[float]) -> list[float]:
    """The chief's `values` in every worker: a sum over all replicas to which only global replica 0 contributes
    (a collective: every worker must call it at the same point)."""
    sent = tf.constant(values, tf.float32)

    def contribute() -> tf.Tensor:
        first = tf.distribute.get_replica_context().replica_id_in_sync_group == 0
        return tf.where(first, sent, tf.zeros_like(sent))

    total = strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(contribute), axis=None)
    return [float(value) for value in np.asarray(total)]


def _tensorboard(output_dir: Path) -> tuple[Any, Callable[[str, float, int], None] | None]:
    """tf.summary's writer into output_dir/runs and a scalar function, when the `tensorboard` package (which
    implements tf.summary) is installed; else (None, None)."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        return None, None
    writer = tf.summary.create_file_writer(str(output_dir / "runs"))

    def scalar(tag: str, value: float, step: int) -> None:
        with writer.as_default():
            tf.summary.scalar(tag, value, step=step)

    return writer, scalar


def _generator_dataset(batches: Iterator[dict[str, np.ndarray]]) -> tf.data.Dataset:
    """A one-pass dataset of NumPy batches, ids as int32; the first batch's shapes and dtypes are its signature."""
    first = next(batches)
    signature = {key: tf.TensorSpec(value.shape, _dtype(value)) for key, value in first.items()}

    def typed() -> Iterator[dict[str, np.ndarray]]:
        for batch in itertools.chain([first], batches):
            yield {key: value.astype(_dtype(value).as_numpy_dtype) for key, value in batch.items()}

    return tf.data.Dataset.from_generator(typed, output_signature=signature)


def _dtype(value: np.ndarray) -> tf.DType:
    """Ids as int32 (what the Keras models take), float64 draws kept, other floats float32."""
    if np.issubdtype(value.dtype, np.integer):
        return tf.int32
    return tf.float64 if value.dtype == np.float64 else tf.float32


def _per_question(key: str, value: np.ndarray, slots: int, task: str) -> np.ndarray:
    """VQA answer rows (B * K, ...) -> (B, K, ...), so that every key's first axis is the example."""
    if task == "vqa" and key in ANSWER_KEYS:
        return value.reshape(-1, slots, *value.shape[1:])
    return value


def finetune(
    options: FinetuneOptions,
    examples: TrainingExamples,
    evaluate: Callable[[Any, int], dict[str, float]] | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> list[dict[str, Any]]:
    """Twin of `blip_torch.finetuning.finetune`: run one fine-tuning (see `TFTrainer`); returns its log history."""
    return TFTrainer(options, examples, evaluate, on_step).run()
