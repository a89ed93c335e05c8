"""Fine-tuning data: captioning, VQA and ITM batches built the way the original BLIP trained (`data`), and the
folder format they read; the paper's weighted-answer VQA and ITC + ITM (hard negatives) batches and their
framework-neutral steps (`paper`). The framework training loops are `blip_torch.training` and `blip_tf.training`.

What the two trainers of `blip finetune` (`blip_torch.finetuning`, `blip_tf.finetuning`) share: the run's options
(`options`), which examples each optimizer step and worker train on and the learning rate of each step (`plan`), the
fixed-shape batches with each step's loss normaliser (`step_batches`), the output folder with its checkpoints and
their state (`run_folder`) and the progress and log (`run_log`).

It imports `config`, `checkpoints` and `processing`; the applications (`cli`, `demo`, `finetune`) and the trees'
training loops import it.
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
