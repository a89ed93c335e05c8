"""Fine-tuning data: captioning, VQA and ITM batches built the way the original BLIP trained (`data`), and the
folder format they read. The framework training loops are `blip_torch.training` and `blip_tf.training`.

It imports `config` and `processing`; the applications (`cli`, `demo`) and the trees' training loops import it.
"""

from blip_core.training.data import IGNORE_INDEX, caption_examples, itm_examples, read_captioned_folder, vqa_examples

__all__ = ["IGNORE_INDEX", "caption_examples", "itm_examples", "read_captioned_folder", "vqa_examples"]
