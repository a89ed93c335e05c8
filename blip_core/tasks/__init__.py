"""The applications of the models that run in either framework: `pipeline()` and its tasks (`pipelines`, with
`pipeline_inputs`, `pipeline_options`, `pipeline_runtime`, `pipeline_tasks`) and image/text embeddings
(`embeddings`); retrieval, bulk captioning and CapFilt belong here too.

A task imports any sub-package below it (`io`, `config`, `weights`, `checkpoints`, `processing`, `modeling`,
`generation`)
and imports `blip_torch`/`blip_tf` only lazily, inside a call. Only `cli` and `blip_core/__init__` import it.
"""
