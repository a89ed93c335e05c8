"""Regenerate tests/golden/tokenizer_api.json: `transformers` 4.57.6's `BertTokenizerFast` (what
`AutoTokenizer` gives for BLIP) on tests/fixtures/tokenizer, with the Hub BLIP checkpoints'
`model_input_names` (no `token_type_ids` unless asked), for each call in tests/helpers/tokenizer_api_cases.py,
and its properties.

Run from the repository root in the oracle environment (transformers 4.57.6, torch):

    .venv-oracle/bin/python -m tests.tools.make_tokenizer_api_golden
"""

from __future__ import annotations

import json
from pathlib import Path

import tokenizers
import transformers

from tests.helpers.tokenizer_api_cases import CASES, PROPERTIES, plain, run_case

ROOT = Path(__file__).resolve().parents[2]
FOLDER = "tests/fixtures/tokenizer"


def main() -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(FOLDER, model_input_names=["input_ids", "attention_mask"])
    out = {
        "versions": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__},
        "class": type(tokenizer).__name__,
        "name_or_path": tokenizer.name_or_path,
        "properties": {name: plain(getattr(tokenizer, name)) for name in PROPERTIES},
        "cases": {name: run_case(tokenizer, name) for name in CASES},
    }
    path = ROOT / "tests" / "golden" / "tokenizer_api.json"
    path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
