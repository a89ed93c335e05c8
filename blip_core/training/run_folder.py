"""The output folder of a fine-tuning run: its checkpoints, their state files, and the rules that keep what the user
had (framework-neutral).

```
OUTPUT_DIR/
  checkpoint-000200/           every --save-steps steps and at the end, each written whole then renamed into place
    config.json, model.safetensors, processor files     (loads in blip_torch and blip_tf)
    optimizer.safetensors      the optimizer's state, tensors named after the parameters (no pickle)
    rng-<rank>.safetensors     each worker's random-generator state
    trainer_state.json         step, epoch, options, log history, the optimizer's scalar settings
  config.json, model.safetensors, processor files          the final model
  log.jsonl                    one JSON object per logged step or evaluation
```

The data position is the step number (`StepPlan`); the learning rate is a function of the step, so the step is the
scheduler's whole state. `--resume` continues from the newest complete checkpoint; anything else in a non-empty
output folder needs `--force`. The writing process holds `.blip-finetune.lock` while it runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from blip_core.checkpoints.safetensors_io import SafetensorsFile, write_safetensors
from blip_core.io.atomic import atomic_write_text, is_temp_name
from blip_core.training.options import FinetuneOptions

PREFIX = "checkpoint-"
STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
LOG_FILE = "log.jsonl"
_CHECKPOINT = re.compile(r"checkpoint-(\d{1,12})")
STATE_VERSION = 1


def checkpoint_name(step: int) -> str:
    """`checkpoint-000200`: zero-padded so that names sort by step."""
    return f"{PREFIX}{step:06d}"


def checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, folder) of every complete checkpoint (it has its state file), oldest first."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        match = _CHECKPOINT.fullmatch(child.name)
        if match and child.is_dir() and (child / STATE_FILE).is_file():
            found.append((int(match[1]), child))
    return sorted(found)


def prepare_output_dir(options: FinetuneOptions) -> Path | None:
    """Check the output folder against `resume`/`force`; return the checkpoint to resume from (or None).

    - `resume`: the newest complete checkpoint, refused (ValueError) when the run-defining options differ from the
      ones it was written with; None (a fresh start) when there is none yet;
    - `force`: the old checkpoints and log are removed, the final model files replaced when written;
    - otherwise a folder holding anything (but temporaries of killed writes) is refused with FileExistsError.
    Raises NotADirectoryError when `output_dir` is a file.
    """
    folder = Path(options.output_dir)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"--output-dir {folder} is a file, not a folder")
    if options.resume:
        found = checkpoints(folder)
        if not found:
            raise FileNotFoundError(
                f"--resume: {folder} holds no checkpoint to resume from (a run writes one every --save-steps); "
                "start without --resume (with --force if the folder is not empty)"
            )
        saved = read_state(found[-1][1])
        if saved["step"] != found[-1][0]:
            raise ValueError(f"{found[-1][1] / STATE_FILE} says step {saved['step']}: the folder is another step's")
        changed = options.changed_from(saved["options"])
        if changed:
            detail = ", ".join(f"{n} {saved['options'].get(n)!r} -> {options.to_json()[n]!r}" for n in changed)
            raise ValueError(
                f"cannot resume {found[-1][1]}: it was written with other options ({detail}); resume with the same "
                f"options, or start a new run from it (--model {found[-1][1]} --output-dir NEW_DIR)"
            )
        return found[-1][1]
    contents = [child for child in folder.iterdir() if not is_temp_name(child.name)] if folder.is_dir() else []
    if contents and not options.force:
        raise FileExistsError(
            f"--output-dir {folder} is not empty ({len(contents)} entries, e.g. {contents[0].name}): pass --resume "
            "to continue its run or --force to start over in it"
        )
    for _, checkpoint in checkpoints(folder):
        shutil.rmtree(checkpoint)
    (folder / LOG_FILE).unlink(missing_ok=True)
    return None


def prune_checkpoints(output_dir: str | Path, keep: int | None) -> list[Path]:
    """Remove all but the newest `keep` complete checkpoints (None: keep all); returns those removed."""
    found = checkpoints(output_dir)
    if keep is None or len(found) <= keep:
        return []
    removed = [folder for _, folder in found[: len(found) - keep]]
    for folder in removed:
        shutil.rmtree(folder)
    return removed


LOCK_FILE = ".blip-finetune.lock"


class RunLock:
    """The output folder's lock, held by the run's writing process: a second run into the same folder (resumed, or
    started by mistake) is refused while the first lives. A lock whose process is gone (killed) is taken over."""

    def __init__(self, output_dir: str | Path) -> None:
        self.path = Path(output_dir) / LOCK_FILE
        self.held = False

    def acquire(self) -> None:
        """Raises FileExistsError naming the live process that holds the folder."""
        for _ in range(2):
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    owner = int(self.path.read_text().strip() or "0")
                except (OSError, ValueError):
                    owner = 0
                if owner and owner != os.getpid() and _alive(owner):
                    raise FileExistsError(
                        f"another blip finetune (process {owner}) is writing to {self.path.parent}; wait for it or "
                        "stop it first"
                    ) from None
                self.path.unlink(missing_ok=True)  # its process is gone: a killed run's
                continue
            with os.fdopen(descriptor, "w") as stream:
                stream.write(str(os.getpid()))
            self.held = True
            return

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_resumable(state: dict[str, Any], total: int, world_size: int, checkpoint: Path) -> None:
    """Raises ValueError when a checkpoint's step lies beyond the run's last step; warns when it was written by
    another number of workers (the same examples per step; AdamW may drift by float noise)."""
    if state["step"] > total:
        raise ValueError(f"{checkpoint}: step {state['step']} lies beyond this run's {total} steps")
    saved = state.get("world_size")
    if isinstance(saved, int) and saved != world_size:
        warnings.warn(
            f"resuming with {world_size} worker(s) a run checkpointed by {saved}: every step trains on the same "
            "examples, but gradients are summed in another order, and AdamW may drift from the uninterrupted run "
            "by float noise",
            stacklevel=2,
        )


def checkpoint_state(
    step: int, epoch: float, framework: str, world_size: int, num_examples: int, options: FinetuneOptions,
    history: list[dict[str, Any]],
) -> dict[str, Any]:  # fmt: skip
    """What trainer_state.json records of a run at `step` (`read_state` and the resume checks read it)."""
    return {"step": step, "epoch": epoch, "framework": framework, "world_size": world_size,
            "num_examples": num_examples, "options": options.to_json(), "log_history": history}  # fmt: skip


def write_state(folder: Path, state: dict[str, Any]) -> None:
    """trainer_state.json (atomically)."""
    atomic_write_text(folder / STATE_FILE, json.dumps({"version": STATE_VERSION, **state}, indent=1))


def read_state(folder: str | Path) -> dict[str, Any]:
    """A checkpoint's trainer_state.json. Raises ValueError for a file that is not one."""
    path = Path(folder) / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a readable trainer state: {error}") from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise ValueError(f"{path} is not a trainer state of this library (version {STATE_VERSION})")
    step, options = state.get("step"), state.get("options")
    if not isinstance(step, int) or step < 0 or not isinstance(options, dict):
        raise ValueError(f"{path}: expected an integer 'step' >= 0 and an 'options' object")
    return state


def check_same_data(state: dict[str, Any], num_examples: int, checkpoint: Path) -> None:
    """Raises ValueError when a resumed run reads another number of training examples than the checkpoint's run
    did: its steps would be other examples (the data position is the step in a seeded order over them)."""
    saved = state.get("num_examples")
    if saved is not None and saved != num_examples:
        raise ValueError(
            f"cannot resume {checkpoint}: its run trained on {saved} examples, the data now holds {num_examples}; "
            "resume on the same data, or --force to start over"
        )


def write_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A safetensors file of NumPy arrays (atomically)."""
    write_safetensors(path, {name: np.array(value, order="C") for name, value in arrays.items()})  # 0-d stays 0-d


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file. Raises ValueError (SafetensorsError) for a damaged one."""
    file = SafetensorsFile(path)
    return {name: file.get(name) for name in file.keys()}


def append_log(output_dir: Path, record: dict[str, Any]) -> None:
    """One line of log.jsonl."""
    with open(Path(output_dir) / LOG_FILE, "a", encoding="utf-8") as stream:
        stream.write(json.dumps(record) + "\n")
