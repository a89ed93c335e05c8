"""Fine-tuning as an application: `blip finetune caption|vqa|retrieval` and `finetune(...)`.

- `data`: the training and held-out data (caption folders, Parquet/WebDataset, VQA question files) as examples;
- `evaluation`: each task's held-out metric, through the model's public API;
- `api`: `finetune`, which hands the run to `blip_torch.finetuning` or `blip_tf.finetuning`.

The parts both trainers share (options, the step plan, batches, the output folder, the run log) live in
`blip_core.training`, which the trees may import. Layer: an application beside `bulk`; it may import io, config,
processing, modeling, tasks, training and bulk, and only `cli` imports it.
"""

from blip_core.finetune.api import finetune
from blip_core.training.options import FinetuneOptions

__all__ = ["FinetuneOptions", "finetune"]
