"""Run the generation cases through blip_torch or blip_tf, once per process (the TF runs compile).

`outputs(framework, case)` returns what the oracle script records, by the same
names: `sequences`, `scores`/`logits` (stacked steps), `sequences_scores`,
`beam_indices`, `transition` and `transition_normalized`.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from blip_core.config.generation_config import GenerationConfig
from tests.helpers.checkpoints import write_generation_checkpoint
from tests.helpers.compare import to_numpy
from tests.helpers.generation_cases import SETUPS, GenCase, make_generation_inputs

INPUTS = make_generation_inputs()
_ROOT = Path(tempfile.mkdtemp(prefix="blip-generation-cases-"))
_MODELS: dict[tuple, Any] = {}
_OUTPUTS: dict[tuple, dict[str, np.ndarray]] = {}


def checkpoint(class_name: str, variant: str) -> Path:
    folder = _ROOT / f"{class_name}-{variant}"
    if not (folder / "config.json").is_file():
        write_generation_checkpoint(class_name, variant, folder)
    return folder


def onnx_export(class_name: str, variant: str) -> Path:
    """The checkpoint exported by `blip-convert to-onnx` (once per process)."""
    folder = _ROOT / f"{class_name}-{variant}-onnx"
    if not folder.is_dir():
        from blip_conversion.onnx_export import export_onnx

        export_onnx(checkpoint(class_name, variant), folder)
    return folder


def load(framework: str, class_name: str, variant: str, fresh: bool = False) -> Any:
    """A model of the generation-weights `variant` (cached unless `fresh`); "onnx": its ONNX export."""
    key = (framework, class_name, variant)
    if fresh or key not in _MODELS:
        if framework == "onnx":
            import blip_onnx

            model = getattr(blip_onnx, "Onnx" + class_name).from_pretrained(onnx_export(class_name, variant))
        elif framework == "pt":
            import blip_torch

            model = getattr(blip_torch, class_name).from_pretrained(checkpoint(class_name, variant))
        else:
            import blip_tf

            model = getattr(blip_tf, "TF" + class_name).from_pretrained(checkpoint(class_name, variant))
        if fresh:
            return model
        _MODELS[key] = model
    return _MODELS[key]


def arguments(framework: str, case: GenCase) -> dict[str, Any]:
    arrays = {arg: INPUTS[key].copy() for arg, key in case.inputs.items()}
    if framework == "pt":
        import torch

        return {arg: torch.from_numpy(value) for arg, value in arrays.items()}
    return arrays


def call(framework: str, case: GenCase) -> Any:
    """`generate` of the case, as a `transformers` program would call it."""
    model = load(framework, case.class_name, case.variant, fresh=case.setup is not None)
    inputs = arguments(framework, case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extra = SETUPS[case.setup](model, GenerationConfig, inputs) if case.setup else {}
        return model, model.generate(**inputs, **case.kwargs, **extra, **({"seed": 0} if case.first_step_only else {}))


def flatten_generation(model: Any, out: Any) -> dict[str, np.ndarray]:
    """The arrays the oracle records, from a tensor of ids or a dict output."""
    if not hasattr(out, "sequences"):
        return {"sequences": to_numpy(out)}
    found = {"sequences": to_numpy(out.sequences)}
    for key in ("scores", "logits"):
        if getattr(out, key, None) is not None:
            found[key] = np.stack([to_numpy(step) for step in out[key]])
    for key in ("sequences_scores", "beam_indices"):
        if getattr(out, key, None) is not None:
            found[key] = to_numpy(out[key])
    if getattr(out, "scores", None) is not None:
        indices = getattr(out, "beam_indices", None)
        for normalize in (False, True):
            scores = model.compute_transition_scores(out.sequences, out.scores, indices, normalize_logits=normalize)
            found["transition_normalized" if normalize else "transition"] = to_numpy(scores)
    return found


def outputs(framework: str, case: GenCase) -> dict[str, np.ndarray]:
    key = (framework, case.name)
    if key not in _OUTPUTS:
        _OUTPUTS[key] = flatten_generation(*call(framework, case))
    return _OUTPUTS[key]


def finite(values: np.ndarray) -> np.ndarray:
    """Scores with infinities replaced by huge finite numbers, so that masks compare as values."""
    return np.nan_to_num(values.astype(np.float64), posinf=1e30, neginf=-1e30)


def compared(case: GenCase, found: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What a case compares: every recorded output, but only the deterministic first step of sampling, and
    for group beam search (whose `beam_indices` in transformers 4.56 are group-local) ids and scores."""
    if case.first_step_only:
        return {"scores0": finite(found["scores"][:1])}
    kept = dict(found)
    if case.oracle == "4.56":
        kept = {k: v for k, v in kept.items() if k in ("sequences", "sequences_scores")}
        if "scores" in found:
            kept["scores0"] = found["scores"][:1]
    return {k: finite(v) if v.dtype.kind == "f" else v for k, v in kept.items()}
