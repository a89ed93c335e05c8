"""Regenerate the blip_core golden files from `transformers` 4.57.6 (the numerical oracle).

Run from the repository root in an environment with the `oracle` extra:

    pip install -e '.[torch,test,oracle]'
    python -m tests.tools.make_core_golden

It writes tests/fixtures/tokenizer/*, tests/fixtures/images/*,
tests/fixtures/configs/* and tests/golden/{processor.npz,tokenizer.json,configs.json}.
The library never imports `transformers`; only this script does.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import transformers

from tests.helpers.images import write_image_fixtures
from tests.helpers.processor_cases import CASES
from tests.helpers.text_cases import DECODE_IDS, ENCODE_CASES

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
GOLDEN = ROOT / "tests" / "golden"
FULL_ARRAY_LIMIT = 60_000  # larger outputs are stored as a SHA-256 of their float32 bytes


def stamp() -> dict[str, str]:
    import PIL
    import tokenizers

    return {"transformers": transformers.__version__, "pillow": PIL.__version__, "tokenizers": tokenizers.__version__}


def make_tokenizer_fixture() -> transformers.PreTrainedTokenizerBase:
    folder = FIXTURES / "tokenizer"
    tokenizer = transformers.BertTokenizerFast(
        vocab_file=str(folder / "vocab.txt"), do_lower_case=True, model_max_length=512
    )
    tokenizer.model_input_names = ["input_ids", "attention_mask"]
    tokenizer.save_pretrained(folder)
    return tokenizer


def make_processor_golden() -> None:
    arrays, meta = {}, {}
    for name, make_inputs, call_kwargs, init_kwargs in CASES:
        processor = transformers.BlipImageProcessor(**init_kwargs)
        out = processor(make_inputs(), return_tensors="np", **call_kwargs)["pixel_values"]
        out = np.asarray(out)
        meta[name] = {
            "shape": list(out.shape),
            "dtype": str(out.dtype),
            "sha256": hashlib.sha256(out.astype(np.float32).tobytes()).hexdigest(),
        }
        if out.size <= FULL_ARRAY_LIMIT:
            arrays[name] = out
    np.savez_compressed(GOLDEN / "processor.npz", **arrays)
    (GOLDEN / "processor.json").write_text(json.dumps({"made_by": stamp(), "cases": meta}, indent=1) + "\n")


def make_tokenizer_golden(tokenizer: transformers.PreTrainedTokenizerBase) -> None:
    encodings = []
    for name, text, kwargs in ENCODE_CASES:
        out = tokenizer(text, **kwargs)
        encodings.append({"name": name, "input_ids": out["input_ids"], "attention_mask": out["attention_mask"]})
    decodes = [
        {
            "ids": ids,
            "plain": tokenizer.decode(ids),
            "skip_special": tokenizer.decode(ids, skip_special_tokens=True),
        }
        for ids in DECODE_IDS
    ]
    data = {"made_by": stamp(), "encode": encodings, "decode": decodes}
    (GOLDEN / "tokenizer.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def make_config_golden() -> None:
    folder = FIXTURES / "configs"
    folder.mkdir(parents=True, exist_ok=True)
    hub_like = transformers.BlipConfig(
        text_config={"num_attention_heads": 12},
        vision_config={"initializer_range": 0.02, "num_channels": 3},
    )
    hub_like.architectures = ["BlipForConditionalGeneration"]
    (folder / "full_dump_config.json").write_text(hub_like.to_json_string(use_diff=False))
    large = transformers.BlipConfig(
        text_config={"num_attention_heads": 12},
        vision_config={
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
        },
    )
    (folder / "large_diff_config.json").write_text(large.to_json_string(use_diff=True))
    loaded = {}
    for path in sorted(folder.glob("*.json")):
        config = transformers.BlipConfig.from_pretrained(path)
        loaded[path.name] = {
            "top": {
                k: getattr(config, k)
                for k in (
                    "projection_dim",
                    "logit_scale_init_value",
                    "image_text_hidden_size",
                    "initializer_factor",
                    "initializer_range",
                )
            },
            "text": config.text_config.to_dict(),
            "vision": config.vision_config.to_dict(),
        }
    default_diff = json.loads(transformers.BlipConfig().to_json_string(use_diff=True))
    data = {"made_by": stamp(), "loaded": loaded, "default_diff": default_diff}
    (GOLDEN / "configs.json").write_text(json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")


def main() -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    write_image_fixtures()
    tokenizer = make_tokenizer_fixture()
    make_processor_golden()
    make_tokenizer_golden(tokenizer)
    make_config_golden()
    print("golden files written under", GOLDEN)


if __name__ == "__main__":
    main()
