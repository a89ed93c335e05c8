"""A pipeline's keyword options, read as `transformers` 4.57.6 reads each task's, then checked.

Given at `pipeline(...)` or at the call (the call's win), options split into the task's own
(`prompt`, `timeout`, `candidate_labels`, `return_full_text`, ...) and generation options for
`generate`: `generate_kwargs={...}` (passed on unchanged; `generate` checks them),
`max_new_tokens=`, and any generation option given directly (`num_beams=3`: `transformers`
takes these only at `pipeline(...)`). Other names are a TypeError; nothing is dropped silently,
except `top_k` on visual question answering without `candidate_answers`, which `transformers` accepts and
ignores for generative models (with `candidate_answers` it is the number of ranked answers returned).
Framework-neutral.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

GENERATING_TASKS = ("image-to-text", "image-text-to-text", "visual-question-answering")
# The task's own options (inputs such as `question` and `text` are read apart, in pipeline_inputs).
TASK_OPTIONS: dict[str, tuple[str, ...]] = {
    "image-to-text": ("prompt", "timeout"),
    "visual-question-answering": ("timeout", "padding", "truncation", "top_k", "candidate_answers", "protocol"),
    "image-text-to-text": (
        "timeout",
        "padding",
        "truncation",
        "max_length",
        "return_full_text",
        "return_tensors",
        "return_type",
        "clean_up_tokenization_spaces",
        "skip_special_tokens",
        "stop_sequence",
        "continue_final_message",
    ),
    "zero-shot-image-classification": (
        "candidate_labels",
        "hypothesis_template",
        "timeout",
        "top_k",
        "tokenizer_kwargs",
        "scoring",
    ),
    "image-text-matching": ("text", "timeout"),
}
RETURN_TYPES = ("tensors", "new_text", "full_text")
# zero-shot-image-classification's `scoring`: ITC cosine (CLIP-like) or the ITM head's match odds.
ZERO_SHOT_SCORING = ("itc", "itm")


def split_options(task: str, options: dict[str, Any]) -> dict[str, Any]:
    """The task's options with their generation options gathered under "generate".

    Raises:
        ValueError: `max_new_tokens` given directly and in `generate_kwargs`, or a bad value.
        TypeError: a name this task does not take.
    """
    own = set(TASK_OPTIONS[task])
    result: dict[str, Any] = {}
    generate: dict[str, Any] = {}
    generate_kwargs = options.get("generate_kwargs")
    if generate_kwargs is not None and not isinstance(generate_kwargs, dict):
        raise TypeError(f"generate_kwargs must be a dict, got {type(generate_kwargs).__name__}")
    unknown = []
    generation_names = _generation_names() if task in GENERATING_TASKS else set()
    for name, value in options.items():
        if name == "generate_kwargs":
            continue
        if name in own:
            result[name] = value
        elif name in generation_names:
            generate[name] = value
        else:
            unknown.append(name)
    if unknown:
        takes = sorted(own | {"batch_size", "num_workers"} | ({"generate_kwargs"} if generation_names else set()))
        also = " and generation options (num_beams, max_new_tokens, ...)" if generation_names else ""
        raise TypeError(f"the {task} pipeline got unexpected arguments {sorted(unknown)}; it takes {takes}{also}")
    if generate_kwargs:
        if "max_new_tokens" in generate and "max_new_tokens" in generate_kwargs:
            raise ValueError(
                "`max_new_tokens` is defined both as an argument and inside `generate_kwargs` argument, "
                "please use only 1 version"
            )
        generate.update(generate_kwargs)
    result["generate"] = generate
    _check(result)
    return result


def _generation_names() -> set[str]:
    """Every name `generate` knows: the generation config's fields and its call arguments."""
    from blip_core.config.generation_config import DEFAULTS
    from blip_core.generation.options import CALL_ARGUMENTS, TOKEN_ARGUMENTS

    return {*DEFAULTS, *CALL_ARGUMENTS, *TOKEN_ARGUMENTS, "generation_config"}


def merge(defaults: dict[str, Any], call: dict[str, Any]) -> dict[str, Any]:
    """Call options over construction options; generation options merge name by name."""
    merged = {**defaults, **call}
    merged["generate"] = {**defaults.get("generate", {}), **call.get("generate", {})}
    return merged


def _check(options: dict[str, Any]) -> None:
    timeout = options.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or timeout <= 0):
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
    top_k = options.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    scoring = options.get("scoring")
    if scoring is not None and scoring not in ZERO_SHOT_SCORING:
        raise ValueError(f"scoring must be one of {ZERO_SHOT_SCORING} (or None: the model's default), got {scoring!r}")
    template = options.get("hypothesis_template")
    if template is not None and (not isinstance(template, str) or "{}" not in template):
        raise ValueError(f"hypothesis_template must be a string with a {{}} for the label, got {template!r}")
    tokenizer_kwargs = options.get("tokenizer_kwargs")
    if tokenizer_kwargs is not None:
        warnings.warn(
            "`tokenizer_kwargs` is deprecated in transformers; pass padding/truncation/max_length as usual",
            FutureWarning,
            stacklevel=4,
        )
        extra = set(tokenizer_kwargs) - {"padding", "truncation", "max_length"}
        if extra:
            raise TypeError(f"tokenizer_kwargs takes padding, truncation and max_length, not {sorted(extra)}")
    prompt = options.get("prompt")
    if prompt is not None and not isinstance(prompt, (str, list, tuple)):
        raise ValueError(f"prompt must be a string (or one string per image), got {type(prompt).__name__}")


def return_type(options: dict[str, Any]) -> str:
    """image-text-to-text's output: "full_text" (default), "new_text" or "tensors".

    Raises:
        ValueError: `return_full_text` with `return_tensors`, or an unknown `return_type`.
    """
    chosen = options.get("return_type")
    if chosen is not None:
        name = str(getattr(chosen, "name", chosen)).lower()
        if name not in RETURN_TYPES:
            raise ValueError(f"return_type must be one of {RETURN_TYPES}, got {chosen!r}")
        return name
    full, tensors = options.get("return_full_text"), options.get("return_tensors")
    if full is not None:
        if tensors:
            raise ValueError("`return_full_text` is mutually exclusive with `return_tensors`")
        return "full_text" if full else "new_text"
    return "tensors" if tensors else "full_text"
