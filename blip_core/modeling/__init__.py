"""What both model trees share about the networks, written once without tensors: output classes (`outputs`),
every length and id limit and its error (`limits`), the shapes of empty batches (`empty_batch`), the bicubic
position-embedding resize (`interpolation`), vocabulary growth (`vocabulary`), the model base API (`model_api`),
which class a checkpoint loads as (`model_classes`), device names (`devices`), names moved between modules of a
tree (`moved_names`), the compiled-function cache (`function_cache`), and the framework-neutral half of
`from_pretrained`/`save_pretrained` (`loading`, `load_options`).

It imports `io`, `config`, `weights` and `checkpoints`; `blip_torch`, `blip_tf`, `generation` and the
applications import it.
"""
