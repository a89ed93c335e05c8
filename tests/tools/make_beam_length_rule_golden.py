"""Record `transformers` 4.15's own beam search (what the original BLIP ran) on the tiny "eos" captioner, for
`tests/parity/test_beam_length_rule.py`: tests/golden/beam_length_rule.npz and beam_length_rule.json.

    PYTHONPATH=/work/venvs/oracle-415 .venv/bin/python -m tests.tools.make_beam_length_rule_golden

4.15 has no BLIP: its `GenerationMixin.generate` runs here over an adapter whose forward is the tiny captioner's
plain teacher-forced forward (blip_torch's `BlipForConditionalGeneration`, checked against `transformers` 4.57
elsewhere), with the image repeated for each beam row and no cache, as the original's `text_decoder.generate`
was called: the prompt row as `input_ids`, `max_length`/`min_length` counting the whole row, `eos_token_id` =
[SEP], `pad_token_id` = [PAD], `repetition_penalty=1.0`. The oracle folder: `pip install --no-deps
--target /work/venvs/oracle-415 transformers==4.15.0 regex sacremoses tqdm requests filelock pyyaml
huggingface-hub==0.2.1 packaging`, plus a metadata-only `tokenizers-0.10.3.dist-info/METADATA` there (4.15
checks the version at import; its beam search never uses tokenizers); torch and numpy come from `.venv`.
Run from the repository root.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import torch
import transformers
from transformers import PretrainedConfig
from transformers.generation_utils import GenerationMixin
from transformers.modeling_outputs import CausalLMOutput

from tests.helpers.generation_cases import CAPTION
from tests.helpers.generation_runs import INPUTS, checkpoint, load
from tests.helpers.golden import GOLDEN
from tests.helpers.tiny import weights_hash

# name -> (prompt with BOS, generate options); the same names as the test's CASES.
CASES = {
    "paper_lengths": ([97, 84, 84, 91, 65, 91], {"max_length": 20, "min_length": 5, "num_return_sequences": 2}),
    "short_prompt": ([97, 20, 30, 40, 50], {"max_length": 16, "min_length": 5, "num_return_sequences": 2}),
    "no_min_length": ([97, 91, 84, 65], {"max_length": 24, "num_return_sequences": 2}),
    "no_prompt": ([97], {"max_length": 12, "num_return_sequences": 3}),
    "early_stopping": ([97, 20, 30, 40, 50], {"max_length": 16, "min_length": 5, "early_stopping": True}),
    "length_penalty": ([97, 84, 84, 91, 65, 91], {"max_length": 20, "min_length": 5, "length_penalty": 2.0}),
}


class Decoder(GenerationMixin):
    """4.15's generation loop over the tiny captioner: each row's image is its batch image (rows are beams)."""

    def __init__(self, model, pixels: torch.Tensor) -> None:
        self.model, self.pixels = model, pixels
        self.config = PretrainedConfig(vocab_size=model.config.text_config.vocab_size)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def prepare_inputs_for_generation(self, input_ids, **kwargs):
        return {"input_ids": input_ids}

    def __call__(self, input_ids, return_dict=True, **kwargs):
        pixels = self.pixels.repeat_interleave(input_ids.shape[0] // self.pixels.shape[0], 0)
        with torch.no_grad():
            logits = self.model(pixel_values=pixels, input_ids=input_ids).logits
        return CausalLMOutput(logits=logits)


def main() -> None:
    model = load("pt", CAPTION, "eos")
    pixels = torch.from_numpy(INPUTS["pixel_values"])
    decoder = Decoder(model, pixels)
    found = {}
    for name, (prompt, options) in CASES.items():
        ids = torch.tensor([prompt] * pixels.shape[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = decoder.generate(
                input_ids=ids, num_beams=3, eos_token_id=3, pad_token_id=0, repetition_penalty=1.0,
                output_scores=True, return_dict_in_generate=True, **options,
            )  # fmt: skip
        found[f"{name}.sequences"] = out.sequences.numpy()
        found[f"{name}.sequences_scores"] = out.sequences_scores.numpy()
    np.savez(GOLDEN / "beam_length_rule.npz", **found)
    weights = {name: value.numpy() for name, value in model.state_dict().items()}
    meta = {
        "transformers": transformers.__version__,
        "checkpoint": str(checkpoint(CAPTION, "eos").name),
        "weights_sha256": weights_hash(weights),
        "cases": {name: {"prompt": prompt, **options} for name, (prompt, options) in CASES.items()},
    }
    (GOLDEN / "beam_length_rule.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
