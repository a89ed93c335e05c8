"""What `generate` accepts, refuses and runs, in which order: the tables both trees share.

`LOGITS_PROCESSOR_ORDER` is `transformers` 4.57.6's (`_get_logits_processor`),
with group beam search's diversity penalty where 4.56 put it; `active_processors`
picks the ones an option set turns on, so an unused processor costs nothing.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from blip_core.config.generation_config import BEAM_LENGTH_RULES

# `custom_generate` value `transformers` 4.57 asks for group beam search; here it is built in.
GROUP_BEAM_REPO = "transformers-community/group-beam-search"

# Options and `generate` arguments not implemented: name -> (values that change nothing, why).
UNSUPPORTED: dict[str, tuple[tuple[Any, ...], str]] = {
    "stop_strings": ((None,), "stop strings need the tokenizer inside the decoding loop; cut the decoded text"),
    "cache_implementation": ((None,), "decoding uses one preallocated cache"),
    "cache_config": ((None,), "decoding uses one preallocated cache"),
    "return_legacy_cache": ((None,), "no cache is returned"),
    "prefill_chunk_size": ((None,), "prompts are short; they are run in one piece"),
    "token_healing": ((False,), "needs the tokenizer inside the decoding loop"),
    "guidance_scale": ((None, 1, 1.0), "classifier-free guidance is not implemented"),
    "watermarking_config": ((None,), "watermarking is not implemented"),
    "output_attentions": ((False,), "per-step attentions are not returned by generate"),
    "output_hidden_states": ((False,), "per-step hidden states are not returned by generate"),
    "prompt_lookup_num_tokens": ((None,), "assisted generation is not implemented"),
    "assistant_early_exit": ((None,), "assisted generation is not implemented"),
    "low_memory": ((None, False), "beam search keeps all beams in one batch"),
    "penalty_alpha": ((None, 0, 0.0), "contrastive search is not implemented"),
    "dola_layers": ((None,), "DoLa decoding is not implemented"),
    "constraints": ((None,), "constrained beam search is not implemented"),
    "force_words_ids": ((None,), "constrained beam search is not implemented"),
    "logits_processor": ((None, []), "custom logits processors are not run; use the built-in options"),
    "stopping_criteria": ((None, []), "custom stopping criteria are not run; use max_new_tokens/eos_token_id"),
    "prefix_allowed_tokens_fn": ((None,), "prefix-constrained decoding is not implemented"),
    "assistant_model": ((None,), "assisted generation is not implemented"),
    "assistant_tokenizer": ((None,), "assisted generation is not implemented"),
    "negative_prompt_ids": ((None,), "classifier-free guidance is not implemented"),
    "negative_prompt_attention_mask": ((None,), "classifier-free guidance is not implemented"),
}
# Implemented in PyTorch only: the TF loop runs compiled, without a clock or a Python callback.
UNSUPPORTED_IN_TF: dict[str, str] = {
    "max_time": "blip_tf decodes in one compiled XLA loop, which has no clock; use max_new_tokens",
    "streamer": "blip_tf decodes in one compiled XLA loop and cannot hand out tokens as they come",
}

# The order `transformers` applies processors in (warpers only when sampling, normalisation last).
LOGITS_PROCESSOR_ORDER = (
    "sequence_bias",
    "diversity",
    "encoder_repetition_penalty",
    "repetition_penalty",
    "no_repeat_ngram",
    "encoder_no_repeat_ngram",
    "bad_words",
    "min_length",
    "forced_bos",
    "forced_eos",
    "remove_invalid_values",
    "exponential_decay_length_penalty",
    "suppress_tokens",
    "begin_suppress_tokens",
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "typical_p",
    "epsilon_cutoff",
    "eta_cutoff",
    "renormalize_logits",
)
SAMPLING_ONLY = ("temperature", "top_k", "top_p", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff")


class GenerationArgumentError(TypeError, ValueError):
    """An unknown or unsupported `generate` argument: a `TypeError` (Python's own for an unexpected
    keyword) and a `ValueError` (what `transformers` raises for unused model kwargs) at once."""


def _turned_on(options: Any) -> dict[str, bool]:
    eps, eta = options.epsilon_cutoff, options.eta_cutoff
    return {
        "sequence_bias": bool(options.sequence_bias),
        "diversity": options.is_group_beam and options.diversity_penalty > 0,
        "encoder_repetition_penalty": options.encoder_repetition_penalty != 1.0,
        "repetition_penalty": options.repetition_penalty != 1.0,
        "no_repeat_ngram": options.no_repeat_ngram_size > 0,
        "encoder_no_repeat_ngram": options.encoder_no_repeat_ngram_size > 0,
        "bad_words": bool(options.bad_words),
        "min_length": options.min_length > 0 or (options.min_new_tokens or 0) > 0,
        "forced_bos": options.forced_bos_token_id is not None,
        "forced_eos": bool(options.forced_eos_token_ids),
        "remove_invalid_values": options.remove_invalid_values,
        "exponential_decay_length_penalty": options.exponential_decay_length_penalty is not None,
        "suppress_tokens": bool(options.suppress_tokens),
        "begin_suppress_tokens": bool(options.begin_suppress_tokens),
        "temperature": options.temperature != 1.0,
        "top_k": bool(options.top_k),
        "top_p": options.top_p < 1.0,
        "min_p": options.min_p is not None,
        "typical_p": options.typical_p < 1.0,
        "epsilon_cutoff": 0.0 < eps < 1.0,
        "eta_cutoff": 0.0 < eta < 1.0,
        "renormalize_logits": options.renormalize_logits,
    }


@functools.lru_cache(maxsize=256)
def active_processors(options: Any) -> tuple[str, ...]:
    """The processors `options` turns on, in `LOGITS_PROCESSOR_ORDER` (warpers only when sampling)."""
    on = _turned_on(options)
    return tuple(
        name for name in LOGITS_PROCESSOR_ORDER if on[name] and (options.do_sample or name not in SAMPLING_ONLY)
    )


def is_inert(value: Any, inert: tuple[Any, ...]) -> bool:
    """Whether `value` is one of the values that change nothing (an empty list counts as `[]`)."""
    if isinstance(value, (list, tuple)) and not value:
        return [] in inert
    return any(value is x or (isinstance(value, (bool, int, float, str)) and value == x) for x in inert)


def token_list(value: Any, name: str, vocab_size: int | None) -> tuple[int, ...]:
    """An int or a list of ints as a tuple of token ids; `ValueError` naming `name` otherwise."""
    if value is None:
        return ()
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if hasattr(value, "tolist"):  # an array or tensor
        items = [value.tolist()] if not isinstance(value.tolist(), list) else value.tolist()
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int) or item < 0:
            raise ValueError(f"`{name}` must be a token id or a list of token ids (ints >= 0), got {value!r}")
        if vocab_size is not None and item >= vocab_size:
            raise ValueError(f"`{name}`: token id {item} is outside the vocabulary (size {vocab_size})")
    return tuple(int(item) for item in items)


def normalise_bias(value: Any, name: str, vocab_size: int | None) -> tuple[tuple[tuple[int, ...], float], ...]:
    """`sequence_bias` as ((ids, bias), ...): from `{(ids): bias}` or `[[ids, ...], bias]` pairs (JSON form)."""
    if value is None:
        return ()
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, (list, tuple)) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in value):
        pairs = [(tuple(p[0]) if isinstance(p[0], (list, tuple)) else p[0], p[1]) for p in value]
    else:
        pairs = None
    if not pairs or any(not isinstance(ids, tuple) or not ids for ids, _ in pairs):
        raise ValueError(
            f"`{name}` has to be a non-empty dict of token-id tuples to floats, or a list of [ids, bias] pairs, "
            f"but is {value!r}."
        )
    out: dict[tuple[int, ...], float] = {}  # a repeated sequence keeps its last bias, as in a dict
    for ids, bias in pairs:
        if isinstance(bias, bool) or not isinstance(bias, (int, float)):
            raise ValueError(f"`{name}`: the bias of {list(ids)} must be a float, got {bias!r}")
        out[token_list(ids, name, vocab_size)] = float(bias)
    return tuple(out.items())


_INTEGERS = {
    "max_length": 1,
    "max_new_tokens": 1,
    "min_length": 0,
    "min_new_tokens": 0,
    "num_beams": 1,
    "num_beam_groups": 1,
    "num_return_sequences": 1,
    "top_k": 0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
}


def check_option_values(values: dict[str, Any], vocab_size: int | None) -> None:
    """Types and ranges of the options (`transformers` raises for the same values, in its processors)."""
    for name, low in _INTEGERS.items():
        value = values.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    for name in ("temperature", "top_p", "typical_p", "epsilon_cutoff", "eta_cutoff", "min_p"):
        value = values.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"{name} must be a number, got {value!r}")
    sampling = values["do_sample"]
    if sampling and not values["temperature"] > 0:
        raise ValueError(f"temperature must be > 0 when sampling, got {values['temperature']!r}")
    if not 0 <= values["top_p"] <= 1:
        raise ValueError(f"top_p must be in [0, 1], got {values['top_p']!r}")
    if values["typical_p"] <= 0:
        raise ValueError(f"typical_p must be in (0, 1) (1 turns it off), got {values['typical_p']!r}")
    if values["min_p"] is not None and not 0 <= values["min_p"] <= 1:
        raise ValueError(f"min_p must be in [0, 1], got {values['min_p']!r}")
    for name in ("epsilon_cutoff", "eta_cutoff"):
        if not 0 <= values[name] < 1:
            raise ValueError(f"{name} must be in [0, 1) (0 turns it off), got {values[name]!r}")
    for name in ("repetition_penalty", "encoder_repetition_penalty"):
        if isinstance(values[name], bool) or not isinstance(values[name], (int, float)) or not values[name] > 0:
            raise ValueError(f"{name} must be a number > 0, got {values[name]!r}")
    if not isinstance(values["diversity_penalty"], (int, float)) or values["diversity_penalty"] < 0:
        raise ValueError(f"diversity_penalty must be >= 0, got {values['diversity_penalty']!r}")
    if not isinstance(values["length_penalty"], (int, float)) or not math.isfinite(values["length_penalty"]):
        raise ValueError(f"length_penalty must be a finite number, got {values['length_penalty']!r}")
    if values.get("beam_length_rule", BEAM_LENGTH_RULES[0]) not in BEAM_LENGTH_RULES:
        raise ValueError(f"beam_length_rule must be one of {BEAM_LENGTH_RULES}, got {values['beam_length_rule']!r:.60}")
    if not sampling and values["num_return_sequences"] > values["num_beams"]:
        raise ValueError(
            f"num_return_sequences ({values['num_return_sequences']}) cannot exceed num_beams ({values['num_beams']}) "
            "without sampling; use do_sample=True or more beams"
        )
    token_list(values["forced_bos_token_id"], "forced_bos_token_id", vocab_size)
