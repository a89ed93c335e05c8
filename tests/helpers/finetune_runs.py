"""Fine-tuning runs for the tests: a small captioned/questioned folder of demo scenes, the demo checkpoints, the
commands that run `blip finetune` in one process, under torchrun, or with TensorFlow replicas, and a run that is
killed (SIGKILL) right after a given step's checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from blip_core.demo.synthetic import samples
from blip_core.demo.tasks import DEMO_MODELS_DIR
from blip_core.training.run_folder import read_arrays

ROOT = Path(__file__).resolve().parents[2]
MODELS = {
    "caption": DEMO_MODELS_DIR / "BlipForConditionalGeneration",
    "vqa": DEMO_MODELS_DIR / "BlipForQuestionAnswering",
    "retrieval": DEMO_MODELS_DIR / "BlipForImageTextRetrieval",
}
# Plain SGD at a large rate: every parameter the loss reaches moves well above float noise in 3 steps.
SGD = ["--optimizer", "sgd", "--learning-rate", "0.05", "--weight-decay", "0", "--lr-scheduler-type", "constant"]


def write_data(folder: Path, count: int = 24, start: int = 0) -> Path:
    """`count` demo scenes with captions.jsonl and questions.jsonl (one question each, four kinds in turn)."""
    folder.mkdir(parents=True, exist_ok=True)
    captions, questions = [], []
    for index, (image, scene) in enumerate(samples(1, start, count)):
        name = f"{start + index:05d}.png"
        image.save(folder / name)
        captions.append({"file": name, "caption": scene.caption})
        question, answer = scene.questions()[index % 4]
        questions.append({"file": name, "question": question, "answers": [answer] * 3 + [answer + "s"]})
    (folder / "captions.jsonl").write_text("".join(json.dumps(c) + "\n" for c in captions))
    (folder / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    return folder


def command(task: str, data: Path, output_dir: Path, *options: str) -> list[str]:
    """`blip finetune TASK` arguments (after the launcher)."""
    return ["-m", "blip_core.cli", "finetune", task, "--model", str(MODELS[task]), "--data", str(data),
            "--output-dir", str(output_dir), "--no-progress", *options]  # fmt: skip


def environment(threads: int = 1) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("WORLD_SIZE", None)
    return env


def run(arguments: list[str], launcher: list[str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python [launcher] arguments` in a fresh process; raises AssertionError with its output when it fails."""
    result = subprocess.run(
        [sys.executable, *(launcher or []), *arguments], capture_output=True, text=True, env=environment(),
        timeout=timeout, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result


TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def weights(folder: Path) -> dict[str, np.ndarray]:
    """The float32 parameters of a saved model."""
    return {name: value.astype(np.float32) for name, value in read_arrays(folder / "model.safetensors").items()}


def largest_difference(first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> tuple[float, str]:
    """(max |a - b| over every parameter, its name); the two must hold the same names."""
    assert set(first) == set(second)
    worst = max(first, key=lambda name: float(np.abs(first[name] - second[name]).max()))
    return float(np.abs(first[worst] - second[worst]).max()), worst


KILLER = """
import os, signal, sys
sys.path.insert(0, {root!r})
from blip_core.finetune import finetune
def stop(step, loss):
    if step == {step}:
        os.kill(os.getpid(), signal.SIGKILL)
finetune({task!r}, {model!r}, {data!r}, {output!r}, framework={framework!r}, on_step=stop, progress=False,
         **{options!r})
"""


def killed_run(task: str, data: Path, output_dir: Path, step: int, framework: str, launcher: list[str] | None = None,
               **options) -> int:  # fmt: skip
    """Run the API in a fresh process (under `launcher`, e.g. TORCHRUN) whose first worker SIGKILLs itself right
    after step `step` (its checkpoint written); returns the exit code (-9 alone; torchrun's 1 when it stops)."""
    script = output_dir.parent / f"kill_{output_dir.name}.py"
    script.write_text(KILLER.format(root=str(ROOT), step=step, task=task, model=str(MODELS[task]), data=str(data),
                                    output=str(output_dir), framework=framework, options=options))  # fmt: skip
    result = subprocess.run([sys.executable, *(launcher or []), str(script)], capture_output=True, text=True,
                            env=environment(), timeout=600, cwd=ROOT)  # fmt: skip
    return result.returncode
