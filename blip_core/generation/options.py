"""The options one `generate` call runs with, resolved once here for both trees.

`resolve_options` applies `transformers`' precedence (explicit keyword
arguments, then `generation_config=`, then the model's `generation_config`,
with the legacy rule that generation fields set on `config.text_config` win
while the model's config is the one derived from it), refuses every option this
project does not implement (naming it), validates values, and returns a frozen
`GenerationOptions`: hashable, so the TF tree compiles one loop per option set.

Lengths follow `transformers`: `max_length` and `min_length` count the whole
sequence (BOS and prompt included), `max_new_tokens`/`min_new_tokens` only new
tokens, and a `max_length` of exactly 20 that came from a config (not from the
call) means 20 new tokens.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from blip_core.config.configuration import non_default_generation_fields
from blip_core.config.generation_config import DEFAULTS, GenerationConfig
from blip_core.generation.rules import (
    GROUP_BEAM_REPO,
    UNSUPPORTED,
    UNSUPPORTED_IN_TF,
    GenerationArgumentError,
    check_option_values,
    is_inert,
    normalise_bias,
    token_list,
)
from blip_core.generation.sampling import as_sampling_seeds
from blip_core.modeling import limits

DEFAULT_MAX_LENGTH = DEFAULTS["max_length"]
# Set (per thread and task) by `quiet_length_cap`: `warnings.catch_warnings` swaps the process-wide filter
# list, so threads entering and leaving it at once leave each other's filters behind.
_QUIET_LENGTH_CAP = contextvars.ContextVar("blip_quiet_length_cap", default=False)


@contextlib.contextmanager
def quiet_length_cap() -> Iterator[None]:
    """Within the block (in this thread only), a length capped at the position table is not warned about."""
    token = _QUIET_LENGTH_CAP.set(True)
    try:
        yield
    finally:
        _QUIET_LENGTH_CAP.reset(token)


# Arguments of `generate()` that are not config fields: ours (`seed`, `sampling_seeds`) and `transformers`' ones.
CALL_ARGUMENTS = (
    "seed",
    "sampling_seeds",
    "streamer",
    "trust_remote_code",
    "custom_generate",
    "tokenizer",
    "synced_gpus",
    "logits_processor",
    "stopping_criteria",
    "prefix_allowed_tokens_fn",
    "assistant_model",
    "assistant_tokenizer",
    "negative_prompt_ids",
    "negative_prompt_attention_mask",
)
TOKEN_ARGUMENTS = ("eos_token_id", "pad_token_id", "bos_token_id", "decoder_start_token_id")


@dataclass(frozen=True)
class GenerationOptions:
    """Validated options of one call; `resolve_options` builds it. Token ids None mean the model's."""

    max_length: int | None = None  # whole sequence; None: 20 new tokens
    max_new_tokens: int | None = None
    min_length: int = 0
    min_new_tokens: int | None = None
    do_sample: bool = False
    num_beams: int = 1
    num_beam_groups: int = 1
    diversity_penalty: float = 0.0
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    min_p: float | None = None
    typical_p: float = 1.0
    epsilon_cutoff: float = 0.0
    eta_cutoff: float = 0.0
    repetition_penalty: float = 1.0
    encoder_repetition_penalty: float = 1.0
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    beam_length_rule: str = "new_tokens"  # or "whole_sequence" (the original BLIP's transformers 4.15)
    no_repeat_ngram_size: int = 0
    encoder_no_repeat_ngram_size: int = 0
    sequence_bias: tuple[tuple[tuple[int, ...], float], ...] = ()
    bad_words: tuple[tuple[int, ...], ...] = ()
    renormalize_logits: bool = False
    forced_bos_token_id: int | None = None
    forced_eos_token_ids: tuple[int, ...] = ()
    remove_invalid_values: bool = False
    exponential_decay_length_penalty: tuple[int, float] | None = None
    suppress_tokens: tuple[int, ...] = ()
    begin_suppress_tokens: tuple[int, ...] = ()
    num_return_sequences: int = 1
    output_scores: bool = False
    output_logits: bool = False
    return_dict_in_generate: bool = False
    eos_token_ids: tuple[int, ...] | None = None
    pad_token_id: int | None = None
    start_token_id: int | None = None
    seed: int | None = None
    sampling_seeds: tuple[int, ...] | None = None  # one per image (blip_core.generation.sampling); seed then unused
    max_time: float | None = None
    streamer: Any = field(default=None, compare=False, hash=False)

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> GenerationOptions:
        """Options from `generate`-style keyword arguments alone (no model defaults)."""
        return resolve_options(kwargs, GenerationConfig(), None, vocab_size=None, framework="pt")

    @property
    def is_beam(self) -> bool:
        return self.num_beams > 1

    @property
    def is_group_beam(self) -> bool:
        return self.num_beams > 1 and self.num_beam_groups > 1

    @property
    def static_key(self) -> GenerationOptions:
        """What a compiled TF loop depends on: everything but the seed, the streamer and the sampling seeds'
        values (only whether they are given: `()` when they are)."""
        seeded = None if self.sampling_seeds is None else ()
        return replace(self, seed=None, streamer=None, sampling_seeds=seeded)

    def with_defaults(self, **values: Any) -> GenerationOptions:
        """A copy where `values` fill options the caller left at their defaults (pipeline defaults)."""
        default = GenerationOptions()
        return replace(self, **{k: v for k, v in values.items() if getattr(self, k) == getattr(default, k)})

    def check_room(self, prompt_length: int, max_positions: int) -> None:
        """`ValueError` (blip_core.modeling.limits) when a prompt of `prompt_length` tokens (BOS included) leaves no
        position for a new token, or an explicit `max_length` does not exceed it."""
        limits.check_prompt_room(prompt_length, max_positions)
        if self.max_new_tokens is None and self.max_length is not None:
            limits.check_max_length(self.max_length, prompt_length)

    def length_limits(self, prompt_length: int, max_positions: int) -> tuple[int, int]:
        """(max new tokens, min total length) for a row of `prompt_length` tokens (BOS included).

        Raises `ValueError` as `check_room` does.
        """
        self.check_room(prompt_length, max_positions)
        if self.max_new_tokens is not None:
            max_new = self.max_new_tokens
        elif self.max_length is not None:
            max_new = self.max_length - prompt_length
        else:
            max_new = min(DEFAULT_MAX_LENGTH, max_positions - prompt_length)
        if prompt_length + max_new > max_positions:
            if not _QUIET_LENGTH_CAP.get():
                warnings.warn(
                    f"generation capped at {max_positions} tokens in all: the model has no position beyond that",
                    stacklevel=3,
                )
            max_new = max_positions - prompt_length
        min_total = self.min_length
        if self.min_new_tokens is not None:
            min_total = prompt_length + self.min_new_tokens
        return max_new, min_total

    def beam_lengths(self, width: Any, generated: Any, budget: Any) -> tuple[Any, Any, Any]:
        """What beam search divides summed log-probabilities by (to the power `length_penalty`) at step
        `generated` (0-based; ints or tensors) of rows of `width` tokens (BOS and prompt) and new-token `budget`:
        (a hypothesis ending with an end token, one cut at its budget or time, the best beam in the stop check).

        "new_tokens" (`transformers` 4.57): the new tokens, the end token included. "whole_sequence" (4.15,
        which the original BLIP ran): the whole row, prompt included and the end token not (a row cut at its
        budget counts its last token). Without a prompt (width 1) the two agree on rows that end, not on cut ones.
        """
        never = self.early_stopping == "never" and self.length_penalty > 0
        if self.beam_length_rule == "whole_sequence":
            return width + generated, width + generated + 1, width + budget if never else width + generated
        return generated + 1, generated + 1, budget if never else generated + 1

    @property
    def whole_sequence(self) -> bool:
        """Whether beam search scores hypotheses by their whole length (the original BLIP's rule)."""
        return self.beam_length_rule == "whole_sequence"

    @property
    def needs_history(self) -> bool:
        """Whether a processor reads the tokens of each row (not only the last logits)."""
        multi_token = any(len(ids) > 1 for ids, _ in self.sequence_bias) or any(len(ids) > 1 for ids in self.bad_words)
        return bool(self.no_repeat_ngram_size or self.encoder_no_repeat_ngram_size or multi_token)


def resolve_options(
    kwargs: dict[str, Any],
    model_generation_config: GenerationConfig,
    text_config: Any,
    *,
    vocab_size: int | None,
    framework: str,
    default_eos: tuple[int, ...] = (),
) -> GenerationOptions:
    """The options of `generate(**kwargs)` on a model holding `model_generation_config`.

    `text_config` is the decoder's config (for the legacy rule), or None; `default_eos` the model's end
    tokens (a `bad_words_ids` entry that is one of them is dropped). Raises `GenerationArgumentError`
    (a `TypeError` and a `ValueError`) for unknown or unsupported arguments, `ValueError` for bad values.
    """
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    passed = kwargs.pop("generation_config", None)
    use_model_defaults = kwargs.pop("use_model_defaults", None)
    calls = {key: kwargs.pop(key) for key in CALL_ARGUMENTS if key in kwargs}
    tokens = {key: kwargs.pop(key) for key in TOKEN_ARGUMENTS if key in kwargs}
    config = merged_config(passed, use_model_defaults, model_generation_config, text_config)
    unused = config.update(**kwargs)
    if unused:
        raise GenerationArgumentError(
            f"generate() got unexpected arguments {sorted(unused)}: not generation options of BLIP "
            f"(known: GenerationConfig fields, {sorted(CALL_ARGUMENTS + TOKEN_ARGUMENTS)})"
        )
    check_supported(config, calls, framework)
    unset = GenerationOptions(top_k=0)  # a field set to None turns it off (top_k=None: no top-k filtering)
    values = {name: _or(getattr(config, name), getattr(unset, name)) for name in _DIRECT_FIELDS}
    check_option_values(values, vocab_size)
    if "max_length" not in kwargs and config.max_length == DEFAULT_MAX_LENGTH and config.max_new_tokens is None:
        values["max_length"] = None  # a config's default 20 means 20 new tokens
    return GenerationOptions(
        **values,
        sequence_bias=normalise_bias(config.sequence_bias, "sequence_bias", vocab_size),
        bad_words=bad_words(config.bad_words_ids, tokens.get("eos_token_id", default_eos), vocab_size),
        forced_eos_token_ids=token_list(config.forced_eos_token_id, "forced_eos_token_id", vocab_size),
        suppress_tokens=token_list(config.suppress_tokens, "suppress_tokens", vocab_size),
        begin_suppress_tokens=token_list(config.begin_suppress_tokens, "begin_suppress_tokens", vocab_size),
        exponential_decay_length_penalty=decay(config.exponential_decay_length_penalty),
        output_logits=bool(config.output_logits),
        **token_options(tokens, vocab_size),
        seed=calls.get("seed"),
        sampling_seeds=as_sampling_seeds(calls.get("sampling_seeds"), values["do_sample"], values["num_beams"]),
        max_time=config.max_time,
        streamer=calls.get("streamer"),
    )


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


_DIRECT_FIELDS = (
    "max_length",
    "max_new_tokens",
    "min_length",
    "min_new_tokens",
    "do_sample",
    "num_beams",
    "num_beam_groups",
    "diversity_penalty",
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "typical_p",
    "epsilon_cutoff",
    "eta_cutoff",
    "repetition_penalty",
    "encoder_repetition_penalty",
    "length_penalty",
    "early_stopping",
    "beam_length_rule",
    "no_repeat_ngram_size",
    "encoder_no_repeat_ngram_size",
    "renormalize_logits",
    "forced_bos_token_id",
    "remove_invalid_values",
    "num_return_sequences",
    "output_scores",
    "return_dict_in_generate",
)


def merged_config(
    passed: Any, use_model_defaults: bool | None, model_config: GenerationConfig, text_config: Any
) -> GenerationConfig:
    """`generation_config=` (or the model's) with the model's non-default values filled in, as transformers does."""
    if passed is None:
        return copy.deepcopy(legacy_config(model_config, text_config))
    if not isinstance(passed, GenerationConfig):
        if not hasattr(passed, "to_dict"):
            raise GenerationArgumentError(f"generation_config must be a GenerationConfig, got {type(passed).__name__}")
        passed = GenerationConfig.from_dict(passed.to_dict())  # e.g. a transformers.GenerationConfig
    config = copy.deepcopy(passed)
    if use_model_defaults is False:
        return config
    default = GenerationConfig()
    for key, model_value in model_config.__dict__.items():
        if key.startswith("_") or key == "transformers_version":
            continue
        default_value = getattr(default, key, None)
        if getattr(config, key, None) == default_value and model_value != default_value:
            setattr(config, key, copy.deepcopy(model_value))
    if config.temperature == 0.0:
        config.do_sample = False
    return config


def legacy_config(model_config: GenerationConfig, text_config: Any) -> GenerationConfig:
    """The model's config, or a fresh one from `text_config` when that holds changed generation fields.

    `transformers`' rule: only while the model's config was derived from the model config and is unmodified.
    """
    if text_config is None or not model_config._from_model_config or not model_config.is_unmodified():
        return model_config
    if not non_default_generation_fields(text_config):
        return model_config
    fresh = GenerationConfig.from_model_config(text_config)
    if fresh != model_config:
        warnings.warn(
            "You have modified the pretrained model configuration to control generation. This is a deprecated "
            "strategy to control generation; set model.generation_config (or pass generation_config=) instead.",
            UserWarning,
            stacklevel=4,
        )
        return fresh
    return model_config


def check_supported(config: GenerationConfig, calls: dict[str, Any], framework: str) -> None:
    """Refuse, by name, every option set to something this project does not implement.

    `synced_gpus`, `trust_remote_code` and `tokenizer` change nothing here (one process, no Hub code, no
    stop strings) and are accepted; the assistant fields of a config only matter with an assistant model.
    """
    refused = []
    for name, (inert, reason) in UNSUPPORTED.items():
        value = calls[name] if name in calls else getattr(config, name, None)
        if not is_inert(value, inert):
            refused.append(f"{name}={_short(value)} ({reason})")
    if calls.get("custom_generate") not in (None, GROUP_BEAM_REPO):
        refused.append(
            f"custom_generate={calls['custom_generate']!r} (no Hub code is run; built in: {GROUP_BEAM_REPO})"
        )
    if framework == "tf":
        for name, reason in UNSUPPORTED_IN_TF.items():
            if (calls[name] if name in calls else getattr(config, name, None)) is not None:
                refused.append(f"{name} ({reason})")
    if calls.get("streamer") is not None and config.num_beams > 1:
        refused.append("streamer with num_beams > 1 (transformers refuses it too)")
    if refused:
        raise GenerationArgumentError("generate() options not supported by blip-dual: " + "; ".join(refused))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def bad_words(value: Any, eos: Any, vocab_size: int | None) -> tuple[tuple[int, ...], ...]:
    """`bad_words_ids` as tuples; single-token entries equal to an end token are dropped (as transformers does)."""
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)) or not value or any(not isinstance(w, (list, tuple)) for w in value):
        raise ValueError(f"`bad_words_ids` has to be a non-empty list of lists of token ids, but is {value!r}.")
    entries = normalise_bias([[list(word), -math.inf] for word in value], "bad_words_ids", vocab_size)
    ends = set(token_list(eos, "eos_token_id", vocab_size))
    return tuple(ids for ids, _ in entries if not (len(ids) == 1 and ids[0] in ends))


def decay(value: Any) -> tuple[int, float] | None:
    if value is None:
        return None
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or isinstance(value[0], bool)
        or not isinstance(value[0], int)
        or value[0] < 0
        or not isinstance(value[1], (int, float))
    ):
        raise ValueError(
            f"`exponential_decay_length_penalty` must be (start_index, decay_factor): a non-negative int and a "
            f"float, got {value!r}"
        )
    return int(value[0]), float(value[1])


def token_options(tokens: dict[str, Any], vocab_size: int | None) -> dict[str, Any]:
    """Token ids given to `generate` itself: they replace the model's end, padding and start tokens."""
    eos = token_list(tokens.get("eos_token_id"), "eos_token_id", vocab_size)
    pad = token_list(tokens.get("pad_token_id"), "pad_token_id", vocab_size)
    starts = {tokens[k] for k in ("bos_token_id", "decoder_start_token_id") if k in tokens}
    if len(starts) > 1:
        raise ValueError(f"bos_token_id and decoder_start_token_id differ ({sorted(starts)}); give one start token")
    start = token_list(next(iter(starts)), "bos_token_id", vocab_size) if starts else ()
    if len(pad) > 1 or len(start) > 1:
        raise ValueError("pad_token_id and bos_token_id must be single token ids")
    return {
        "eos_token_ids": eos or None,
        "pad_token_id": pad[0] if pad else None,
        "start_token_id": start[0] if start else None,
    }


@dataclass(frozen=True)
class SpecialTokens:
    """The token ids decoding uses: rows end at any of `eos`, finished rows get `pad`, rows start with `start`."""

    eos: tuple[int, ...]
    pad: int
    start: int

    @property
    def fill(self) -> int:
        """What beam search writes past a hypothesis' end: `transformers`' `pad_token_id or eos_token_id[0]`."""
        return self.pad or self.eos[0]

    @property
    def keep(self) -> int:
        """Candidates beam search keeps per beam: one more than the end tokens (at least two)."""
        return max(2, 1 + len(self.eos))


def special_tokens(options: GenerationOptions, text_config: Any, start: int | None = None) -> SpecialTokens:
    """BLIP's tokens (`[SEP]` ends, `[PAD]`, `[DEC]` starts; what `transformers` passes), unless the call gave its own.

    The token ids inside generation configs are not used: `transformers`' BLIP overrides eos and pad with
    these too, and the configs derived from `text_config` carry BERT's eos (2), which is not BLIP's end.
    """
    return SpecialTokens(
        eos=options.eos_token_ids or (text_config.sep_token_id,),
        pad=text_config.pad_token_id if options.pad_token_id is None else options.pad_token_id,
        start=(start if start is not None else text_config.bos_token_id)
        if options.start_token_id is None
        else options.start_token_id,
    )
