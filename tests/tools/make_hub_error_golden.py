"""Record the exception types `transformers` 4.57.6 raises when a model cannot be found: missing local paths,
folders without the files, and each `huggingface_hub` error a Hub download can raise (mocked: no network).

    PYTHONPATH=. .venv-oracle/bin/python -m tests.tools.make_hub_error_golden

(`.venv-oracle`: transformers 4.57.6, torch, huggingface_hub 0.36; see tests/tools/make_torch_golden.py.)
Writes tests/golden/hub_errors.json: per case, the raised type's class hierarchy (names), the type of its
`__cause__`, and the first line of its message. tests/core/test_hub_errors.py checks that blip-dual's error
for the same case is an instance of every one of those types.
"""

from __future__ import annotations

import inspect
import json
import os
import tempfile
from pathlib import Path
from unittest import mock

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing reaches the network; Hub answers are mocked

import huggingface_hub  # noqa: E402
import requests  # noqa: E402
import transformers  # noqa: E402
from huggingface_hub import errors  # noqa: E402

GOLDEN = Path(__file__).resolve().parents[2] / "tests" / "golden" / "hub_errors.json"
REPO = "Salesforce/blip-missing-for-tests"


def hub_error(cls: type, status: int) -> Exception:
    """A `huggingface_hub` error as its client raises it (HTTP errors carry a response)."""
    if "response" in inspect.signature(cls).parameters:
        response = requests.Response()
        response.status_code = status
        return cls(f"{status} Client Error (mocked)", response=response)
    return cls("mocked")


# case -> (hf error class or None, HTTP status); None means a real local-path case.
HUB_CASES = {
    "repository_not_found": (errors.RepositoryNotFoundError, 404),
    "gated_repo": (errors.GatedRepoError, 403),
    "revision_not_found": (errors.RevisionNotFoundError, 404),
    "entry_not_found": (errors.EntryNotFoundError, 404),
    "http_error": (errors.HfHubHTTPError, 500),
    "not_cached_or_unreachable": (errors.LocalEntryNotFoundError, 0),
}


def describe(error: BaseException) -> dict:
    cause = error.__cause__
    return {
        "types": [cls.__name__ for cls in type(error).__mro__ if cls not in (BaseException, object)],
        "cause": type(cause).__name__ if cause is not None else None,
        "message": str(error).splitlines()[0][:200],
    }


def attempt(load) -> dict:
    try:
        load()
    except Exception as error:  # noqa: BLE001 - whatever transformers raises is the record
        return describe(error)
    raise AssertionError("no error raised")


def local_cases(folder: Path) -> dict:
    empty, config_only = folder / "empty", folder / "config_only"
    empty.mkdir()
    config_only.mkdir()
    transformers.BlipConfig().save_pretrained(config_only)
    model = transformers.BlipForConditionalGeneration
    return {
        "model_missing_absolute_path": attempt(lambda: model.from_pretrained(str(folder / "no" / "such"))),
        "model_missing_relative_path": attempt(lambda: model.from_pretrained("./no-such-folder")),
        "model_file_path": attempt(lambda: model.from_pretrained(str(config_only / "config.json"))),
        "model_empty_folder": attempt(lambda: model.from_pretrained(str(empty))),
        "model_folder_without_weights": attempt(lambda: model.from_pretrained(str(config_only))),
        "config_missing_path": attempt(lambda: transformers.BlipConfig.from_pretrained(str(folder / "no" / "such"))),
        "processor_empty_folder": attempt(lambda: transformers.BlipImageProcessor.from_pretrained(str(empty))),
    }


def hub_cases() -> dict:
    records = {}
    for case, (cls, status) in HUB_CASES.items():
        error = hub_error(cls, status)
        with mock.patch("transformers.utils.hub.hf_hub_download", side_effect=error):
            records[case] = attempt(lambda: transformers.BlipForConditionalGeneration.from_pretrained(REPO))
    return records


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        records = {**local_cases(Path(folder)), **hub_cases()}
    made_by = {"transformers": transformers.__version__, "huggingface_hub": huggingface_hub.__version__}
    GOLDEN.write_text(json.dumps({"made_by": made_by, "cases": records}, indent=1, sort_keys=True) + "\n")
    print("wrote", GOLDEN)


if __name__ == "__main__":
    main()
