"""Which `tf.distribute` strategy `blip finetune --framework tf` trains under (TensorFlow only: PyTorch's workers
come from torchrun's environment, in `blip_torch.finetuning.join_workers`).

- `devices=N`: `MirroredStrategy` over the first N GPUs, or, without GPUs, the CPU split into N logical devices
  (which must happen before TensorFlow starts);
- `TF_CONFIG` naming a cluster of workers: `MultiWorkerMirroredStrategy`, created before anything else starts
  TensorFlow's runtime; worker 0 is the chief;
- otherwise the default strategy (one device).
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

_STRATEGIES: dict[int, tf.distribute.Strategy] = {}  # one per process and device count: a second one can clash


def data_parallel_strategy(devices: int | None) -> tf.distribute.Strategy:
    """The strategy for `devices` replicas (None: every GPU, or the default strategy on a CPU-only machine).
    Raises ValueError when the machine cannot give that many (naming why)."""
    key = devices or 0
    if key in _STRATEGIES:
        return _STRATEGIES[key]
    if cluster_workers() is not None:
        _STRATEGIES[key] = _multi_worker_strategy(devices)
        return _STRATEGIES[key]
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        if devices is not None and devices > len(gpus):
            raise ValueError(f"devices={devices}, but this machine has {len(gpus)} GPU(s)")
        names = [f"/gpu:{index}" for index in range(devices or len(gpus))]
    elif devices is None or devices == 1:
        names = []
    else:
        names = [f"/cpu:{index}" for index in range(devices)]
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
        except RuntimeError:  # TensorFlow already started: its logical CPUs are fixed
            found = len(tf.config.list_logical_devices("CPU"))
            if found < devices:
                raise ValueError(
                    f"devices={devices} needs the CPU split into {devices} logical devices before TensorFlow starts, "
                    f"and this process already started it with {found}; run the fine-tuning in a fresh process "
                    "(the `blip finetune` command does)"
                ) from None
    strategy = tf.distribute.MirroredStrategy(names) if len(names) > 1 else tf.distribute.get_strategy()
    _STRATEGIES[key] = strategy
    return strategy


def cluster_workers() -> list[str] | None:
    """The worker addresses `TF_CONFIG` names (None when it is unset or empty). Raises ValueError for a TF_CONFIG
    this trainer cannot run under: not JSON, no worker list, other jobs (chief, ps, evaluator), a bad task."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not JSON: {error}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    if not cluster:
        return None
    workers, task = cluster.get("worker"), config.get("task") or {}
    if set(cluster) != {"worker"} or not isinstance(workers, list) or not workers:
        raise ValueError(
            f"TF_CONFIG's cluster has jobs {sorted(cluster)}; fine-tuning runs on 'worker' jobs only (a list of "
            "'host:port', worker 0 being the chief)"
        )
    index = task.get("index")
    if task.get("type") != "worker" or not isinstance(index, int) or not 0 <= index < len(workers):
        raise ValueError(f"TF_CONFIG's task must be {{'type': 'worker', 'index': 0..{len(workers) - 1}}}, got {task}")
    return workers


def _multi_worker_strategy(devices: int | None) -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy over TF_CONFIG's workers, each with all its GPUs (the first `devices` of them),
    or its CPU. Raises ValueError when devices cannot be met or TensorFlow's runtime already started."""
    gpus = tf.config.list_physical_devices("GPU")  # lists hardware; does not start the runtime
    if not gpus and devices not in (None, 1):
        raise ValueError(
            f"devices={devices} with TF_CONFIG: a multi-worker CPU run has one replica per worker (TensorFlow's "
            "MultiWorkerMirroredStrategy trains on the first CPU device only); start more workers instead"
        )
    if gpus and devices is not None:
        if devices > len(gpus):
            raise ValueError(f"devices={devices}, but this machine has {len(gpus)} GPU(s)")
        try:
            tf.config.set_visible_devices(gpus[:devices], "GPU")
        except RuntimeError:
            raise ValueError(
                "TF_CONFIG: TensorFlow started before the multi-worker strategy; use a fresh process"
            ) from None
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as error:  # collectives must be configured before the runtime starts
        raise ValueError(
            f"TF_CONFIG names a cluster, but TensorFlow's runtime already started in this process ({error}); run the "
            "fine-tuning in a fresh process (the `blip finetune` command does)"
        ) from None


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True in the process that writes: the only one, or worker 0 of a TF_CONFIG cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    return resolver is None or not resolver.task_type or resolver.task_id == 0


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
