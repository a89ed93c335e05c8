"""Model output containers with `transformers`' class and attribute names.

They hold tensors of any framework, so both trees share these classes. A
`ModelOutput` is a dataclass and an ordered dict of its non-None fields:
`out.logits`, `out["logits"]` and `out[0]` (the first non-None field) all work,
as in `transformers`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any


class ModelOutput(OrderedDict):
    """Base class: attribute, key and index access over the fields that are set."""

    def __post_init__(self) -> None:
        items = fields(self)
        alone = all(getattr(self, item.name) is None for item in items[1:])
        pairs = _field_pairs(getattr(self, items[0].name), {item.name for item in items}) if alone else None
        if pairs is not None:
            # Built from (key, value) pairs, as TensorFlow's nest rebuilds a mapping (a tf.function's output).
            object.__setattr__(self, items[0].name, None)
            for key, value in pairs:
                object.__setattr__(self, key, value)
        super().clear()  # the dataclass __init__ stored its arguments already; the fields decide
        for item in items:
            value = getattr(self, item.name)
            if value is not None:
                super().__setitem__(item.name, value)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return dict.__getitem__(self, key)
        return self.to_tuple()[key]

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.keys() or (value is not None and name in {f.name for f in fields(self)}):
            super().__setitem__(name, value)
        super().__setattr__(name, value)

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        super().__setattr__(key, value)

    def __iter__(self):
        return iter(self.keys())

    def __reduce__(self):
        return type(self), tuple(getattr(self, f.name) for f in fields(self))

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(self[key] for key in self.keys())


def _field_pairs(value: Any, names: set[str]) -> list[tuple[str, Any]] | None:
    """`value` as (field name, value) pairs when it is an iterator or list of them, else None (a field value).
    Raises TypeError for an iterator that does not hold such pairs, or a pair naming no field."""
    if not isinstance(value, (Iterator, list)):
        return None
    pairs = list(value)
    if not all(isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str) for pair in pairs):
        if isinstance(value, Iterator):
            raise TypeError("a ModelOutput is built from field values or from (field name, value) pairs")
        return None
    unknown = [key for key, _ in pairs if key not in names]
    if unknown:
        raise TypeError(f"no output field named {unknown[0]!r}; the fields are {sorted(names)}")
    return pairs or None


@dataclass(repr=False)
class BaseModelOutputWithPooling(ModelOutput):
    last_hidden_state: Any = None
    pooler_output: Any = None
    hidden_states: Any = None
    attentions: Any = None


@dataclass(repr=False)
class BaseModelOutputWithPoolingAndCrossAttentions(ModelOutput):
    last_hidden_state: Any = None
    pooler_output: Any = None
    hidden_states: Any = None
    past_key_values: Any = None
    attentions: Any = None
    cross_attentions: Any = None


@dataclass(repr=False)
class CausalLMOutputWithCrossAttentions(ModelOutput):
    loss: Any = None
    logits: Any = None
    past_key_values: Any = None
    hidden_states: Any = None
    attentions: Any = None
    cross_attentions: Any = None


@dataclass(repr=False)
class BlipOutput(ModelOutput):
    loss: Any = None
    logits_per_image: Any = None
    logits_per_text: Any = None
    text_embeds: Any = None
    image_embeds: Any = None
    text_model_output: Any = None
    vision_model_output: Any = None


@dataclass(repr=False)
class BlipForConditionalGenerationModelOutput(ModelOutput):
    loss: Any = None
    logits: Any = None
    image_embeds: Any = None
    last_hidden_state: Any = None
    hidden_states: Any = None
    attentions: Any = None

    @property
    def decoder_logits(self) -> Any:
        """Deprecated alias of `logits`, kept for `transformers` code."""
        return self.logits


@dataclass(repr=False)
class BlipTextVisionModelOutput(ModelOutput):
    """VQA output. `logits` (the answer decoder's) is an addition over `transformers`."""

    loss: Any = None
    image_embeds: Any = None
    last_hidden_state: Any = None
    hidden_states: Any = None
    attentions: Any = None
    logits: Any = None


@dataclass(repr=False)
class BlipImageTextMatchingModelOutput(ModelOutput):
    itm_score: Any = None
    loss: Any = None
    image_embeds: Any = None
    last_hidden_state: Any = None
    hidden_states: Any = None
    vision_pooler_output: Any = None
    attentions: Any = None
    question_embeds: Any = None


@dataclass(repr=False)
class GenerateDecoderOnlyOutput(ModelOutput):
    """Greedy or sampling `generate(..., return_dict_in_generate=True)`: ids and, if asked, per-step
    processed `scores` and raw `logits` (tuples of (rows, vocab)). Attentions and hidden states are not kept."""

    sequences: Any = None
    scores: Any = None
    logits: Any = None
    attentions: Any = None
    hidden_states: Any = None
    past_key_values: Any = None


@dataclass(repr=False)
class GenerateBeamDecoderOnlyOutput(ModelOutput):
    """Beam search's `generate(..., return_dict_in_generate=True)`: adds `sequences_scores` (each returned
    hypothesis' length-normalised log-probability) and `beam_indices` (rows, new tokens; -1 past its end)."""

    sequences: Any = None
    sequences_scores: Any = None
    scores: Any = None
    logits: Any = None
    beam_indices: Any = None
    attentions: Any = None
    hidden_states: Any = None
    past_key_values: Any = None


# The name earlier releases of this project used for both.
GenerateOutput = GenerateDecoderOnlyOutput


def empty_generate_output(options: Any, sequences: Any, no_scores: Any) -> ModelOutput:
    """What `generate` returns for a batch of no images (`sequences` (0, n), `no_scores` (0,))."""
    scores = () if options.output_scores else None
    logits = () if options.output_logits else None
    if options.num_beams > 1:
        return GenerateBeamDecoderOnlyOutput(
            sequences=sequences, sequences_scores=no_scores, scores=scores, logits=logits
        )
    return GenerateDecoderOnlyOutput(sequences=sequences, scores=scores, logits=logits)


@dataclass(repr=False)
class BlipAnswerRankingOutput(ModelOutput):
    """`BlipForQuestionAnswering.rank_answers`: per question, the kept candidates best first.

    `indices` (B, k') int64: rows of `candidate_ids`; `scores` (B, k') float32: minus the original decoder's
    summed, label-smoothed (0.1) loss over each answer's tokens: a log-likelihood-like number, higher is better,
    not a probability."""

    indices: Any = None
    scores: Any = None
