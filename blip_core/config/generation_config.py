"""`GenerationConfig`: the generation settings a model holds, with `transformers`' fields and file format.

Fields, defaults, `generation_config.json` (diff against the defaults, sorted,
indent 2), `from_model_config`, `update`, `__eq__`/`__hash__` (metadata left
out) and the checks of `validate` are those of `transformers` 4.57.6; unknown
keys are kept as attributes. Which fields `generate` honours, and the
precedence between a model's config, a passed config and keyword arguments,
live in `blip_core.generation.options`.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import numbers
import os
from pathlib import Path
from typing import Any, ClassVar

from blip_core.io.atomic import atomic_write_text
from blip_core.io.hub_upload import PushToHubMixin

GENERATION_CONFIG_NAME = "generation_config.json"
# The `transformers` release whose generation semantics (and file format) this project follows.
TRANSFORMERS_VERSION = "4.57.6"
METADATA_FIELDS = ("_from_model_config", "_commit_hash", "_original_object_hash", "transformers_version")

# Every field of `transformers.GenerationConfig` 4.57.6 with its default, in its order.
DEFAULTS: dict[str, Any] = {
    "max_length": 20,
    "max_new_tokens": None,
    "min_length": 0,
    "min_new_tokens": None,
    "early_stopping": False,
    "max_time": None,
    "stop_strings": None,
    "do_sample": False,
    "num_beams": 1,
    "use_cache": True,
    "cache_implementation": None,
    "cache_config": None,
    "return_legacy_cache": None,
    "prefill_chunk_size": None,
    "temperature": 1.0,
    "top_k": 50,
    "top_p": 1.0,
    "min_p": None,
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "length_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "renormalize_logits": False,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "remove_invalid_values": False,
    "exponential_decay_length_penalty": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "sequence_bias": None,
    "token_healing": False,
    "guidance_scale": None,
    "watermarking_config": None,
    "num_return_sequences": 1,
    "output_attentions": False,
    "output_hidden_states": False,
    "output_scores": False,
    "output_logits": None,
    "return_dict_in_generate": False,
    "pad_token_id": None,
    "bos_token_id": None,
    "eos_token_id": None,
    "encoder_no_repeat_ngram_size": 0,
    "decoder_start_token_id": None,
    "num_assistant_tokens": 20,
    "num_assistant_tokens_schedule": "constant",
    "assistant_confidence_threshold": 0.4,
    "prompt_lookup_num_tokens": None,
    "max_matching_ngram_size": None,
    "assistant_early_exit": None,
    "assistant_lookbehind": 10,
    "target_lookbehind": 10,
    "compile_config": None,
    "disable_compile": False,
    "low_memory": None,
    "penalty_alpha": None,
    "dola_layers": None,
    "diversity_penalty": 0.0,
    "num_beam_groups": 1,
    "constraints": None,
    "force_words_ids": None,
}

# Fields of this project only (not in `transformers`): written to `generation_config.json` only when set to
# something else than their default, so a default config's files and dicts stay `transformers`' own.
# `beam_length_rule`: the length beam search divides a hypothesis' summed log-probability by (see
# `blip_core.generation.options.GenerationOptions.beam_lengths`).
EXTENSION_DEFAULTS: dict[str, Any] = {"beam_length_rule": "new_tokens"}
BEAM_LENGTH_RULES = ("new_tokens", "whole_sequence")

# Arguments of `generate()` itself that do not belong in a config (`transformers` refuses them there too).
GENERATE_ONLY_ARGUMENTS = (
    "logits_processor",
    "stopping_criteria",
    "prefix_allowed_tokens_fn",
    "synced_gpus",
    "assistant_model",
    "streamer",
    "negative_prompt_ids",
    "negative_prompt_attention_mask",
    "use_model_defaults",
)

# Sampling-only and beam-only fields: set outside their mode they do nothing (a warning, as in transformers).
_SAMPLING_ONLY = {"temperature": 1.0, "top_p": 1.0, "min_p": None, "typical_p": 1.0, "top_k": 50}
_SAMPLING_ONLY.update({"epsilon_cutoff": 0.0, "eta_cutoff": 0.0})
_BEAM_ONLY = {"early_stopping": False, "length_penalty": 1.0, "num_beam_groups": 1, "diversity_penalty": 0.0}
_BEAM_ONLY["beam_length_rule"] = "new_tokens"

# Fields whose type `validate` checks (None allowed): counts, and the numbers of sampling and penalties.
_INT_FIELDS = ("max_length", "max_new_tokens", "min_length", "min_new_tokens", "num_beams", "num_beam_groups")
_INT_FIELDS += ("num_return_sequences", "top_k", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size")
_FLOAT_FIELDS = ("temperature", "top_p", "typical_p", "min_p", "repetition_penalty", "length_penalty")
_FLOAT_FIELDS += ("diversity_penalty", "epsilon_cutoff", "eta_cutoff", "encoder_repetition_penalty", "max_time")

logger = logging.getLogger(__name__)
_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logger.warning(message)


class GenerationConfig(PushToHubMixin):
    """Generation settings (`transformers.GenerationConfig`): defaults, validation, `generation_config.json`.

    >>> config = GenerationConfig(num_beams=3, max_new_tokens=30)
    >>> config.num_beams, config.top_k
    (3, 50)
    >>> config.to_diff_dict()["max_new_tokens"]
    30
    """

    extra_output_flags: ClassVar[tuple[str, ...]] = (
        "output_attentions",
        "output_hidden_states",
        "output_scores",
        "output_logits",
    )

    def __init__(self, **kwargs: Any) -> None:
        for key, default in {**DEFAULTS, **EXTENSION_DEFAULTS}.items():
            setattr(self, key, copy.deepcopy(kwargs.pop(key, default)))
        self.is_assistant = False
        self._from_model_config = kwargs.pop("_from_model_config", False)
        self._commit_hash = kwargs.pop("_commit_hash", None)
        self.transformers_version = kwargs.pop("transformers_version", TRANSFORMERS_VERSION)
        if not self._from_model_config:  # a model config's other fields are not generation settings
            for key, value in kwargs.items():
                if key.startswith("__") or hasattr(type(self), key):  # `__dict__`, `validate`, ... from a file
                    raise ValueError(f"GenerationConfig: {key!r} cannot be a field (it names a method or attribute)")
                setattr(self, key, value)
        self.validate()

    # -- comparisons ------------------------------------------------------------------

    def __hash__(self) -> int:
        return hash(self.to_json_string(ignore_metadata=True))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GenerationConfig):
            return False
        return self.to_json_string(use_diff=False, ignore_metadata=True) == other.to_json_string(
            use_diff=False, ignore_metadata=True
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string(ignore_metadata=True)}"

    # -- validation -----------------------------------------------------------------

    def validate(self, strict: bool = False) -> None:
        """Raise `ValueError` for settings that cannot work; warn (or, `strict`, raise) for ineffective ones."""
        self._check_field_types()
        if self.early_stopping not in (True, False, "never"):
            raise ValueError(f"`early_stopping` must be a boolean or 'never', but is {self.early_stopping}.")
        if self.beam_length_rule not in BEAM_LENGTH_RULES:
            raise ValueError(
                f"`beam_length_rule` must be one of {BEAM_LENGTH_RULES} ('new_tokens': transformers 4.57's rule, "
                f"'whole_sequence': the original BLIP's, transformers 4.15), but is {self.beam_length_rule!r:.60}."
            )
        if self.max_new_tokens is not None and self.max_new_tokens <= 0:
            raise ValueError(f"`max_new_tokens` must be greater than 0, but is {self.max_new_tokens}.")
        for argument in GENERATE_ONLY_ARGUMENTS:
            if argument in self.__dict__:
                raise ValueError(
                    f"Argument `{argument}` is not a valid argument of `GenerationConfig`. It should be passed to "
                    "`generate()` (or a pipeline) directly."
                )
        self._check_group_beam_search()
        self._check_return_sequences()
        issues = self._minor_issues()
        if not issues:
            return
        details = "\n".join(f"- `{name}`: {text}" for name, text in issues.items())
        if strict:
            raise ValueError("GenerationConfig is invalid: \n" + details)
        _warn_once(f"The following generation flags are not valid and may be ignored: {list(issues)}.\n{details}")

    def _check_field_types(self) -> None:
        """Counts are None or integers, the sampling and penalty values finite numbers: a file's
        `"num_beams": "4"` is refused here, naming the field, not deep inside `generate` (value ranges are
        `blip_core.generation.options`' to check, with `transformers`' messages)."""
        for name in _INT_FIELDS:
            value = getattr(self, name, None)
            if value is None or (name == "max_new_tokens" and isinstance(value, bool)):
                continue  # max_new_tokens=False gets transformers' own message ("greater than 0") next
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"`{name}` must be an integer, but is {value!r:.60}.")
        for name in _FLOAT_FIELDS:
            value = getattr(self, name, None)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"`{name}` must be a finite number, but is {value!r:.60}.")

    def _check_group_beam_search(self) -> None:
        if self.num_beams == 1 or (self.diversity_penalty == 0.0 and self.num_beam_groups == 1):
            return
        prefix = "`diversity_penalty` is not 0.0 or `num_beam_groups` is not 1, triggering group beam search. "
        if self.do_sample is True:
            raise ValueError(prefix + "In this generation mode, `do_sample` must be set to `False`")
        groups = self.num_beam_groups
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or self.num_beams % groups != 0:
            raise ValueError(prefix + "In this generation mode, `num_beams` should be divisible by `num_beam_groups`")
        if self.num_beam_groups > 1 and self.diversity_penalty == 0.0:
            raise ValueError(
                prefix + "`diversity_penalty` should be greater than `0.0`, otherwise your groups will be identical."
            )

    def _check_return_sequences(self) -> None:
        if self.num_return_sequences == 1:
            return
        if self.num_beams == 1 and self.do_sample is False:
            raise ValueError(
                "Greedy methods without beam search do not support `num_return_sequences` different than 1 "
                f"(got {self.num_return_sequences})."
            )
        if self.num_beams != 1 and self.num_return_sequences > self.num_beams:
            raise ValueError(
                f"`num_return_sequences` ({self.num_return_sequences}) has to be smaller or equal to `num_beams` "
                f"({self.num_beams})."
            )

    def _minor_issues(self) -> dict[str, str]:
        """Settings that have no effect in the chosen mode (transformers warns about the same ones)."""
        issues = {}
        if self.do_sample is False:
            for name, default in _SAMPLING_ONLY.items():
                if getattr(self, name) not in (None, default):
                    issues[name] = f"`{name}` is set to `{getattr(self, name)}` but only sampling uses it (do_sample)"
        if self.num_beams == 1:
            for name, default in _BEAM_ONLY.items():
                if getattr(self, name) not in (None, default):
                    issues[name] = f"`{name}` is set to `{getattr(self, name)}` but only beam search uses it"
        if self.return_dict_in_generate is not True:
            for name in self.extra_output_flags:
                if getattr(self, name) is True:
                    issues[name] = f"`{name}` is ignored unless `return_dict_in_generate=True`"
        return issues

    # -- dicts and JSON ---------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Every attribute (known, unknown and `transformers_version`), as `transformers` serialises it."""
        output = copy.deepcopy({k: v for k, v in self.__dict__.items() if k not in _NEVER_SERIALISED})
        for key, default in EXTENSION_DEFAULTS.items():
            if output.get(key) == default:
                del output[key]
        output["transformers_version"] = TRANSFORMERS_VERSION
        return output

    def to_diff_dict(self) -> dict[str, Any]:
        """The attributes that differ from `GenerationConfig()` (plus `transformers_version`)."""
        defaults = GenerationConfig().to_dict()
        return {
            key: value
            for key, value in self.to_dict().items()
            if key not in defaults or key == "transformers_version" or value != defaults[key]
        }

    def to_json_string(self, use_diff: bool = True, ignore_metadata: bool = False) -> str:
        data = self.to_diff_dict() if use_diff else self.to_dict()
        if ignore_metadata:
            for name in METADATA_FIELDS:
                data.pop(name, None)
        return json.dumps(_json_ready(data), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, json_file_path: str | os.PathLike, use_diff: bool = True) -> None:
        atomic_write_text(Path(json_file_path), self.to_json_string(use_diff=use_diff))

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> Any:
        """A config from a dict; `kwargs` override it. With `return_unused_kwargs=True`: (config, unused)."""
        if not isinstance(config_dict, dict):
            raise TypeError(f"{cls.__name__}.from_dict expects a dict, got {type(config_dict).__name__}")
        return_unused = kwargs.pop("return_unused_kwargs", False)
        kwargs.pop("_from_auto", None)
        kwargs.pop("_from_pipeline", None)
        config = cls(**{**config_dict, **kwargs})
        unused = config.update(**kwargs)
        return (config, unused) if return_unused else config

    @classmethod
    def from_model_config(cls, model_config: Any) -> GenerationConfig:
        """The generation settings a model config holds (`transformers`' legacy fields), decoder's included."""
        data = {k: v for k, v in model_config.to_dict().items() if v is not None and k != "_from_model_config"}
        config = cls.from_dict(data, _from_model_config=True)
        decoder = model_config.get_text_config(decoder=True) if hasattr(model_config, "get_text_config") else None
        if decoder is not None and decoder is not model_config:
            default, decoder_values = GenerationConfig(), decoder.to_dict()
            for name in config.to_dict():
                if name in decoder_values and getattr(config, name) == getattr(default, name):
                    setattr(config, name, decoder_values[name])
        if config.return_dict_in_generate is False and any(
            getattr(config, flag, False) for flag in cls.extra_output_flags
        ):
            config.return_dict_in_generate = True
        config._original_object_hash = hash(config)
        return config

    def update(self, **kwargs: Any) -> dict[str, Any]:
        """Set the attributes that exist; return the other key/value pairs (unused). Re-validates."""
        used = [key for key in kwargs if hasattr(self, key)]
        for key in used:
            setattr(self, key, kwargs[key])
        self.validate()
        return {key: value for key, value in kwargs.items() if key not in used}

    def is_unmodified(self) -> bool:
        """True while this config equals what `from_model_config`/`from_pretrained` made."""
        return self.__dict__.get("_original_object_hash") == hash(self)

    # -- files --------------------------------------------------------------------------

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        config_file_name: str | os.PathLike | None = None,
        push_to_hub: bool = False,
        **kwargs: Any,
    ) -> Path:
        """Write `generation_config.json` (the diff against the defaults), atomically; refuses invalid settings;
        `push_to_hub=True` also uploads it."""
        from blip_core.io.hub_upload import check_save_kwargs

        check_save_kwargs("GenerationConfig", push_to_hub, kwargs)
        try:
            self.validate(strict=True)
        except ValueError as err:
            raise ValueError(f"{err}\n\nFix these issues to save the configuration.") from None
        directory = Path(save_directory)
        if directory.exists() and not directory.is_dir():
            raise ValueError(f"save_pretrained: {directory} exists and is not a directory")
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / (config_file_name or GENERATION_CONFIG_NAME)
        self.to_json_file(path, use_diff=True)
        return path

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name: str | os.PathLike,
        config_file_name: str | os.PathLike | None = None,
        cache_dir: str | os.PathLike | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: str | bool | None = None,
        revision: str = "main",
        **kwargs: Any,
    ) -> Any:
        """Read `generation_config.json` from a folder, a file path or a Hub repo; `kwargs` override fields.

        Raises `OSError` when the file is missing or not valid JSON.
        """
        from blip_core.io.hub import split_hub_options

        hub, kwargs = split_hub_options(
            {
                "revision": None if revision == "main" else revision,
                "cache_dir": cache_dir,
                "force_download": force_download,
                "local_files_only": local_files_only,
                "token": token,
                **kwargs,
            }
        )
        path = find_generation_config(pretrained_model_name, config_file_name, **hub)
        if path is None:
            raise OSError(f"{config_file_name or GENERATION_CONFIG_NAME} not found in {pretrained_model_name}")
        try:
            result = cls.from_dict(read_generation_json(path), **kwargs)
        except (ValueError, TypeError) as err:  # the same type, naming the file
            raise (TypeError if isinstance(err, TypeError) else ValueError)(f"{path}: {err}") from None
        config = result[0] if isinstance(result, tuple) else result
        config._original_object_hash = hash(config)
        return result


_NEVER_SERIALISED = ("_commit_hash", "_original_object_hash", "compile_config")


def _json_ready(value: Any) -> Any:
    """Dict keys as strings, tuples as lists (sequence_bias holds tuple keys), as `transformers` writes them."""
    if isinstance(value, dict):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if hasattr(value, "to_dict"):
        return _json_ready(value.to_dict())
    return value


def find_generation_config(
    name_or_path: str | os.PathLike, config_file_name: str | os.PathLike | None = None, **hub: Any
) -> Path | None:
    """The local path of a model's `generation_config.json` (folder, file or Hub repo); None when it has none."""
    from blip_core.io.hub import resolve_file

    source = Path(name_or_path)
    if source.is_file():
        return source
    return resolve_file(name_or_path, str(config_file_name or GENERATION_CONFIG_NAME), required=False, **hub)


def read_generation_json(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a generation config file; `OSError` naming the file when it is unreadable, too large, nested too
    deeply or not a JSON object (`transformers` raises OSError for a file that is not JSON)."""
    from blip_core.config.json_files import read_config_json

    try:
        return read_config_json(Path(path))
    except ValueError as err:
        raise OSError(f"It looks like the config file at '{path}' is not a valid JSON file ({err}).") from None
