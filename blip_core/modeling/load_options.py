"""The keyword arguments of a model's `from_pretrained`, sorted once for both trees.

`transformers` programs pass many options besides the checkpoint's name. Each one here is honoured,
accepted without effect (with the reason), or refused with a `ValueError` naming it; what remains
overrides fields of the loaded config (`apply_config_overrides`), and anything else is a `TypeError`,
as in `transformers`, where unused keys reach the model's `__init__`. Nothing is dropped silently.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Any

from blip_core.config.configuration import BlipConfigBase, apply_config_kwargs
from blip_core.io.hub import split_hub_options, weight_formats

# Options without effect here, and why.
INERT_OPTIONS = {
    "from_tf": "every weight format is read, whatever the framework",
    "from_pt": "every weight format is read, whatever the framework",
    "from_flax": "every weight format is read, whatever the framework",
    "low_cpu_mem_usage": "loading always assigns the checkpoint's tensors in place (no random init, no copy)",
    "_fast_init": "loading always assigns the checkpoint's tensors in place (no random init, no copy)",
    "offload_state_dict": "loading never holds a second copy of the weights",
    "weights_only": "pytorch_model.bin is always read without running pickle code",
    "save_peft_format": "PEFT adapters are not used",
}
QUANTIZED_LOADING = (
    "bitsandbytes quantization is not supported; use quantization=\"int8\" (int8 weight-only decoding) or "
    "dtype=\"bfloat16\""
)
# Options refused unless given their "off" value (what a program passes to say "no, thanks").
REFUSED_OPTIONS: dict[str, tuple[tuple[Any, ...], str]] = {
    "quantization_config": ((None,), QUANTIZED_LOADING),
    "load_in_8bit": ((False, None), QUANTIZED_LOADING),
    "load_in_4bit": ((False, None), QUANTIZED_LOADING),
    "state_dict": (
        (None,),
        "loading from a state dict is not supported; build the model from its config and call load_state_dict "
        "(PyTorch) or save the tensors as safetensors first",
    ),
    "gguf_file": ((None,), "GGUF files are not read; use safetensors, pytorch_model.bin or tf_model.h5"),
    "tp_plan": ((None,), "tensor parallelism is not supported: a model loads on one device"),
    "tp_size": ((None,), "tensor parallelism is not supported: a model loads on one device"),
    "device_mesh": ((None,), "tensor parallelism is not supported: a model loads on one device"),
    "distributed_config": ((None,), "tensor parallelism is not supported: a model loads on one device"),
    "key_mapping": ((None,), "renaming checkpoint keys is not supported; every BLIP naming is read as it is"),
    "max_memory": ((None,), "offloading is not supported: a model loads on one device"),
    "offload_folder": ((None,), "offloading is not supported: a model loads on one device"),
    "offload_buffers": ((False, None), "offloading is not supported: a model loads on one device"),
    "use_kernels": ((False, None), "Hub kernels are not supported"),
    "adapter_kwargs": ((None, {}), "PEFT adapters are not supported"),
    "adapter_name": ((None, "default"), "PEFT adapters are not supported"),
    "load_weight_prefix": ((None,), "weight prefixes are found from the checkpoint itself"),
    "tf_to_pt_weight_rename": ((None,), "renaming checkpoint keys is not supported; TF and PyTorch names are read"),
}
ATTENTION_IMPLEMENTATIONS = (None, "eager", "sdpa")
# device_map strings that let accelerate spread a model over the devices it sees; on one device, "auto".
SPREADING_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
OFFLOAD_DEVICES = ("disk", "meta")


@dataclass
class LoadOptions:
    """What `from_pretrained` was asked, sorted: Hub options, weight selection, outputs, config overrides."""

    hub: dict[str, Any] = field(default_factory=dict)
    formats: tuple[str, ...] = ()
    variant: str | None = None
    output_loading_info: bool = False
    ignore_mismatched_sizes: bool = False
    attn_implementation: str | None = None
    generation_config: Any = None
    dtype: Any = None
    device: Any = None
    device_map: Any = None
    device_map_modules: tuple[str, ...] | None = None
    quantization: str | None = None  # "int8": `blip_core.modeling.quantization`
    overrides: dict[str, Any] = field(default_factory=dict)


def parse_load_options(class_name: str, kwargs: dict[str, Any]) -> LoadOptions:
    """Sort the keyword arguments of `<class_name>.from_pretrained`.

    Raises:
        ValueError: a refused option (quantization, offloading, ...), an unknown `attn_implementation`,
            both `token` and `use_auth_token`, a `device_map` over several devices or offloading.
        TypeError: `use_safetensors` not a bool or None.
    """
    hub, rest = split_hub_options(kwargs)
    for name in INERT_OPTIONS:
        rest.pop(name, None)
    for name, (off_values, reason) in REFUSED_OPTIONS.items():
        value = rest.pop(name, None)
        if not _is_off(value, off_values):
            raise ValueError(f"{class_name}.from_pretrained: {name}={_short(value)} is not supported: {reason}")
    attention = rest.pop("attn_implementation", None)
    if attention not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(
            f"{class_name}.from_pretrained: attn_implementation={attention!r} is not supported; BLIP runs 'eager' "
            "or 'sdpa' attention (the same numbers) or None"
        )
    device_map, modules = single_device(class_name, rest.pop("device_map", None))
    return LoadOptions(
        hub=hub,
        formats=weight_formats(rest.pop("use_safetensors", None)),
        variant=rest.pop("variant", None),
        output_loading_info=bool(rest.pop("output_loading_info", False)),
        ignore_mismatched_sizes=bool(rest.pop("ignore_mismatched_sizes", False)),
        attn_implementation=attention,
        generation_config=rest.pop("generation_config", None),
        dtype=_one_dtype(rest.pop("dtype", None), rest.pop("torch_dtype", None)),
        device=rest.pop("device", None),
        device_map=device_map,
        device_map_modules=modules,
        quantization=rest.pop("quantization", None),
        overrides=rest,
    )


def single_device(class_name: str, device_map: Any) -> tuple[Any, tuple[str, ...] | None]:
    """(the one device a `device_map` names, the module names of a dict map).

    A model loads on one device: "auto" (and accelerate's "balanced", "balanced_low_0", "sequential", which
    are "auto" on one device), one device (int, name or device object), or a dict putting every module on
    the same device (`{"": "cpu"}`, `{"": 0}`, `{"vision_model": 0, "text_decoder": "cuda:0"}`) are accepted.

    Raises:
        ValueError: a map over several devices, an offloading map ("disk", "meta"), an empty map.
    """
    if isinstance(device_map, str) and device_map in SPREADING_MAPS:
        return "auto", None
    if not isinstance(device_map, dict):
        return device_map, None
    devices = {_device_key(value): value for value in device_map.values()}
    offloaded = [value for value in devices.values() if str(value).lower() in OFFLOAD_DEVICES]
    if offloaded:
        reason = f"offloading to {offloaded[0]!r} is not supported: a model loads on one device"
    elif len(devices) > 1:
        reason = "multi-device maps are not supported: a model loads on one device"
    elif not devices or not all(isinstance(key, str) for key in device_map):
        reason = 'expected module names mapped to one device, e.g. {"": "cpu"} or {"": 0}'
    else:
        return next(iter(devices.values())), tuple(device_map)
    raise ValueError(f"{class_name}.from_pretrained: device_map={_short(device_map)}: {reason}")


def _device_key(device: Any) -> str:
    """One spelling per device: 0, "cuda", "cuda:0" and torch.device("cuda:0") are the same one."""
    if isinstance(device, bool):
        return repr(device)
    if isinstance(device, int):
        return f"cuda:{device}"
    kind, _, index = str(device).lower().lstrip("/").partition(":")
    kind = "cuda" if kind == "gpu" else kind
    return kind if kind in ("cpu", *OFFLOAD_DEVICES) else f"{kind}:{index or 0}"


def check_device_map(class_name: str, modules: tuple[str, ...] | None, names: list[str]) -> None:
    """A dict `device_map` must place every parameter (a key is a module name; "" is the whole model).

    Raises:
        ValueError: parameters no key covers, named by module.
    """
    if modules is None or "" in modules:
        return
    uncovered = [name for name in names if not any(name == m or name.startswith(m + ".") for m in modules)]
    if uncovered:
        missing = sorted({name.rsplit(".", 1)[0] for name in uncovered})
        raise ValueError(
            f"{class_name}.from_pretrained: device_map={list(modules)} gives no device to {len(uncovered)} "
            f"parameters (modules {missing[:5]}{' ...' if len(missing) > 5 else ''}); add them, or use "
            '{"": device} for the whole model'
        )


def _is_off(value: Any, off_values: tuple[Any, ...]) -> bool:
    """Whether `value` is one of an option's "off" values (None, False, "default", {})."""
    return any(value is off or (isinstance(value, (str, dict)) and value == off) for off in off_values)


def _one_dtype(dtype: Any, torch_dtype: Any) -> Any:
    """`dtype`, or its older name `torch_dtype` (`transformers` prefers `dtype` when both are given)."""
    return dtype if dtype is not None else torch_dtype


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def resolve_config(
    config_class: type[BlipConfigBase],
    class_name: str,
    name_or_path: Any,
    config: Any,
    options: LoadOptions,
) -> BlipConfigBase:
    """The config to build, as `transformers` makes it.

    Without `config` (or with a path), it is read from the checkpoint and each override that names one of
    its fields sets it (a dict for `text_config`/`vision_config` updates that section). With a config
    object, a copy of it is used and overrides are not allowed.

    Raises:
        TypeError: a config of the wrong class; an override that is no field of the config (or any
            override next to a config object: `transformers` passes them to the model's `__init__`).
    """
    overrides = options.overrides
    if config is None or isinstance(config, (str, os.PathLike)):
        source = name_or_path if config is None else config
        loaded = config_class.from_pretrained(source, **options.hub)
        unused = apply_config_kwargs(loaded, overrides)
        if unused:
            raise TypeError(
                f"{class_name}.from_pretrained() got unexpected keyword argument(s) {sorted(unused)}: neither a "
                f"loading option nor a field of {config_class.__name__}"
            )
        config = loaded
    elif not isinstance(config, config_class):
        raise TypeError(f"config must be a {config_class.__name__}, got {type(config).__name__}")
    else:
        if overrides:
            raise TypeError(
                f"{class_name}.from_pretrained() got unexpected keyword argument(s) {sorted(overrides)}: with "
                "config= given, set fields on that config instead (transformers passes them to the model's __init__)"
            )
        config = copy.deepcopy(config)  # as transformers: the caller's object is never changed by loading
    config._attn_implementation = options.attn_implementation or "eager"
    config.name_or_path = name_or_path  # as transformers records it; never written to config.json
    if options.device_map_modules is not None:
        from blip_core.weights import expected_params

        names = [spec.name for spec in expected_params(class_name, config)]
        check_device_map(class_name, options.device_map_modules, names)
    return config


def generation_overrides(options: LoadOptions) -> dict[str, Any]:
    """Overrides that also set the loaded generation config, as `transformers` passes them on (sections excluded)."""
    from blip_core.config.generation_config import GenerationConfig

    default = GenerationConfig()
    return {
        key: value
        for key, value in options.overrides.items()
        if not isinstance(value, dict) and hasattr(default, key) and not callable(getattr(default, key))
    }


def loading_info() -> dict[str, list[Any]]:
    """`output_loading_info=True`'s report. Loading is strict (a checkpoint that does not fit the model
    is a `CheckpointError`), so on success every list is empty."""
    return {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": [], "error_msgs": []}
