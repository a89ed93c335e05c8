"""Weight files as NumPy: every checkpoint format read as one lazy source of canonical names in PyTorch layout
(`sources.open_weights`), and the writers.

Belongs here: one module per format (`safetensors_io`; `torch_pickle`, the restricted unpickler of
`pytorch_model.bin`; `h5_reader`/`h5_probe`/`h5_writer` for `tf_model.h5`; `keras_weights` for Keras' own
`.weights.h5`/`.keras`; `bin_writer`), shards, variants and staged saving (`writing`). A new checkpoint
format goes here, its name table in `blip_core.weights.renames`. It imports `io`, `config` and `weights`;
`modeling`, the applications and `blip_conversion` import it.
"""
