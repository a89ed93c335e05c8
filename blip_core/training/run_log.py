"""What a fine-tuning run reports while it trains (framework-neutral; only the first worker reports).

A progress bar (`tqdm`, when installed; otherwise one line per logging step on stderr), `log.jsonl` in the output
folder (one object per logged step: step, epoch, loss, learning_rate; and per evaluation: the task's metrics), and
TensorBoard scalars through the framework's own writer when one is given (`torch.utils.tensorboard` when the
`tensorboard` package is installed; `tf.summary` in TensorFlow).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from blip_core.io.atomic import atomic_write_text
from blip_core.training.run_folder import LOG_FILE, append_log


class RunLog:
    """Reports of one run. `scalar` is `(tag, value, step) -> None` writing a TensorBoard scalar, or None."""

    def __init__(
        self,
        output_dir: Path,
        total_steps: int,
        start_step: int,
        active: bool,
        progress: bool = True,
        scalar: Callable[[str, float, int], None] | None = None,
        history: Any = None,
    ) -> None:
        """`history`: the records of the run so far (a resumed checkpoint's `log_history`; kept when it is a list
        of JSON objects)."""
        self.output_dir, self.active, self.scalar = Path(output_dir), active, scalar
        valid = active and isinstance(history, list) and all(isinstance(record, dict) for record in history)
        self.history: list[dict[str, Any]] = list(history) if valid else []
        if active:  # a resumed run's log is its checkpoint's: lines a killed run wrote after it are redone
            atomic_write_text(self.output_dir / LOG_FILE, "".join(json.dumps(r) + "\n" for r in self.history))
        self.bar = None
        if active and progress:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total_steps, initial=start_step, desc="finetune", unit="step", file=sys.stderr)
            except ImportError:
                self.bar = None
        self.plain = active and progress and self.bar is None

    def record(self, step: int, values: dict[str, float], logged: bool) -> None:
        """After optimizer step `step` (1-based count of steps done): advance the bar; when `logged`, write the
        values to log.jsonl and TensorBoard (as `train/<name>`)."""
        if not self.active:
            return
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{values['loss']:.4f}", lr=f"{values['learning_rate']:.3g}", refresh=False)
            self.bar.update(1)
        if logged:
            self._write({"step": step, **values}, "train")
            if self.plain:
                print(f"step {step}: " + ", ".join(f"{k} {v:.6g}" for k, v in values.items()), file=sys.stderr)

    def train_step(self, step: int, loss: float, learning_rate: float, epoch: float, logged: bool) -> None:
        """`record` one optimizer step's loss; raises ValueError (after recording it) when the loss is NaN or
        infinite: the run diverged, and the checkpoints before it are what is worth keeping."""
        self.record(step, {"loss": loss, "learning_rate": learning_rate, "epoch": epoch}, logged)
        if not math.isfinite(loss):
            raise ValueError(
                f"the loss is {loss} at step {step}: training diverged (lower --learning-rate); the checkpoints "
                "before this step are kept"
            )

    def evaluation(self, step: int, metrics: dict[str, float]) -> None:
        """Held-out metrics after step `step`, as `eval/<name>`."""
        if not self.active:
            return
        self._write({"step": step, **{f"eval_{k}": v for k, v in metrics.items()}}, None)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        if self.bar is not None:
            self.bar.write(f"step {step} held-out: {shown}", file=sys.stderr)
        else:
            print(f"step {step} held-out: {shown}", file=sys.stderr)
        if self.scalar is not None:
            for name, value in metrics.items():
                self.scalar(f"eval/{name}", float(value), step)

    def _write(self, record: dict[str, Any], scope: str | None) -> None:
        self.history.append(record)
        append_log(self.output_dir, record)
        if self.scalar is not None and scope is not None:
            for name, value in record.items():
                if name != "step":
                    self.scalar(f"{scope}/{name}", float(value), record["step"])

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
