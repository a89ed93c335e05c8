"""The PyTorch base class: loading/saving through `blip_core`, dtype and device helpers, init
(the layers every sub-network uses are in `layers.py`).

Loading builds the model on the meta device and assigns the checkpoint's
tensors directly (no random init, no second copy of the weights).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from blip_core.checkpoints.writing import DEFAULT_MAX_SHARD_SIZE, parse_save_options
from blip_core.config.configuration import BlipConfigBase
from blip_core.generation.support import GenerationConfigMixin, attach_generation_config
from blip_core.modeling.cpu_features import warn_if_emulated_bf16
from blip_core.modeling.load_options import generation_overrides, loading_info, parse_load_options, resolve_config
from blip_core.modeling.loading import mapped_tensor, open_pretrained, write_pretrained
from blip_core.modeling.model_api import PreTrainedModelAPI
from blip_core.modeling.moved_names import forward_moved_names
from blip_core.modeling.quantization import is_quantized_module
from blip_core.modeling.vocabulary import new_vocab_size, resized, text_config_of, vocab_params
from blip_core.weights import CheckpointError, saved_names
from blip_torch.quantization import quantize_model


def resolve_dtype(torch_dtype: Any, config: BlipConfigBase) -> torch.dtype:
    """`torch_dtype` as a torch dtype: None -> float32, "auto" -> the config's `dtype`, names accepted."""
    if torch_dtype is None:
        return torch.float32
    if torch_dtype == "auto":
        torch_dtype = getattr(config, "dtype", None) or "float32"
    if isinstance(torch_dtype, str):
        torch_dtype = getattr(torch, torch_dtype.replace("torch.", ""), None)
    if not isinstance(torch_dtype, torch.dtype) or not torch_dtype.is_floating_point:
        raise ValueError(f"torch_dtype must be a floating torch dtype, its name, or 'auto'; got {torch_dtype!r}")
    return torch_dtype


def resolve_device(device: Any, device_map: Any) -> torch.device | None:
    """`device`, or `device_map` ("auto" or the one device `blip_core.modeling.load_options.single_device` found), as a
    torch device (None: stay on the CPU). An int is accelerator N, as in `transformers`.

    Raises:
        ValueError: a value that names no device, or a device this machine does not have.
    """
    if device_map is not None:
        device = ("cuda" if torch.cuda.is_available() else "cpu") if device_map == "auto" else device_map
    if device is None:
        return None
    try:
        if isinstance(device, bool):
            raise TypeError("a bool names no device")
        target = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device {device!r} is not a device this torch can use: {err}") from None
    count = {"cuda": torch.cuda.device_count, "mps": lambda: int(torch.backends.mps.is_available())}
    if target.type in count and (target.index or 0) >= count[target.type]():
        raise ValueError(f"device {device!r} ({target}) is not available on this machine; use 'cpu' or 'auto'")
    return target


def to_numpy(tensor: torch.Tensor) -> tuple[np.ndarray, bool]:
    """(array, is_bf16) for saving; bfloat16 comes back as uint16 bit patterns."""
    tensor = tensor.detach().to("cpu").contiguous()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(np.uint16), True
    return tensor.numpy(), False


_FILE_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def checkpoint_tensor(state: Any, name: str, dtype: torch.dtype, map_file: bool = True) -> torch.Tensor:
    """Parameter `name` of a prepared checkpoint as a `dtype` tensor, the file's weights never copied twice.

    Where the file stores `dtype` and the layout allows (`blip_core.modeling.loading.mapped_tensor`), the
    tensor is a view of a private (copy-on-write) mapping of the file: its pages are read when first used,
    and writes to the parameter stay in this process. Otherwise the file's tensor is read (a mapped view
    where it must be converted, so it is copied once) as before. `map_file=False` reads it into a buffer of its
    own (a weight about to be quantized: its float pages are then freed, not left resident in the mapping).
    """
    mapped = mapped_tensor(state, name) if map_file else None
    if mapped is not None and _FILE_DTYPES.get(mapped[0]) == dtype:
        file_dtype, array = mapped
        tensor = torch.from_numpy(array)
        return tensor.view(torch.bfloat16) if file_dtype == "BF16" else tensor
    if mapped is not None and mapped[0] in _FILE_DTYPES and mapped[0] != "BF16":
        return torch.from_numpy(mapped[1]).to(dtype)  # converted: the mapping's pages are only read
    return torch.from_numpy(state.get(name)).to(dtype)


class BlipPreTrainedModel(PreTrainedModelAPI, GenerationConfigMixin, nn.Module):
    """Base of every class: `from_pretrained`, `save_pretrained`, `push_to_hub`, dtype/device helpers, init."""

    config_class: ClassVar[type[BlipConfigBase]]
    main_input_name: ClassVar[str] = "pixel_values"
    supports_gradient_checkpointing: ClassVar[bool] = True

    def __init__(self, config: BlipConfigBase) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        config.check_buildable()
        self.config = config
        self.gradient_checkpointing = False

    # -- construction helpers ------------------------------------------------------

    def post_init(self) -> None:
        """Initialise weights (unless built on the meta device) and tie the LM head."""
        if not any(p.is_meta for p in self.parameters()):
            self.apply(self._init_module)
        self.tie_weights()
        self.init_generation_config()

    def _init_module(self, module: nn.Module) -> None:
        """Initialise one module; the outermost model's config decides the scale, as in transformers."""
        std = getattr(self.config, "initializer_range", 0.02)
        if hasattr(module, "init_own_weights"):
            module.init_own_weights(std)
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def tie_weights(self, untied: frozenset[str] = frozenset()) -> None:
        """Share the LM-head decoder with the word embeddings, except names in `untied`."""

    def resize_token_embeddings(
        self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None, mean_resizing: bool = True
    ) -> nn.Embedding:
        """Give every token-indexed tensor `new_num_tokens` rows (rounded up to `pad_to_multiple_of`).

        The word embeddings of each text stack (VQA has two), the LM head's bias and an untied
        decoder; added rows follow `blip_core.modeling.vocabulary`. Sets `vocab_size` in the text config
        and returns the input embeddings, as `transformers` does. Raises ValueError for a model
        without text, or a size that drops the model's pad/BOS/SEP id.
        """
        text = text_config_of(self.config, type(self).__name__)
        size = new_vocab_size(text, new_num_tokens, pad_to_multiple_of)
        if size is not None and size != text.vocab_size:
            untied = self.untied_names()
            std = getattr(self.config, "initializer_range", 0.02)
            parameters = dict(self.named_parameters(remove_duplicate=False))
            for param in vocab_params(type(self).__name__, self.config, untied):
                tensor = parameters[param.name]  # the same Parameter keeps its ties, only its data changes
                new = resized(tensor.detach().to("cpu", torch.float32).numpy(), size, param, mean_resizing, std)
                tensor.data = torch.from_numpy(new).to(tensor.device, tensor.dtype)
            for module in self.modules():
                if isinstance(module, nn.Embedding):
                    module.num_embeddings = module.weight.shape[0]
                    if module.padding_idx is not None and module.padding_idx >= module.num_embeddings:
                        module.padding_idx = None
                elif isinstance(module, nn.Linear):
                    module.out_features = module.weight.shape[0]
            text.vocab_size = size
            self.tie_weights(untied)
        return self.get_input_embeddings()

    # -- properties ------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """Parameters counted once each (tied ones once), as `transformers` counts them: `only_trainable` those
        with `requires_grad`; `exclude_embeddings` leaves out the `nn.Embedding` tables (word and position
        embeddings of the text stacks; the vision patch and position tensors are not `nn.Embedding`s)."""
        tables = {f"{name}.weight" for name, module in self.named_modules() if isinstance(module, nn.Embedding)}
        return sum(
            parameter.numel()
            for name, parameter in self.named_parameters()
            if not (exclude_embeddings and name in tables) and (parameter.requires_grad or not only_trainable)
        )

    def get_memory_footprint(self, return_buffers: bool = True) -> int:
        """Bytes held by the parameters (and buffers: none here; `transformers` also holds `position_ids`)."""
        tensors = [*self.parameters(), *(self.buffers() if return_buffers else ())]
        return sum(tensor.nelement() * tensor.element_size() for tensor in tensors)

    def gradient_checkpointing_enable(self, **_: Any) -> None:
        for module in self.modules():
            if hasattr(module, "gradient_checkpointing"):
                module.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        for module in self.modules():
            if hasattr(module, "gradient_checkpointing"):
                module.gradient_checkpointing = False

    @property
    def is_gradient_checkpointing(self) -> bool:
        return any(getattr(module, "gradient_checkpointing", False) for module in self.modules())

    def enable_input_require_grads(self) -> None:
        """Make the input embeddings' output require gradients (LoRA/adapters on frozen weights with gradient
        checkpointing): a forward hook on `get_input_embeddings()`, removed by `disable_input_require_grads`."""

        def require_grads(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            output.requires_grad_(True)

        self._require_grads_hook = self.get_input_embeddings().register_forward_hook(require_grads)

    def disable_input_require_grads(self) -> None:
        """Remove the hook of `enable_input_require_grads`.

        Raises:
            AttributeError: `enable_input_require_grads` was never called (as in `transformers`).
        """
        hook = self.__dict__.get("_require_grads_hook")
        if hook is None:
            raise AttributeError(f"{type(self).__name__}: enable_input_require_grads() was not called")
        hook.remove()

    def set_output_embeddings(self, new_embeddings: nn.Module) -> None:
        """Replace the LM head's decoder layer (`get_output_embeddings()`).

        Raises:
            AttributeError: a class without an LM head.
        """
        head = self.get_output_embeddings()
        if head is None:
            raise AttributeError(f"{type(self).__name__} has no LM head, so no output embeddings to set")
        owner = self if hasattr(self, "cls") else self.text_decoder
        owner.cls.predictions.decoder = new_embeddings

    # -- loading -----------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        config: BlipConfigBase | str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> Any:
        """Load from a folder or Hub id (`model.safetensors`, else `pytorch_model.bin`, else `tf_model.h5`).

        Takes `transformers`' keyword arguments (`blip_core.modeling.load_options`): Hub options (`revision`,
        `subfolder`, ...), `use_safetensors`, `variant`, `torch_dtype`/`dtype`, `device`/`device_map`,
        `output_loading_info` (then returns `(model, info)`), `generation_config`; others set config fields.
        Raises ValueError for an option not supported, TypeError for an unknown one.
        """
        options = parse_load_options(cls.__name__, kwargs)
        config = resolve_config(cls.config_class, cls.__name__, pretrained_model_name_or_path, config, options)
        dtype = resolve_dtype(options.dtype, config)
        config.dtype = dtype  # as transformers (`config.dtype == torch.float16`); the sections keep their own
        target = resolve_device(options.device, options.device_map)
        warn_if_emulated_bf16(str(dtype).removeprefix("torch."), target.type if target is not None else "cpu")
        source, state = open_pretrained(pretrained_model_name_or_path, cls.__name__, config, options)
        try:
            with torch.device("meta"):
                model = cls(config)
            quantized = options.quantization is not None
            tensors = {
                name: checkpoint_tensor(state, name, dtype, map_file=not (quantized and is_quantized_module(name)))
                for name in state.names
            }
        finally:
            source.close()
        result = model.load_state_dict(tensors, strict=False, assign=True)
        tied = {pair.alias for pair in state.tied}
        problems = [name for name in result.missing_keys if name not in tied] + list(result.unexpected_keys)
        model.tie_weights(untied=state.untied)
        problems += [name for name, p in model.named_parameters() if p.is_meta]
        if problems:  # the core validated the names; this is a model-tree bug
            raise CheckpointError(f"{cls.__name__} could not take {problems} from {source.path}")
        attach_generation_config(
            model, pretrained_model_name_or_path, options.hub, options.generation_config, generation_overrides(options)
        )
        quantize_model(model, options.quantization)
        if target is not None:
            model.to(target)
        model.eval()
        return (model, loading_info()) if options.output_loading_info else model

    def quantize(self, mode: str = "int8") -> Any:
        """Int8 weight-only decoding (`blip_torch.quantization`): the text decoder's linear layers take int8
        weights, in place; returns the model. Inference only; the same as `from_pretrained(..., quantization=)`.

        Raises:
            ValueError: an unknown mode, a model without a text decoder, or one already quantized.
        """
        if getattr(self, "quantization", None):
            raise ValueError(f"{type(self).__name__} is already quantized ({self.quantization})")
        return quantize_model(self, mode)

    # -- saving ------------------------------------------------------------------------

    def untied_names(self) -> frozenset[str]:
        """Tie aliases that currently hold their own tensor (saved, unlike tied ones)."""
        return frozenset()

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        is_main_process: bool = True,
        state_dict: dict[str, Any] | None = None,
        save_function: Any = None,
        push_to_hub: bool = False,
        max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
        safe_serialization: bool = True,
        variant: str | None = None,
        token: str | bool | None = None,
        **kwargs: Any,
    ) -> Path:
        """Write the weights (`model.safetensors`; `pytorch_model.bin` with `safe_serialization=False`, written by
        `save_function`, default `torch.save`), sharded above `max_shard_size` as `transformers` names shards,
        for a `variant`; then `config.json` and, for the classes that generate, `generation_config.json`.
        Tied aliases are omitted; every file is atomic; stale weight files that would shadow these are removed.
        `state_dict` saves those tensors (canonical names) instead of the model's. `push_to_hub=True` then
        uploads the files written (`blip_core.io.hub_upload`). Raises TypeError for an unknown argument.
        """
        if getattr(self, "quantization", None) and state_dict is None:
            raise ValueError(
                f"{type(self).__name__}.save_pretrained: this model's text decoder is quantized "
                f"({self.quantization}), and checkpoints hold full-precision weights; save the model before "
                "quantizing it (quantize again after loading with quantization=)"
            )
        options = parse_save_options(
            type(self).__name__,
            is_main_process,
            push_to_hub,
            max_shard_size,
            safe_serialization,
            variant,
            save_function,
            kwargs,
        )
        state = self.state_dict() if state_dict is None else state_dict
        arrays, bf16 = {}, set()
        for name in saved_names(list(state), type(self).__name__, self.config, self.untied_names()):
            arrays[name], is_bf16 = to_numpy(torch.as_tensor(state[name]))
            if is_bf16:
                bf16.add(name)
        dtype_name = str(self.dtype).replace("torch.", "")
        return write_pretrained(
            save_directory,
            self.config,
            type(self).__name__,
            arrays,
            dtype_name,
            options,
            fmt="safetensors" if options.safe_serialization else "bin",
            bf16_names=frozenset(bf16),
            generation_config=self.generation_config,
            total_parameters=self.num_parameters(),
        )


# Names defined here before this file was split: old imports and whole-model pickles keep working.
__getattr__ = forward_moved_names(
    __name__,
    {
        "LOW_PRECISION": "blip_torch.layers",
        "Linear": "blip_torch.layers",
        "NATIVE_LOW_PRECISION_ROWS": "blip_torch.layers",
        "ONEDNN_MAX_ROWS": "blip_torch.layers",
        "additive_mask": "blip_torch.layers",
        "attend": "blip_torch.layers",
        "cpu_has_low_precision_units": "blip_torch.layers",
        "get_activation": "blip_torch.layers",
    },
)
