"""Record which exception types `transformers` 4.57.6 raises for unreadable image inputs.

Run from the repository root in the oracle venv (`pip install -e '.[torch,test,oracle]'`, or
/work/main/.venv-oracle, which has `transformers` and `requests`):

    python -m tests.tools.make_image_error_golden

For each case of `tests.helpers.image_error_cases` it calls `transformers.image_utils.load_image`
(a path, URL or base64 string) or `transformers.BlipImageProcessor` (a lazily opened PIL image),
and writes the raised exception's classes (its MRO up to `Exception`) and message to
tests/golden/image_errors.json. blip-dual must raise an instance of every class listed, and ValueError.
Only loopback connections are made.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import PIL
import PIL.Image
import requests
import transformers
from transformers.image_utils import load_image

from tests.helpers.image_error_cases import BOMB_PIXEL_LIMIT, CASES, ImageServer, build

GOLDEN = Path(__file__).resolve().parents[2] / "tests" / "golden"


def class_names(error: BaseException) -> list[str]:
    names = []
    for cls in type(error).__mro__:
        if cls in (Exception, BaseException, object):
            break
        names.append(f"{cls.__module__}.{cls.__qualname__}")
    return names


def run_case(name: str, folder: Path, server: ImageServer) -> dict:
    source = build(name, folder, server)
    limit = PIL.Image.MAX_IMAGE_PIXELS
    if name == "decompression_bomb":
        PIL.Image.MAX_IMAGE_PIXELS = BOMB_PIXEL_LIMIT
    try:
        if CASES[name] == "pil":
            transformers.BlipImageProcessor()(source)
        else:
            load_image(source, timeout=10)
    except Exception as error:  # noqa: BLE001 (recording whatever it raises is the point)
        return {"types": class_names(error), "message": str(error).replace(str(folder), "<tmp>")[:300]}
    finally:
        PIL.Image.MAX_IMAGE_PIXELS = limit
    raise AssertionError(f"case {name}: transformers raised nothing")


def main() -> None:
    with tempfile.TemporaryDirectory() as folder, ImageServer() as server:
        cases = {name: run_case(name, Path(folder), server) for name in CASES}
    stamp = {"transformers": transformers.__version__, "pillow": PIL.__version__, "requests": requests.__version__}
    data = {"made_by": stamp, "cases": cases}
    (GOLDEN / "image_errors.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print("wrote", GOLDEN / "image_errors.json")


if __name__ == "__main__":
    main()
