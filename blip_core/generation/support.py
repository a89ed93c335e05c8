"""`model.generation_config` for both trees: held, derived, loaded, saved, and turned into call options.

As in `transformers`, the classes that generate (captioning, VQA and the text
decoder with its LM head) hold a `GenerationConfig`: the one read from the
checkpoint's `generation_config.json`, else one derived from the text config's
generation fields. Unlike `transformers`' BLIP, whose `generate` reads only the
text decoder's own config, the model's `generation_config` (and so a top-level
`generation_config.json`) is the one `generate` uses.
"""

from __future__ import annotations

import copy
import os
from typing import Any

from blip_core.config.generation_config import GenerationConfig, find_generation_config
from blip_core.generation.options import GenerationOptions, legacy_config, resolve_options

GENERATING_CLASSES = frozenset({"BlipForConditionalGeneration", "BlipForQuestionAnswering", "BlipTextLMHeadModel"})
_HELD = "_blip_generation_config"


class GenerationConfigMixin:
    """`generation_config` and `can_generate` (mixed into both trees' base model class)."""

    config: Any

    @classmethod
    def can_generate(cls) -> bool:
        return cls.__name__.removeprefix("TF") in GENERATING_CLASSES

    def _holder(self) -> dict[str, Any]:
        """Where the config lives: the text decoder's, for a model that has one, so that
        `model.generation_config` and `model.text_decoder.generation_config` are one object (the one
        `transformers`' BLIP reads is the text decoder's)."""
        decoder = self.__dict__.get("text_decoder") or getattr(self, "_modules", {}).get("text_decoder")
        return (decoder if decoder is not None else self).__dict__

    def init_generation_config(self) -> None:
        """Derive `generation_config` from the config as it is now (at construction, as `transformers` does)."""
        if self.can_generate():
            derived = GenerationConfig.from_model_config(self.config.get_text_config(decoder=True))
            self._holder()[_HELD] = derived

    @property
    def generation_config(self) -> GenerationConfig | None:
        """The generation defaults of this model (None for classes that do not generate)."""
        if not self.can_generate():
            return None
        if self._holder().get(_HELD) is None:
            self.init_generation_config()
        return self._holder()[_HELD]

    @generation_config.setter
    def generation_config(self, value: GenerationConfig | None) -> None:
        if value is not None and not isinstance(value, GenerationConfig):
            if not hasattr(value, "to_dict"):
                raise TypeError(f"generation_config must be a GenerationConfig, got {type(value).__name__}")
            value = GenerationConfig.from_dict(value.to_dict())  # e.g. a transformers.GenerationConfig
        self._holder()[_HELD] = value

    def generation_options(self, kwargs: dict[str, Any], framework: str) -> GenerationOptions:
        """The options of `generate(**kwargs)`: kwargs, then `generation_config=`, then this model's config."""
        text = self.config.get_text_config(decoder=True)
        if kwargs.get("generation_config") is None:
            self.generation_config = legacy_config(self.generation_config, text)
        return resolve_options(
            kwargs,
            self.generation_config,
            None,
            vocab_size=text.vocab_size,
            framework=framework,
            default_eos=(text.sep_token_id,),
        )


def load_generation_config(
    name_or_path: str | os.PathLike, hub: dict[str, Any], overrides: dict[str, Any] | None = None
) -> GenerationConfig | None:
    """The `generation_config.json` of a checkpoint (folder or Hub repo) with `overrides` set, or None when
    it has none."""
    path = find_generation_config(name_or_path, **hub) if not os.path.isfile(name_or_path) else None
    return GenerationConfig.from_pretrained(path, **(overrides or {})) if path is not None else None


def attach_generation_config(
    model: Any, name_or_path: str | os.PathLike, hub: dict[str, Any], given: Any, overrides: dict[str, Any]
) -> None:
    """Set `model.generation_config` at the end of `from_pretrained`, as `transformers` does: a copy of
    `generation_config=` when given; else the checkpoint's `generation_config.json`; else the one derived
    from the config at construction. Loading overrides that name generation fields (`num_beams=3`, ...)
    set it too (`transformers` passes them on to `GenerationConfig.from_pretrained`)."""
    if not model.can_generate():
        return
    if given is not None:
        model.generation_config = copy.deepcopy(given) if isinstance(given, GenerationConfig) else given
        return
    loaded = load_generation_config(name_or_path, hub, overrides)
    if loaded is not None:
        model.generation_config = loaded
    elif overrides:
        derived = model.generation_config
        derived.update(**overrides)
        derived._original_object_hash = hash(derived)  # still "derived from the model config", as in transformers
