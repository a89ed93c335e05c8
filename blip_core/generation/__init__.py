"""The generation rules both trees share: options resolved from `GenerationConfig`, model config and call,
with their precedence and validation (`options`); the logits-processor order and what is refused (`rules`);
`model.generation_config` handling (`support`); prompt rows (`prompts`).

A new generation option is validated here, then implemented the same way in `blip_torch` and `blip_tf`
(`logits_processors.py`, `generation.py`). It imports `config` and `modeling`; the trees and the
applications import it.
"""
