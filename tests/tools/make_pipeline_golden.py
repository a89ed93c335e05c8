"""Record `transformers` 4.57.6's pipeline results for the call forms in tests/helpers/pipeline_cases.py.

Run with the oracle environment (transformers==4.57.6, torch 2.13, blip-dual installed editable
with --no-deps, so blip_torch can build the seeded zero-shot model exactly as the tests do):

    python -m venv .venv-oracle && .venv-oracle/bin/pip install torch==2.13.0 'transformers==4.57.6'
    .venv-oracle/bin/pip install --no-deps -e .
    .venv-oracle/bin/python -m tests.tools.make_pipeline_golden

Writes tests/golden/pipelines.json: for each case the result as `plain` data (iterators kept
apart from lists) or the exception's type; the ITM logits and ITC cosines of `transformers`'
BlipForImageTextRetrieval for the zero-shot and image-text-matching checks (no transformers
pipeline runs BLIP's ITM head); versions and the digests of the weights used.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
import transformers
from transformers.pipelines.pt_utils import KeyDataset

from tests.helpers.pipeline_cases import CASES, ERROR_CASES, Case, Env, make_env, plain
from tests.helpers.pipeline_models import model_folders, weights_digest, write_zero_shot_model

GOLDEN = Path(__file__).resolve().parents[2] / "tests" / "golden" / "pipelines.json"
ITM_TEXTS = ["three yellow squares on a white background", "a dog", "two red triangles"]


def run_case(folders: dict[str, Path], case: Case, env: Env) -> dict:
    pipe = transformers.pipeline(case.task, model=str(folders[case.model]), **case.init)
    args, kwargs = case.call(env)
    try:
        return {"result": plain(pipe(*args, **kwargs))}
    except Exception as err:  # noqa: BLE001 - the exception's type is what is recorded
        return {"error": type(err).__name__, "message": str(err)}


def retrieval_scores(folder: Path, env: Env) -> dict:
    """transformers' ITM logits (image x text pairs) and ITC cosines for images 0 and 3."""
    processor = transformers.BlipProcessor.from_pretrained(folder)
    model = transformers.BlipForImageTextRetrieval.from_pretrained(folder, dtype=torch.float32).eval()
    texts = ITM_TEXTS + [f"This is a photo of {label}." for label in ("square", "circle", "triangle")]
    out: dict = {"texts": texts, "itm_logits": [], "itc_cosine": []}
    for image in (env.images[0], env.images[3]):
        batch = processor(images=[image] * len(texts), text=texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            out["itm_logits"].append(model(**batch, use_itm_head=True).itm_score.tolist())
            out["itc_cosine"].append(model(**batch, use_itm_head=False).itm_score[0].tolist())
    return out


def main() -> None:
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        folders = model_folders(write_zero_shot_model(Path(tmp) / "zero_shot"))
        env = make_env(Path(tmp), KeyDataset)
        cases = {case.name: run_case(folders, case, env) for case in CASES}
        errors = {case.name: run_case(folders, case, env) for case in ERROR_CASES}
        record = {
            "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
            "weights": {key: weights_digest(folder) for key, folder in folders.items()},
            "cases": cases,
            "errors": errors,
            "retrieval": retrieval_scores(folders["itm"], env),
        }
    GOLDEN.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    failed = sorted(name for name, value in cases.items() if "error" in value)
    print(f"wrote {GOLDEN} ({len(cases)} cases; transformers raised in {failed or 'none'})")


if __name__ == "__main__":
    main()
