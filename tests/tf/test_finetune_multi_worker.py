"""`blip finetune --framework tf` under `TF_CONFIG`: two worker processes on localhost (MultiWorkerMirroredStrategy,
one CPU replica each, each feeding its own slice) on a global batch of 8 take the same SGD steps as one process on
the same 8 examples; only the chief (worker 0) writes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers.finetune_runs import MODELS, ROOT, SGD, command, environment, largest_difference, weights, write_data

pytestmark = pytest.mark.xdist_group("finetune_tf")  # subprocess-heavy: one worker runs them in turn


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_data(tmp_path_factory.mktemp("finetune_data"))


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for item in sockets:
        item.bind(("localhost", 0))
    ports = [item.getsockname()[1] for item in sockets]
    for item in sockets:
        item.close()
    return ports


def start(arguments: list[str], config: dict | None = None) -> subprocess.Popen:
    """`python arguments` in a fresh process, with `config` as its TF_CONFIG when given."""
    env = environment() if config is None else {**environment(), "TF_CONFIG": json.dumps(config)}
    return subprocess.Popen([sys.executable, *arguments], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT)  # fmt: skip


def finish(processes: list[subprocess.Popen]) -> list[str]:
    """Their stdout, once all have exited; fails naming the first that did not exit 0."""
    outputs = [process.communicate(timeout=600) for process in processes]
    for index, (process, (out, err)) in enumerate(zip(processes, outputs, strict=True)):
        assert process.returncode == 0, f"process {index}: exit {process.returncode}\n{out[-3000:]}\n{err[-6000:]}"
    return [out for out, _ in outputs]


def cluster(arguments: list[str], workers: int = 2) -> list[subprocess.Popen]:
    """`workers` processes running `arguments`, each with its TF_CONFIG (free localhost ports)."""
    addresses = [f"localhost:{port}" for port in free_ports(workers)]
    return [
        start(arguments, {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})
        for index in range(workers)
    ]


def log_lines(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    ("task", "flags"),
    [  # the caption case (accumulation across workers) behind --run-slow: CI time; the mirrored tests cover it
        pytest.param("caption", ["--gradient-accumulation-steps", "2"], marks=pytest.mark.slow),
        ("retrieval", ["--gather-negatives"]),
    ],
)
def test_two_workers_take_one_process_steps(task, flags, data, tmp_path):
    """Caption with 2 micro-batches per worker; retrieval with ITC/ITM negatives gathered from both workers."""
    options = ["--framework", "tf", "--max-steps", "3", "--batch-size", "8", "--logging-steps", "1", *SGD, *flags]
    outputs = finish([*cluster(command(task, data, tmp_path / "two", *options)),
                      start(command(task, data, tmp_path / "one", *options))])  # fmt: skip
    difference, name = largest_difference(weights(tmp_path / "two"), weights(tmp_path / "one"))
    assert difference < 1e-5, f"{name} differs by {difference}"
    moved, _ = largest_difference(weights(tmp_path / "one"), weights(MODELS[task]))
    assert moved > 1e-3
    two, one = log_lines(tmp_path / "two"), log_lines(tmp_path / "one")
    assert [r["step"] for r in two] == [1, 2, 3]  # written once: by the chief alone
    np.testing.assert_allclose([r["loss"] for r in two], [r["loss"] for r in one], rtol=1e-5)
    assert json.loads(outputs[0])["step"] == 3 and outputs[1] == ""  # the other worker reports nothing
    assert sorted(p.name for p in (tmp_path / "two").iterdir() if p.name.startswith("checkpoint-")) == [
        "checkpoint-000003"
    ]
