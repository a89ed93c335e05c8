"""Reading the JSON settings files of a checkpoint (`config.json`, `generation_config.json`, the tokenizer's and
image processor's files) with bounds and errors that name the file, and the warning for remote-code keys."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

# config.json keys with which `transformers` imports and runs Python files of a checkpoint (with
# trust_remote_code=True). blip-dual never does: its code is this library's. A load that meets one says so.
REMOTE_CODE_KEYS = ("auto_map", "custom_pipelines")



# The largest JSON settings file read (config.json, tokenizer_config.json, ...): real ones hold kilobytes
# (a tokenizer config listing thousands of added tokens, a few MB). Read in full only below this.
MAX_JSON_BYTES = 32 * 2**20


def read_config_json(path: Path) -> dict[str, Any]:
    """Parse a JSON settings file (a config, tokenizer or image processor file) into a dict.

    Raises:
        ValueError: naming the file: unreadable, over `MAX_JSON_BYTES`, not UTF-8, not JSON, nested too
            deeply, or not a JSON object at the top.
    """
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_JSON_BYTES + 1)
    except OSError as err:
        raise ValueError(f"cannot read config file {path}: {err.strerror or err}") from None
    if len(raw) > MAX_JSON_BYTES:
        raise ValueError(f"{path} is larger than {MAX_JSON_BYTES // 2**20} MiB: not a settings file")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text: {err.reason} at byte {err.start}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err.msg} at line {err.lineno}") from None
    except RecursionError:
        raise ValueError(f"{path} is not a settings file: JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, found {type(data).__name__}")
    return data


def warn_remote_code(data: dict[str, Any], path: Any) -> None:
    """One UserWarning when a `config.json` asks for code of its own (`REMOTE_CODE_KEYS`): blip-dual never
    imports or runs a checkpoint's files, with or without `trust_remote_code=True`."""
    found = [key for key in REMOTE_CODE_KEYS if data.get(key)]
    if found:
        warnings.warn(
            f"{path} names remote code ({', '.join(found)}): ignored. blip-dual never imports or runs Python "
            "files of a checkpoint (trust_remote_code has no effect); the model is built by this library's own "
            "BLIP classes",
            UserWarning,
            stacklevel=4,
        )
