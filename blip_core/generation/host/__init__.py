"""Generation in NumPy for runtimes that hand back NumPy arrays (ONNX Runtime): greedy, sampling, beam and
group beam search with every option `blip_torch` supports, and the same ids as `blip_torch`.

The model is a `DecoderRunner` (`decoding.py`): it runs the prompts and then one token per row against the
encoder states it was built with, keeping the self-attention cache; this package keeps the masks, positions,
limits and the search. Imports NumPy and `blip_core` only.
"""

from blip_core.generation.host.decoding import DecoderRunner, Decoding
from blip_core.generation.host.generation import empty_output, generate, transition_scores

__all__ = ["Decoding", "DecoderRunner", "empty_output", "generate", "transition_scores"]
