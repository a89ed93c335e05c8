"""Numbers and names both model trees use, defined once."""

from __future__ import annotations

# Additive attention-mask value for masked positions, as `transformers`' BLIP text model: (1 - m) * -10000.
MASK_FILL_VALUE = -10000.0

# BERT's [CLS]: processor-encoded prompts start with it; generation replaces it with BOS ([DEC]).
CLS_TOKEN_ID = 101

# The tokens the original BLIP added to BERT's vocabulary (absent from the Hub tokenizers): [DEC] starts every
# decoded sequence (the text config's bos_token_id); [ENC] replaced [CLS] in the original's VQA questions and in the
# texts of its ITM pass (`protocol="original"`).
DEC_TOKEN_ID = 30522
ENC_TOKEN_ID = 30523

# The label smoothing the original decoder's loss hard-codes (its `med.py`), whatever the config says.
ORIGINAL_LABEL_SMOOTHING = 0.1

# Label value ignored by the cross-entropy losses.
IGNORE_INDEX = -100

# Temperature of the image-text contrastive loss when training retrieval models (the original BLIP's initial value).
ITC_TEMPERATURE = 0.07

# `config.hidden_act` names -> the exact activation each tree must use.
ACTIVATIONS = {
    "gelu": "gelu_erf",  # exact GELU, as torch.nn.functional.gelu(approximate="none")
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
    "tanh": "tanh",
    "silu": "silu",
    "swish": "silu",
}


def activation_name(hidden_act: str) -> str:
    """The canonical activation for a config's `hidden_act`, or a ValueError naming it."""
    try:
        return ACTIVATIONS[hidden_act]
    except (KeyError, TypeError):
        raise ValueError(f"unsupported hidden_act {hidden_act!r}; supported: {sorted(ACTIVATIONS)}") from None


def patch_grid(image_height: int, image_width: int, patch_size: int) -> tuple[int, int]:
    """(rows, columns) of patches for an image; the conv drops any remainder."""
    return image_height // patch_size, image_width // patch_size


def num_positions(image_size: int, patch_size: int) -> int:
    """Rows of the vision position table: one per patch plus the class token."""
    return (image_size // patch_size) ** 2 + 1
