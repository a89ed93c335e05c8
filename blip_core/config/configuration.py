"""BLIP configurations with the fields, defaults and quirks of `transformers` 4.57.

A config is a plain attribute bag: the class's own fields (with defaults), the
few inherited `PretrainedConfig` fields the models read, and every unknown key
found in a `config.json`, kept so that a load/save round trip loses nothing.
"""

from __future__ import annotations

import copy
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, ClassVar

from blip_core.config.json_files import read_config_json, warn_remote_code
from blip_core.io.atomic import atomic_write_text
from blip_core.io.hub_upload import PushToHubMixin

CONFIG_NAME = "config.json"

# Inherited `PretrainedConfig` fields the models read, with their defaults.
INHERITED_DEFAULTS: dict[str, Any] = {
    "return_dict": True,
    "output_hidden_states": False,
    "output_attentions": False,
    "torchscript": False,
    "dtype": None,
    "tie_word_embeddings": True,
    "chunk_size_feed_forward": 0,
    "is_encoder_decoder": False,
    "is_decoder": False,
    "add_cross_attention": False,
    "architectures": None,
    "bos_token_id": None,
    "pad_token_id": None,
    "eos_token_id": None,
    "sep_token_id": None,
    "decoder_start_token_id": None,
}

# The legacy generation fields every `transformers` 4.57 config carries, with their global defaults
# (`BlipTextConfig().num_beams` is 1 there too). `GenerationConfig.from_model_config` reads them.
GENERATION_DEFAULTS: dict[str, Any] = {
    "max_length": 20,
    "min_length": 0,
    "do_sample": False,
    "early_stopping": False,
    "num_beams": 1,
    "temperature": 1.0,
    "top_k": 50,
    "top_p": 1.0,
    "typical_p": 1.0,
    "repetition_penalty": 1.0,
    "length_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "num_return_sequences": 1,
    "output_scores": False,
    "return_dict_in_generate": False,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "remove_invalid_values": False,
    "exponential_decay_length_penalty": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "num_beam_groups": 1,
    "diversity_penalty": 0.0,
}
INHERITED_DEFAULTS.update(GENERATION_DEFAULTS)

# Keys that describe a file rather than a model; never written back.
_TRANSIENT_KEYS = ("_commit_hash", "_name_or_path", "_attn_implementation_autoset")

_INT_FIELDS = (
    "vocab_size",
    "hidden_size",
    "encoder_hidden_size",
    "intermediate_size",
    "projection_dim",
    "num_hidden_layers",
    "num_attention_heads",
    "max_position_embeddings",
    "image_size",
    "patch_size",
    "image_text_hidden_size",
)


# Largest value of a size field (a dimension, a count): what every framework's int32 shapes hold.
MAX_FIELD_VALUE = 2**31 - 1
# Largest model a config may describe, counted before anything is allocated: 2**32 parameters (17 GB in
# float32, nine times BLIP-large). A config claiming more (vocab_size 10**12, hidden_size 10**9) is refused
# at model construction with a ValueError, not tried.
MAX_PARAMETERS = 2**32
MAX_LAYERS = 1024  # more layers than any BLIP (12/24) by far; building each costs time even when small
_FLOAT_FIELDS = (
    "layer_norm_eps",
    "initializer_range",
    "initializer_factor",
    "logit_scale_init_value",
    "attention_dropout",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "label_smoothing",
)
_PROBABILITY_FIELDS = ("attention_dropout", "hidden_dropout_prob", "attention_probs_dropout_prob", "label_smoothing")
_TOKEN_ID_FIELDS = ("bos_token_id", "pad_token_id", "eos_token_id", "sep_token_id", "decoder_start_token_id")
class BlipConfigBase(PushToHubMixin):
    """Shared machinery: defaults, unknown-key keeping, JSON and directory I/O, `push_to_hub`."""

    model_type: ClassVar[str] = ""
    base_config_key: ClassVar[str] = ""
    own_defaults: ClassVar[dict[str, Any]] = {}
    # Inherited fields whose default this class changes (written by the diff).
    inherited_overrides: ClassVar[dict[str, Any]] = {}

    def __init__(self, **kwargs: Any) -> None:
        values = {**INHERITED_DEFAULTS, **self.inherited_overrides, **self.own_defaults}
        values.update(kwargs)
        legacy_dtype = values.pop("torch_dtype", None)
        if values.get("dtype") is None:
            values["dtype"] = legacy_dtype
        values.pop("model_type", None)
        for key in _TRANSIENT_KEYS:
            values.pop(key, None)
        self._name_or_path = str(values.pop("name_or_path", ""))
        for key, value in values.items():
            if not isinstance(key, str) or key.startswith("__") or hasattr(type(self), key):
                raise ValueError(f"{type(self).__name__}: {key!r} cannot be a field (it names a method or property)")
            setattr(self, key, copy.deepcopy(value))
        self._check_types()

    # -- validation ---------------------------------------------------------

    def _check_types(self) -> None:
        """Size fields are positive integers up to `MAX_FIELD_VALUE`, float fields finite numbers (dropouts
        and label smoothing in [0, 1]), token ids None or non-negative integers. Raises ValueError naming
        the field."""
        name = type(self).__name__
        for key in _INT_FIELDS:
            value = getattr(self, key, None)
            if value is None and key not in self.own_defaults:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_FIELD_VALUE:
                raise ValueError(
                    f"{name}: field {key!r} must be a positive integer up to {MAX_FIELD_VALUE}, got {value!r:.60}"
                )
        for key in _FLOAT_FIELDS:
            if key not in vars(self):
                continue
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name}: field {key!r} must be a finite number, got {value!r:.60}")
            if key in _PROBABILITY_FIELDS and not 0 <= value <= 1:
                raise ValueError(f"{name}: field {key!r} must lie in [0, 1], got {value!r}")
        for key in _TOKEN_ID_FIELDS:
            value = getattr(self, key, None)
            values = value if key == "eos_token_id" and isinstance(value, list) else [value]
            if value is not None and not all(_is_token_id(item) for item in values):
                raise ValueError(f"{name}: field {key!r} must be a non-negative integer or null, got {value!r:.60}")

    def check_buildable(self) -> None:
        """What a model needs beyond valid fields; called when a model is built from it, before anything is
        allocated: heads dividing the width, patches fitting the image, a known activation, at most
        `MAX_LAYERS` layers and `MAX_PARAMETERS` parameters in all. Raises ValueError naming the field."""
        from blip_core.config.model_constants import activation_name

        for config in [self, *(v for v in vars(self).values() if isinstance(v, BlipConfigBase))]:
            name = type(config).__name__
            hidden, heads = getattr(config, "hidden_size", None), getattr(config, "num_attention_heads", None)
            if isinstance(hidden, int) and isinstance(heads, int) and hidden % heads:
                raise ValueError(f"{name}: hidden_size ({hidden}) is not a multiple of num_attention_heads ({heads})")
            image, patch = getattr(config, "image_size", None), getattr(config, "patch_size", None)
            if isinstance(image, int) and isinstance(patch, int) and patch > image:
                raise ValueError(f"{name}: patch_size ({patch}) is larger than image_size ({image})")
            layers = getattr(config, "num_hidden_layers", None)
            if isinstance(layers, int) and layers > MAX_LAYERS:
                raise ValueError(f"{name}: num_hidden_layers ({layers}) is above the limit of {MAX_LAYERS}")
            if "hidden_act" in vars(config):
                act = config.hidden_act
                if not isinstance(act, str):
                    raise ValueError(f"{name}: field 'hidden_act' must be an activation name, got {act!r:.60}")
                activation_name(act)
        claimed = estimated_parameters(self)
        if claimed > MAX_PARAMETERS:
            raise ValueError(
                f"{type(self).__name__} describes a model of about {claimed:.3g} parameters (vocab_size, hidden_size, "
                f"intermediate_size, image_size, ...), above the limit of {MAX_PARAMETERS:.3g}; refused before "
                "allocating anything"
            )

    # -- properties `transformers` code reads ---------------------------------

    @property
    def use_return_dict(self) -> bool:
        return bool(self.return_dict) and not self.torchscript

    @property
    def torch_dtype(self) -> Any:
        return self.dtype

    @property
    def name_or_path(self) -> str:
        """What a model was loaded from (set by `from_pretrained`; "" otherwise). Never written to config.json."""
        return self.__dict__.get("_name_or_path", "")

    @name_or_path.setter
    def name_or_path(self, value: Any) -> None:
        self._name_or_path = str(value)

    def get_text_config(self, decoder: bool = False) -> BlipConfigBase:
        """The text section (`BlipConfig.text_config`), or this config itself for the sub-configs."""
        return getattr(self, "text_config", self)

    def update(self, config_dict: dict[str, Any]) -> None:
        """Set every key of `config_dict` as an attribute (unknown keys included), as `transformers` does."""
        if not isinstance(config_dict, dict):
            raise TypeError(f"{type(self).__name__}.update expects a dict, got {type(config_dict).__name__}")
        for key, value in config_dict.items():
            setattr(self, key, value)

    def _get_non_default_generation_parameters(self) -> dict[str, Any]:
        """Legacy generation fields that differ from this class's defaults (`transformers`' private helper)."""
        return non_default_generation_fields(self)

    # -- dict / JSON ----------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Every field, inherited, own and unknown, plus `model_type`."""
        out = {key: copy.deepcopy(value) for key, value in vars(self).items() if not key.startswith("_")}
        for key, value in out.items():
            if isinstance(value, BlipConfigBase):
                out[key] = value.to_dict()
        if out.get("dtype") is not None:  # a torch dtype after loading reads as its name, as in transformers
            out["dtype"] = dtype_name(out["dtype"])
        out["model_type"] = self.model_type
        return dict(sorted(out.items()))

    def to_diff_dict(self) -> dict[str, Any]:
        """What `save_pretrained` writes: own fields, changed inherited ones, unknown keys."""
        baseline = {**INHERITED_DEFAULTS, **self.inherited_overrides}
        out: dict[str, Any] = {}
        for key, value in vars(self).items():
            if key.startswith("_"):
                continue
            if isinstance(value, BlipConfigBase):
                out[key] = value.to_diff_dict()
            elif key not in baseline or value != baseline[key]:
                out[key] = copy.deepcopy(value)
        if out.get("dtype") is not None:
            out["dtype"] = dtype_name(out["dtype"])
        out["model_type"] = self.model_type
        return dict(sorted(out.items()))

    def to_json_string(self, use_diff: bool = True) -> str:
        data = self.to_diff_dict() if use_diff else self.to_dict()
        return json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n"

    def to_json_file(self, json_file_path: str | os.PathLike, use_diff: bool = True) -> None:
        atomic_write_text(Path(json_file_path), self.to_json_string(use_diff=use_diff))

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> Any:
        """A config from `config_dict`; `kwargs` naming its fields set them (`apply_config_kwargs`).

        With `return_unused_kwargs=True`: (config, the other kwargs), as `transformers` returns them;
        without, those others are ignored with a warning (`transformers` ignores them silently).
        """
        if not isinstance(config_dict, dict):
            raise TypeError(f"{cls.__name__}.from_dict expects a dict, got {type(config_dict).__name__}")
        return_unused = kwargs.pop("return_unused_kwargs", False)
        if kwargs.get("torch_dtype") is not None:  # the older name of `dtype`
            kwargs.setdefault("dtype", kwargs["torch_dtype"])
        kwargs.pop("torch_dtype", None)
        attention = kwargs.pop("attn_implementation", None)
        config = cls(**config_dict)
        if attention is not None:
            config._attn_implementation = attention
        unused = apply_config_kwargs(config, kwargs)
        if return_unused:
            return config, unused
        if unused:
            warnings.warn(
                f"{cls.__name__}: ignored keyword arguments {sorted(unused)} (not fields of this config); pass "
                "return_unused_kwargs=True to receive them",
                UserWarning,
                stacklevel=3,
            )
        return config

    @classmethod
    def from_json_file(cls, json_file: str | os.PathLike) -> BlipConfigBase:
        return cls.from_dict(read_config_json(Path(json_file)))

    # -- directories and the Hub ------------------------------------------------

    def save_pretrained(self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs: Any) -> Path:
        """Write `config.json` (the diff against the defaults) atomically; `push_to_hub=True` also uploads it."""
        from blip_core.io.hub_upload import check_save_kwargs

        check_save_kwargs(type(self).__name__, push_to_hub, kwargs)
        directory = Path(save_directory)
        if directory.exists() and not directory.is_dir():
            raise ValueError(f"save_pretrained: {directory} exists and is not a directory")
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / CONFIG_NAME
        self.to_json_file(path)
        return path

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> Any:
        """Load from a folder, a `config.json` path or a Hub id (with the Hub options of
        `blip_core.io.hub.HUB_OPTIONS`, `subfolder` included); other kwargs go to `from_dict`
        (fields set, `return_unused_kwargs=True` returns the rest).

        A sub-config asked from a full BLIP `config.json` takes its own section.
        """
        from blip_core.io.hub import resolve_file, split_hub_options

        hub, kwargs = split_hub_options(kwargs)
        source = Path(pretrained_model_name_or_path)
        if source.is_file():
            path = source
        else:
            path = resolve_file(pretrained_model_name_or_path, CONFIG_NAME, **hub)
        data = read_config_json(path)
        warn_remote_code(data, path)
        if cls.base_config_key and data.get("model_type") == BlipConfig.model_type:
            data = data.get(cls.base_config_key) or {}
        elif data.get("model_type") not in (None, cls.model_type):
            raise ValueError(
                f"{path}: model_type {data.get('model_type')!r} cannot be loaded as "
                f"{cls.__name__} (model_type {cls.model_type!r})"
            )
        try:
            return cls.from_dict(data, **kwargs)
        except (ValueError, TypeError) as err:  # the same type, naming the file
            raise (TypeError if isinstance(err, TypeError) else ValueError)(f"{path}: {err}") from None

    # -- comparisons and display -------------------------------------------------

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.to_dict() == other.to_dict()  # type: ignore[union-attr]

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string(use_diff=False)}"


def apply_config_kwargs(config: BlipConfigBase, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Set each of `kwargs` that names a field of `config` (a dict for a section such as `text_config`
    updates that section's fields); return the others, unused, as `transformers`' `from_dict` does."""
    unused: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key.startswith("_") or key not in vars(config):
            unused[key] = value
            continue
        current = getattr(config, key)
        if isinstance(current, BlipConfigBase) and isinstance(value, dict):
            value = type(current).from_dict({**current.to_dict(), **value})
        setattr(config, key, value)
    return unused


def dtype_name(dtype: Any) -> str:
    """A dtype (`torch.float16`, a NumPy or Keras dtype, or a name) as its name, "float16"."""
    return str(getattr(dtype, "name", None) or dtype).replace("torch.", "")


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def estimated_parameters(config: BlipConfigBase) -> int:
    """An upper estimate of the parameters a config's largest model holds (Python ints, nothing allocated)."""
    total = 0
    for part in [config, *(v for v in vars(config).values() if isinstance(v, BlipConfigBase))]:
        size = {key: getattr(part, key, None) for key in _INT_FIELDS}
        hidden = size["hidden_size"] if isinstance(size["hidden_size"], int) else 0
        inner = size["intermediate_size"] if isinstance(size["intermediate_size"], int) else 0
        cross = size["encoder_hidden_size"] if isinstance(size["encoder_hidden_size"], int) else 0
        layers = size["num_hidden_layers"] if isinstance(size["num_hidden_layers"], int) else 0
        total += layers * (6 * hidden * hidden + 2 * hidden * cross + 2 * hidden * inner + 16 * hidden)
        if isinstance(size["vocab_size"], int):
            total += 2 * size["vocab_size"] * hidden
        if isinstance(size["max_position_embeddings"], int):
            total += size["max_position_embeddings"] * hidden
        if isinstance(size["image_size"], int) and isinstance(size["patch_size"], int):
            total += ((size["image_size"] // size["patch_size"]) ** 2 + 3 * size["patch_size"] ** 2 + 1) * hidden
        for key in ("projection_dim", "image_text_hidden_size"):
            if isinstance(size[key], int):
                total += size[key] * (hidden + 2048)
    return total


def _is_token_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_FIELD_VALUE


class BlipVisionConfig(BlipConfigBase):
    """The ViT image encoder's configuration (`transformers.BlipVisionConfig`).

    >>> BlipVisionConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4).hidden_size
    64
    """

    model_type = "blip_vision_model"
    base_config_key = "vision_config"
    own_defaults = {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "projection_dim": 512,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "image_size": 384,
        "patch_size": 16,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-5,
        "attention_dropout": 0.0,
        "initializer_range": 1e-10,
        # Not a 4.57 field, but Hub configs carry it and TF models need it.
        "num_channels": 3,
    }

    def _check_types(self) -> None:
        super()._check_types()
        if self.num_channels != 3:
            raise ValueError(f"BlipVisionConfig: num_channels must be 3 (RGB), got {self.num_channels!r}")


class BlipTextConfig(BlipConfigBase):
    """The BERT text encoder/decoder's configuration (`transformers.BlipTextConfig`).

    The default of 8 attention heads is `transformers`' and wrong for every
    Salesforce checkpoint, whose configs say 12.

    >>> BlipTextConfig().bos_token_id
    30522
    """

    model_type = "blip_text_model"
    base_config_key = "text_config"
    own_defaults = {
        "vocab_size": 30524,
        "hidden_size": 768,
        "encoder_hidden_size": 768,
        "intermediate_size": 3072,
        "projection_dim": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 8,
        "max_position_embeddings": 512,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "use_cache": True,
        "label_smoothing": 0.0,
    }
    inherited_overrides = {
        "bos_token_id": 30522,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "sep_token_id": 102,
        "is_decoder": True,
    }


class BlipConfig(BlipConfigBase):
    """The full model's configuration (`transformers.BlipConfig`).

    As in `transformers`, the text `encoder_hidden_size` is set from the vision
    width, and `initializer_factor`/`initializer_range` are fixed.

    >>> BlipConfig(vision_config={"hidden_size": 1024}).text_config.encoder_hidden_size
    1024
    """

    model_type = "blip"
    own_defaults = {
        "projection_dim": 512,
        "logit_scale_init_value": 2.6592,
        "image_text_hidden_size": 256,
        "label_smoothing": 0.0,
    }
    sub_configs: ClassVar[dict[str, type[BlipConfigBase]]] = {
        "text_config": BlipTextConfig,
        "vision_config": BlipVisionConfig,
    }

    def __init__(
        self,
        text_config: dict[str, Any] | BlipTextConfig | None = None,
        vision_config: dict[str, Any] | BlipVisionConfig | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("initializer_factor", None)
        kwargs.pop("initializer_range", None)
        super().__init__(
            text_config=_sub_config(BlipTextConfig, text_config, "text_config"),
            vision_config=_sub_config(BlipVisionConfig, vision_config, "vision_config"),
            **kwargs,
        )
        self.text_config.encoder_hidden_size = self.vision_config.hidden_size
        self.initializer_factor = 1.0
        self.initializer_range = 0.02

    @classmethod
    def from_text_vision_configs(
        cls, text_config: BlipTextConfig, vision_config: BlipVisionConfig, **kwargs: Any
    ) -> BlipConfig:
        return cls(text_config=text_config.to_dict(), vision_config=vision_config.to_dict(), **kwargs)


def _sub_config(
    config_class: type[BlipConfigBase], value: dict[str, Any] | BlipConfigBase | None, name: str
) -> BlipConfigBase:
    if value is None:
        return config_class()
    if isinstance(value, config_class):
        return copy.deepcopy(value)
    if isinstance(value, dict):
        return config_class.from_dict(value)
    raise TypeError(f"BlipConfig: {name} must be a dict or {config_class.__name__}, got {type(value).__name__}")


def check_vqa_widths(config: BlipConfig) -> None:
    """VQA's answer decoder cross-attends to question states: text width must equal vision width."""
    text = config.text_config
    if text.hidden_size != text.encoder_hidden_size:
        raise ValueError(
            f"BlipForQuestionAnswering needs the text hidden_size ({text.hidden_size}) to equal the vision "
            f"hidden_size ({text.encoder_hidden_size}): its decoder cross-attends to the question encoder's states"
        )


def non_default_generation_fields(text_config: Any) -> dict[str, Any]:
    """The legacy generation fields of a model config that differ from its class's defaults."""
    default = type(text_config)()
    found = {}
    for name in GENERATION_DEFAULTS:
        value = getattr(text_config, name, None)
        if value is not None and value != getattr(default, name, None):
            found[name] = value
    return found
