"""Generation settings shared by both trees: defaults, validation, length rules, processor order.

Defaults and meanings are `transformers`' PyTorch ones (REFERENCE §7.3), in
both frameworks: with no length given, 20 new tokens; `max_length` and
`min_length` count the whole sequence (BOS and prompt included);
`max_new_tokens` and `min_new_tokens` count only new tokens.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields, replace
from typing import Any

DEFAULT_MAX_NEW_TOKENS = 20

# The order logits are transformed in, as `transformers` builds its processor list:
# processors first, then (sampling only) the warpers.
LOGITS_PROCESSOR_ORDER = ("repetition_penalty", "min_length", "temperature", "top_k", "top_p")


@dataclass(frozen=True)
class GenerationConfig:
    """Validated generation options; build one with `GenerationConfig.from_kwargs(**kw)`."""

    max_length: int | None = None
    max_new_tokens: int | None = None
    min_length: int = 0
    min_new_tokens: int | None = None
    do_sample: bool = False
    num_beams: int = 1
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    num_return_sequences: int = 1
    seed: int | None = None
    use_cache: bool = True
    output_scores: bool = False
    return_dict_in_generate: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> GenerationConfig:
        """Options as `generate(**kwargs)` receives them; unknown names are a TypeError."""
        known = {f.name for f in fields(cls)} - {"extra"}
        # Accepted for `transformers` compatibility, ignored on purpose.
        tolerated = {"bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id", "generation_config"}
        unknown = sorted(set(kwargs) - known - tolerated)
        if unknown:
            raise TypeError(f"generate() got unexpected arguments {unknown}; known: {sorted(known)}")
        values = {key: value for key, value in kwargs.items() if key in known and value is not None}
        config = cls(**values, extra={k: v for k, v in kwargs.items() if k in tolerated})
        config.validate()
        return config

    def validate(self) -> None:
        def positive_int(name: str, allow_zero: bool = False) -> None:
            value = getattr(self, name)
            if value is None:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
                raise ValueError(
                    f"{name} must be a {'non-negative' if allow_zero else 'positive'} integer, got {value!r}"
                )

        for name in ("max_length", "max_new_tokens", "num_beams", "num_return_sequences"):
            positive_int(name)
        for name in ("min_length", "min_new_tokens", "top_k"):
            positive_int(name, allow_zero=True)
        if self.do_sample and not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {self.temperature!r}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not self.repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty!r}")
        if self.early_stopping not in (True, False, "never"):
            raise ValueError(f"early_stopping must be True, False or 'never', got {self.early_stopping!r}")
        if not self.do_sample and self.num_return_sequences > self.num_beams:
            raise ValueError(
                f"num_return_sequences ({self.num_return_sequences}) cannot exceed num_beams ({self.num_beams}) "
                "without sampling; use do_sample=True or more beams"
            )

    def with_defaults(self, **values: Any) -> GenerationConfig:
        """A copy where `values` fill options the caller did not set (pipeline defaults)."""
        unset = {key: value for key, value in values.items() if getattr(self, key) == getattr(GenerationConfig(), key)}
        return replace(self, **unset)

    @property
    def is_beam(self) -> bool:
        return self.num_beams > 1

    def length_limits(self, prompt_length: int, max_positions: int) -> tuple[int, int]:
        """(max new tokens, min total length) for a row whose input has `prompt_length` tokens."""
        if self.max_new_tokens is not None:
            max_new = self.max_new_tokens
        elif self.max_length is not None:
            max_new = self.max_length - prompt_length
        else:
            max_new = DEFAULT_MAX_NEW_TOKENS
        if prompt_length + max_new > max_positions:
            warnings.warn(
                f"generation capped at {max_positions} tokens in all: the model has no position beyond that",
                stacklevel=3,
            )
            max_new = max_positions - prompt_length
        min_total = self.min_length
        if self.min_new_tokens is not None:
            min_total = max(min_total, prompt_length + self.min_new_tokens)
        return max(max_new, 0), min_total
