"""Empty-batch and over-length cases run on `transformers` (tests/tools/make_limits_golden.py) and on both trees."""

from __future__ import annotations

import numpy as np

from tests.helpers.golden import load_npz

INPUTS = load_npz("models.npz")
PIXELS, IDS, MASK = INPUTS["input::pixel_values"], INPUTS["input::input_ids"], INPUTS["input::attention_mask"]
FLAGS = {"output_attentions": True, "output_hidden_states": True}

# name -> (class, inputs, kwargs); each runs once under torch.no_grad()
CASES = {
    "vision_empty": ("BlipVisionModel", {"pixel_values": PIXELS[:0]}, FLAGS),
    "blip_no_images": ("BlipModel", {"input_ids": IDS, "attention_mask": MASK, "pixel_values": PIXELS[:0]}, {}),
    "blip_image_features_empty": ("BlipModel", {"pixel_values": PIXELS[:0]}, {"method": "get_image_features"}),
    "itc_no_images": (
        "BlipForImageTextRetrieval",
        {"input_ids": IDS, "attention_mask": MASK, "pixel_values": PIXELS[:0]},
        {"use_itm_head": False},
    ),
    "text_empty": ("BlipTextModel", {"input_ids": IDS[:0]}, {}),
    "caption_empty": ("BlipForConditionalGeneration", {"pixel_values": PIXELS[:0], "input_ids": IDS[:0]}, {}),
    "text_too_long": ("BlipTextModel", {"input_ids": np.ones((1, 49), np.int64)}, {}),
    "position_ids_beyond_table": (
        "BlipTextModel",
        {"input_ids": IDS[:1, :5], "position_ids": np.array([[44, 45, 46, 47, 48]])},
        {},
    ),
    "id_out_of_vocabulary": ("BlipTextModel", {"input_ids": np.array([[1, 500]])}, {}),
}
