"""Record `transformers.BlipImageProcessorFast` (4.57.6) outputs as golden data.

`transformers`' fast processor needs torchvision, which cannot be installed
beside the repository's torch 2.13. Make a separate oracle venv (5.5 GB; pip
takes both wheels from the machine's local disk) and run from the repo root:

    python3 -m venv /work/venvs/oracle-tv
    /work/venvs/oracle-tv/bin/pip install torch==2.14.1 torchvision==0.29.1 transformers==4.57.6 \\
        pillow==13.0.0 numpy==2.4.6 scikit-image
    /work/venvs/oracle-tv/bin/python -m tests.tools.make_fast_processor_golden

It writes tests/golden/fast_processor.npz and tests/golden/fast_processor.json:

- `case/<name>`: the fast processor's `pixel_values` for `tests.helpers.fast_processor_cases.CASES`,
  on the CPU, as `transformers` runs it by default;
- `gpu_path/<name>`: the same for uint8 cases with torchvision's float resize (what it does on a GPU
  or a CPU without its native uint8 kernel): the resize is then computed in float, without rounding
  between the two passes;
- `levels/<name>`: uint8 images resized by torchvision alone (`RESIZE_CASES`), full or as SHA-256;
- the JSON: shapes, SHA-256s, the saved `preprocessor_config.json` of a default fast processor, and
  which class `AutoImageProcessor` / `BlipProcessor.from_pretrained` pick for each `use_fast`.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np
import PIL
import torch
import torchvision
import transformers
from torchvision.transforms.v2 import functional as tvf
from transformers.image_utils import pil_torch_interpolation_mapping

from tests.helpers.fast_processor_cases import CASES, FULL_LEVELS, RESIZE_CASES
from tests.helpers.images import photo

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
GPU_PATH_CASES = ("pil_astronaut_down", "numpy_chw_up", "mixed_up_down", "batch_mixed_sizes", "resample_bilinear")


def stamp() -> dict[str, str]:
    return {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pillow": PIL.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def run_cases(arrays: dict[str, np.ndarray], meta: dict[str, dict]) -> None:
    for name, make_inputs, call_kwargs, init_kwargs in CASES:
        processor = transformers.BlipImageProcessorFast(**init_kwargs)
        out = processor(make_inputs("pt"), return_tensors="pt", **call_kwargs)["pixel_values"].numpy()
        arrays[f"case/{name}"] = out
        meta[name] = {"shape": list(out.shape), "dtype": str(out.dtype), "sha256": sha256(out)}


def run_gpu_path(arrays: dict[str, np.ndarray]) -> None:
    """torchvision's resize as on a GPU: float interpolation, then clamp and round to uint8."""
    geometry = tvf._geometry
    native = geometry._do_native_uint8_resize_on_cpu
    geometry._do_native_uint8_resize_on_cpu = lambda interpolation: False
    try:
        for name, make_inputs, call_kwargs, init_kwargs in CASES:
            if name in GPU_PATH_CASES:
                processor = transformers.BlipImageProcessorFast(**init_kwargs)
                arrays[f"gpu_path/{name}"] = processor(make_inputs("pt"), return_tensors="pt", **call_kwargs)[
                    "pixel_values"
                ].numpy()
    finally:
        geometry._do_native_uint8_resize_on_cpu = native


def run_resizes(arrays: dict[str, np.ndarray], meta: dict[str, dict]) -> None:
    for name, photo_name, height, width, resample in RESIZE_CASES:
        image = torch.from_numpy(photo(photo_name)).permute(2, 0, 1).contiguous()
        interpolation = pil_torch_interpolation_mapping[resample]
        levels = tvf.resize(image, [height, width], interpolation=interpolation, antialias=True).numpy()
        assert levels.dtype == np.uint8
        meta[name] = {"shape": list(levels.shape), "sha256": sha256(levels), "mean": float(levels.mean())}
        if name in FULL_LEVELS:
            arrays[f"levels/{name}"] = levels


def saved_config() -> dict:
    with tempfile.TemporaryDirectory() as folder:
        transformers.BlipImageProcessorFast().save_pretrained(folder)
        return json.loads((Path(folder) / "preprocessor_config.json").read_text())


def auto_choices() -> dict[str, dict[str, str]]:
    """Class chosen by AutoImageProcessor and BlipProcessor for each saved type and use_fast."""
    choices: dict[str, dict[str, str]] = {}
    tokenizer_folder = ROOT / "tests" / "fixtures" / "tokenizer"
    for saved in ("BlipImageProcessor", "BlipImageProcessorFast", None):
        with tempfile.TemporaryDirectory() as folder:
            config = {"size": {"height": 24, "width": 24}, "do_pad": True, "size_divisor": 32}
            if saved is not None:
                config["image_processor_type"] = saved
            (Path(folder) / "preprocessor_config.json").write_text(json.dumps(config))
            transformers.BlipConfig().save_pretrained(folder)  # config.json, read when the type is missing
            transformers.BertTokenizerFast.from_pretrained(tokenizer_folder).save_pretrained(folder)
            row = {}
            for use_fast in (None, True, False):
                options = {} if use_fast is None else {"use_fast": use_fast}
                auto = transformers.AutoImageProcessor.from_pretrained(folder, **options)
                processor = transformers.BlipProcessor.from_pretrained(folder, **options)
                row[f"auto/{use_fast}"] = type(auto).__name__
                row[f"processor/{use_fast}"] = type(processor.image_processor).__name__
            choices[str(saved)] = row
    return choices


def main() -> None:
    arrays: dict[str, np.ndarray] = {}
    cases: dict[str, dict] = {}
    resizes: dict[str, dict] = {}
    run_cases(arrays, cases)
    run_gpu_path(arrays)
    run_resizes(arrays, resizes)
    data = {
        "made_by": stamp(),
        "cases": cases,
        "resizes": resizes,
        "saved_config": saved_config(),
        "auto_choices": auto_choices(),
    }
    np.savez_compressed(GOLDEN / "fast_processor.npz", **arrays)
    (GOLDEN / "fast_processor.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print("wrote", GOLDEN / "fast_processor.npz", "and", GOLDEN / "fast_processor.json")


if __name__ == "__main__":
    main()
