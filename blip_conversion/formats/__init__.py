"""Readers for the formats outside the Hub layout (the original Salesforce `.pth`); the weight writers live in
`blip_core` (`safetensors_io`, `bin_writer`, `h5_writer`), where `save_pretrained` uses them too."""
