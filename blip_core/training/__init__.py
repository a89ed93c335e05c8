"""Fine-tuning data: captioning, VQA and ITM batches built the way the original BLIP trained (`data`), and the
folder format they read; the paper's weighted-answer VQA and ITC + ITM (hard negatives) batches and their
framework-neutral steps (`paper`). The framework training loops are `blip_torch.training` and `blip_tf.training`.

It imports `config` and `processing`; the applications (`cli`, `demo`) and the trees' training loops import it.
"""

from blip_core.training.data import IGNORE_INDEX, caption_examples, itm_examples, read_captioned_folder, vqa_examples
from blip_core.training.paper import (
    retrieval_examples,
    sample_hard_negatives,
    vqa_answer_weights,
    weighted_vqa_examples,
)

__all__ = [
    "IGNORE_INDEX",
    "caption_examples",
    "itm_examples",
    "read_captioned_folder",
    "retrieval_examples",
    "sample_hard_negatives",
    "vqa_answer_weights",
    "vqa_examples",
    "weighted_vqa_examples",
]
