"""Record what `transformers` 4.57.6 does with the keyword arguments of `from_pretrained` and `save_pretrained`.

    PYTHONPATH=. .venv-oracle/bin/python -m tests.tools.make_loading_options_golden

(`.venv-oracle`: transformers 4.57.6, torch, huggingface_hub 0.36; see tests/tools/make_torch_golden.py.)
Writes tests/golden/loading_options.json:

- `from_pretrained`: per case (`LOAD_CASES`), `BlipForConditionalGeneration.from_pretrained` on the committed
  fixture `tests/fixtures/hf_checkpoints/caption_safetensors`: "ok" and the config / generation-config values it
  left, or the exception's class names (its MRO) and first message line.
- `config_kwargs`: `BlipConfig.from_pretrained` with overrides: unused kwargs, a merged `text_config`.
- `save`: per class, the files and the index JSON text `save_pretrained(max_shard_size=SHARD_BYTES)` writes for the
  tiny seeded model (`tests.helpers.tiny`), safetensors and `pytorch_model.bin` with `variant="fp16"`.
- `cleanup`: the files left when a second save follows a first one in another layout.
- `shard_sizes`: `huggingface_hub`'s reading of `max_shard_size` strings (what `save_pretrained` uses).
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

os.environ["HF_HUB_OFFLINE"] = "1"

import torch  # noqa: E402
import transformers  # noqa: E402
from huggingface_hub.serialization._base import parse_size_to_int  # noqa: E402

from tests.helpers.tiny import TINY_TEXT, TINY_TOP, TINY_VISION, VQA_TEXT, seeded_weights, weights_hash  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "loading_options.json"
FIXTURES = ROOT / "tests" / "fixtures" / "hf_checkpoints"
CAPTION = FIXTURES / "caption_safetensors"
CAPTION_BIN = FIXTURES / "caption_bin"
SHARD_BYTES = 40_000
CLASSES = (
    "BlipVisionModel",
    "BlipTextModel",
    "BlipTextLMHeadModel",
    "BlipModel",
    "BlipForConditionalGeneration",
    "BlipForImageTextRetrieval",
    "BlipForQuestionAnswering",
)
# (case name, keyword arguments, folder); JSON-able so the test passes the same ones.
LOAD_CASES: list[tuple[str, dict[str, Any], str]] = [
    *(
        (f"inert {name}", {name: value}, "caption")
        for name, value in [
            ("low_cpu_mem_usage", True),
            ("from_tf", False),
            ("from_flax", False),
            ("_fast_init", False),
            ("resume_download", True),
            ("proxies", {"https": "http://127.0.0.1:9"}),
            ("trust_remote_code", True),
            ("force_download", False),
            ("mirror", "x"),
            ("offload_state_dict", True),
            ("weights_only", False),
            ("revision", "main"),
            ("subfolder", ""),
            ("use_auth_token", None),
        ]
    ),
    *(
        (f"off {name}", {name: value}, "caption")
        for name, value in [
            ("load_in_8bit", False),
            ("load_in_4bit", False),
            ("quantization_config", None),
            ("gguf_file", None),
            ("tp_plan", None),
            ("key_mapping", None),
            ("device_mesh", None),
            ("max_memory", None),
            ("offload_folder", None),
            ("use_kernels", False),
            ("state_dict", None),
        ]
    ),
    ("override output_attentions", {"output_attentions": True}, "caption"),
    ("override num_beams", {"num_beams": 3}, "caption"),
    ("override max_length", {"max_length": 7}, "caption"),
    ("override text_config", {"text_config": {"num_beams": 4}}, "caption"),
    ("override unknown", {"foo": 1}, "caption"),
    ("state_dict given", {"state_dict": {}}, "caption"),
    ("attn None", {"attn_implementation": None}, "caption"),
    ("attn eager", {"attn_implementation": "eager"}, "caption"),
    ("attn sdpa", {"attn_implementation": "sdpa"}, "caption"),
    ("attn flash_attention_2", {"attn_implementation": "flash_attention_2"}, "caption"),
    ("attn bogus", {"attn_implementation": "bogus"}, "caption"),
    ("output_loading_info", {"output_loading_info": True}, "caption"),
    ("token and use_auth_token", {"token": "a", "use_auth_token": "b"}, "caption"),
    ("use_safetensors True without safetensors", {"use_safetensors": True}, "caption_bin"),
    ("use_safetensors False with only safetensors", {"use_safetensors": False}, "caption"),
    ("variant missing", {"variant": "fp16"}, "caption"),
    ("ignore_mismatched_sizes True, nothing mismatched", {"ignore_mismatched_sizes": True}, "caption"),
    ("dtype auto", {"dtype": "auto"}, "caption"),
    ("torch_dtype name", {"torch_dtype": "bfloat16"}, "caption"),
]
FOLDERS = {"caption": CAPTION, "caption_bin": CAPTION_BIN}
RECORDED = ("output_attentions", "num_beams", "max_length", "_attn_implementation")


def _error(err: BaseException) -> dict[str, Any]:
    return {"raises": [cls.__name__ for cls in type(err).__mro__], "message": str(err).splitlines()[0][:300]}


def _outcome(result: Any) -> dict[str, Any]:
    model, info = result if isinstance(result, tuple) else (result, None)
    config = {name: getattr(model.config, name, None) for name in RECORDED}
    config["text_config.num_beams"] = model.config.text_config.num_beams
    config["text_config.hidden_size"] = model.config.text_config.hidden_size
    generation = {name: getattr(model.generation_config, name, None) for name in ("num_beams", "max_length")}
    generation["output_attentions"] = getattr(model.generation_config, "output_attentions", None)
    out = {"ok": True, "config": config, "generation": generation, "dtype": str(model.dtype).replace("torch.", "")}
    if info is not None:
        out["loading_info"] = {key: list(value) for key, value in info.items()}
    return out


def load_cases() -> dict[str, Any]:
    out = {}
    for name, kwargs, folder in LOAD_CASES:
        try:
            result = transformers.BlipForConditionalGeneration.from_pretrained(FOLDERS[folder], **kwargs)
        except Exception as err:  # recorded, whatever it is
            out[name] = {"kwargs": kwargs, "folder": folder, **_error(err)}
            continue
        out[name] = {"kwargs": kwargs, "folder": folder, **_outcome(result)}
    config = transformers.BlipConfig.from_pretrained(CAPTION)
    try:
        transformers.BlipForConditionalGeneration.from_pretrained(CAPTION, config=config, output_attentions=True)
    except Exception as err:
        out["config object with an override"] = _error(err)
    model = transformers.BlipForConditionalGeneration.from_pretrained(CAPTION, config=config)
    out["config object is copied"] = {"same_object": model.config is config}
    return out


def config_kwargs() -> dict[str, Any]:
    _, unused = transformers.BlipConfig.from_pretrained(
        CAPTION, foo=1, output_attentions=True, variant="x", return_unused_kwargs=True
    )
    merged = transformers.BlipConfig.from_pretrained(CAPTION, text_config={"num_beams": 4})
    return {
        "unused": unused,
        "unknown_is_set": hasattr(transformers.BlipConfig.from_pretrained(CAPTION, foo=1), "foo"),
        "merged_text_config": {
            "num_beams": merged.text_config.num_beams,
            "hidden_size": merged.text_config.hidden_size,
        },
    }


def hf_model(class_name: str, seed: int = 0) -> Any:
    """`transformers`' class holding the tiny seeded weights (tied aliases included, as a .bin holds them), tied
    as `from_pretrained` leaves it."""
    text = {**TINY_TEXT, **(VQA_TEXT if class_name == "BlipForQuestionAnswering" else {})}
    config = transformers.BlipConfig(text_config=text, vision_config=dict(TINY_VISION), **TINY_TOP)
    sub = {"BlipVisionModel": config.vision_config, "BlipTextModel": config.text_config}
    sub["BlipTextLMHeadModel"] = config.text_config
    model = getattr(transformers, class_name)(sub.get(class_name, config)).eval()
    weights = seeded_weights(class_name, seed=seed)
    result = model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
    assert not result.unexpected_keys and not result.missing_keys, result
    model.tie_weights()  # as from_pretrained does (BlipTextLMHeadModel's __init__ leaves its decoder untied)
    return model, weights_hash(weights)


def _files(folder: Path) -> dict[str, Any]:
    names = sorted(os.listdir(folder))
    indexes = {name: (folder / name).read_text() for name in names if "index" in name}
    return {"files": names, "indexes": indexes}


def save_cases(work: Path) -> dict[str, Any]:
    out = {}
    for class_name in CLASSES:
        model, digest = hf_model(class_name)
        entry = {"weights_sha256": digest, "num_parameters": model.num_parameters()}
        model.save_pretrained(work / class_name / "st", max_shard_size=SHARD_BYTES)
        entry["safetensors"] = _files(work / class_name / "st")
        model.save_pretrained(
            work / class_name / "bin", max_shard_size=SHARD_BYTES, safe_serialization=False, variant="fp16"
        )
        entry["bin_fp16"] = _files(work / class_name / "bin")
        model.save_pretrained(work / class_name / "single_variant", variant="fp16")
        entry["single_variant"] = _files(work / class_name / "single_variant")["files"]
        out[class_name] = entry
    return out


def cleanup_cases(work: Path) -> dict[str, Any]:
    """Files left by a second save (other weights, seed 1) over a first one, and whether loading the folder
    then gives the second save's weights."""
    first_model, _ = hf_model("BlipForConditionalGeneration")
    second_model, _ = hf_model("BlipForConditionalGeneration", seed=1)
    cases = {
        "safetensors then bin": ({}, {"safe_serialization": False}),
        "shards then single": ({"max_shard_size": SHARD_BYTES}, {}),
        "single then shards": ({}, {"max_shard_size": SHARD_BYTES}),
        "bin then safetensors": ({"safe_serialization": False}, {}),
        "not main process": (None, {"is_main_process": False}),
    }
    out = {}
    for name, (first, second) in cases.items():
        folder = work / "cleanup" / name.replace(" ", "_")
        folder.mkdir(parents=True)
        if first is not None:
            first_model.save_pretrained(folder, **first)
        second_model.save_pretrained(folder, **second)
        entry: dict[str, Any] = {"files": sorted(os.listdir(folder))}
        if first is not None:
            loaded = transformers.BlipForConditionalGeneration.from_pretrained(folder)
            probe = "vision_model.embeddings.class_embedding"
            entry["loads_second_save"] = bool(torch.equal(loaded.state_dict()[probe], second_model.state_dict()[probe]))
        out[name] = entry
    return out


def shard_sizes() -> dict[str, Any]:
    out = {}
    for text in ("5GB", "500MB", "10KB", "1TB", "5gb", "5Gb", "1.5GB", "1GiB", "abc"):
        try:
            out[text] = parse_size_to_int(text)
        except ValueError as err:
            out[text] = {"raises": "ValueError", "message": str(err)}
    return out


def main() -> None:
    warnings.simplefilter("ignore")
    transformers.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as tmp:
        golden = {
            "made_by": {"transformers": transformers.__version__, "torch": torch.__version__},
            "shard_bytes": SHARD_BYTES,
            "from_pretrained": load_cases(),
            "config_kwargs": config_kwargs(),
            "save": save_cases(Path(tmp)),
            "cleanup": cleanup_cases(Path(tmp)),
            "shard_sizes": shard_sizes(),
        }
    GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True, default=str) + "\n")
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main()
