"""The TensorFlow/Keras 3 base class: loading/saving through `blip_core`, building, dtype and device
helpers, graph functions (the layers every sub-network uses are in `layers.py`). Twin of
`blip_torch/modeling_utils.py`.

Every layer builds its variables from the config (no dummy forward pass), so
loading is: create the model, build it with zero-initialised variables, assign
the checkpoint's arrays through `blip_core.weights.layouts`.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, ClassVar

import keras
import numpy as np
import tensorflow as tf

from blip_core.checkpoints.safetensors_io import ALIGNMENT, float32_to_bf16_bits
from blip_core.checkpoints.writing import DEFAULT_MAX_SHARD_SIZE, parse_save_options
from blip_core.config.configuration import BlipConfigBase
from blip_core.generation.support import GenerationConfigMixin, attach_generation_config
from blip_core.modeling.cpu_features import warn_if_emulated_bf16
from blip_core.modeling.function_cache import FunctionCache, cache_on
from blip_core.modeling.load_options import generation_overrides, loading_info, parse_load_options, resolve_config
from blip_core.modeling.loading import open_pretrained, write_pretrained
from blip_core.modeling.model_api import PreTrainedModelAPI
from blip_core.modeling.moved_names import forward_moved_names
from blip_core.modeling.vocabulary import new_vocab_size, resized, text_config_of, vocab_params
from blip_core.weights import CheckpointError, expected_params, keras_axes, keras_variable_name, saved_names
from blip_core.weights.layouts import from_keras, keras_attribute, to_keras
from blip_tf.keras_model import TFKerasModel
from blip_tf.layers import _LOADING, TFLinear, _OwnWeights, initializer
from blip_tf.quantization import quantize_model


@contextlib.contextmanager
def building(dtype: str, loading: bool):
    """Create layers with this variable dtype and (when loading) without random initialisation."""
    token = _LOADING.set(loading)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
        _LOADING.reset(token)


# Keras variable name -> the attribute holding its initializer on Keras' own layers.
_INITIALIZER_ATTRIBUTES = {
    "kernel": "kernel_initializer",
    "bias": "bias_initializer",
    "gamma": "gamma_initializer",
    "beta": "beta_initializer",
    "embeddings": "embeddings_initializer",
}


def preload(layer: keras.layers.Layer, variable_name: str, read: Any) -> None:
    """Make `layer` create `variable_name` from `read()` when built (no init, no second copy)."""

    def init(shape: Any, dtype: Any = None) -> Any:
        value = read()
        if tuple(value.shape) != tuple(shape):
            raise CheckpointError(
                f"{layer.name}.{variable_name}: checkpoint shape {value.shape}, layer shape {tuple(shape)}"
            )
        wanted = tf.as_dtype(dtype or "float32")
        return value if value.dtype == wanted else tf.cast(value, wanted)  # e.g. a float16 file

    if isinstance(layer, _OwnWeights):
        layer.preloaded[variable_name] = init
    else:
        setattr(layer, _INITIALIZER_ATTRIBUTES[variable_name], init)


def keras_value(state: Any, spec: Any) -> tf.Tensor:
    """A checkpoint tensor (torch layout) as a tensor in Keras layout, each byte copied once.

    Tensors Keras stores transposed are read from the file's mapped pages by TensorFlow's own
    transpose; the others are read into a fresh array that TensorFlow adopts without a copy.
    (`tf.constant` and a NumPy transpose copied everything twice more and made loading a
    base-size checkpoint take twice as long.)
    """
    axes = keras_axes(spec.kind, spec.leaf)
    if axes is None:
        return _shared_tensor(state.get(spec.name))
    return tf.transpose(_shared_tensor(state.lend(spec.name)), axes)


def _shared_tensor(array: np.ndarray) -> tf.Tensor:
    """`array`'s memory as a tensor when TensorFlow can adopt it (writeable, contiguous, 64-byte aligned).

    Misaligned memory would pass DLPack and abort the process in a later kernel, so it is copied.
    """
    adoptable = array.flags.writeable and array.flags.c_contiguous and array.size
    if adoptable and array.ctypes.data % ALIGNMENT == 0:
        try:
            return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
        except (BufferError, TypeError, ValueError, tf.errors.OpError):
            pass
    return tf.convert_to_tensor(array)


def replace_variable(layer: keras.layers.Layer, name: str, value: np.ndarray) -> None:
    """Recreate `layer.<name>` with `value`'s shape (Keras variables cannot change shape).

    The new variable has the old one's name, dtype and trainability and sits under the same
    attribute, so `owner_of`, saving and training find it; the old one is no longer tracked.
    """
    attribute = "_embeddings" if isinstance(layer, keras.layers.Embedding) and name == "embeddings" else name
    old = getattr(layer, attribute)
    layer._untrack_variable(old)  # Keras has no public API to replace a built layer's variable
    locked = layer._tracker.locked
    layer._tracker.unlock()
    try:
        variable = layer.add_weight(
            name=old.name,
            shape=value.shape,
            dtype=old.dtype,
            trainable=old.trainable,
            initializer=lambda shape, dtype=None: tf.cast(tf.constant(value), dtype or old.dtype),
        )
    finally:
        if locked:
            layer._tracker.lock()
    setattr(layer, attribute, variable)


INFERENCE_FUNCTIONS_PER_MODEL = 8  # graph functions kept per model; the least recently used is dropped


def inference_functions(owner: Any) -> FunctionCache:
    """`owner`'s cache of graph functions (thread-safe, at most `INFERENCE_FUNCTIONS_PER_MODEL`)."""
    return cache_on(owner, "_blip_inference_functions", lambda: INFERENCE_FUNCTIONS_PER_MODEL)


def inference_function(owner: Any, key: Any, build: Any, signature: list[tf.TensorSpec] | None = None) -> Any:
    """A graph-compiled `tf.function` cached on `owner` under `key`: eager Keras dispatches each op,
    a graph runs the whole encoder in one call (about twice as fast on CPU). Threads asking for the same
    new key at once share one function, traced once."""
    functions = inference_functions(owner)

    def make() -> Any:
        python_function = build()

        def traced(*args: Any) -> Any:
            functions.count_trace(key)  # Python runs only while TensorFlow traces
            return python_function(*args)

        return tf.function(traced, autograph=False, input_signature=signature)

    return functions.get(key, make)


def pixel_signature(pixel_values: tf.Tensor) -> tf.TensorSpec:
    """Pixels of any batch size at this image size (one graph per image size)."""
    return tf.TensorSpec((None, *pixel_values.shape[1:]), tf.float32)


def resolve_dtype(dtype: Any, config: BlipConfigBase) -> str:
    """`dtype` as a Keras dtype name: None -> float32, "auto" -> the config's `dtype`."""
    if dtype is None:
        return "float32"
    if dtype == "auto":
        dtype = getattr(config, "dtype", None) or "float32"
    name = getattr(dtype, "name", dtype)
    name = str(name).replace("torch.", "")
    if name not in ("float32", "bfloat16", "float16", "float64"):
        raise ValueError(f"dtype must be float32, bfloat16, float16, float64 or 'auto'; got {dtype!r}")
    return name


def resolve_device(device: Any, device_map: Any) -> str | None:
    """`device`/`device_map` as a TensorFlow device name (None: TensorFlow places the variables).

    Raises:
        ValueError: a multi-device map, or a value that names no device.
    """
    from blip_core.modeling.devices import tf_device

    if device_map is not None:
        if device_map != "auto" and not isinstance(device_map, (str, int)) and not hasattr(device_map, "type"):
            raise ValueError(
                f"device_map must be 'auto' or one device (multi-device maps are not supported), got {device_map!r}"
            )
        device = None if device_map == "auto" else device_map
    return tf_device(device)


def placed(device: str | None) -> Any:
    """A context placing new variables on `device` (nothing when None)."""
    return tf.device(device) if device else contextlib.nullcontext()


def to_numpy(variable: Any) -> tuple[np.ndarray, bool]:
    """(array, is_bf16) for saving; bfloat16 comes back as uint16 bit patterns."""
    array = keras.ops.convert_to_numpy(variable)
    if variable.dtype == "bfloat16":
        return float32_to_bf16_bits(array.astype(np.float32)), True
    return np.asarray(array), False


def as_tensor(value: Any, dtype: Any = None) -> tf.Tensor | None:
    """NumPy, lists or tensors as a tf.Tensor (None stays None)."""
    if value is None:
        return None
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    tensor = tf.convert_to_tensor(value)
    return tensor if dtype is None or tensor.dtype == dtype else tf.cast(tensor, dtype)


class TFBlipPreTrainedModel(PreTrainedModelAPI, GenerationConfigMixin, TFKerasModel, _OwnWeights, keras.Model):
    """Twin of `BlipPreTrainedModel`: `from_pretrained`, `save_pretrained`, building, dtype helpers."""

    config_class: ClassVar[type[BlipConfigBase]]
    main_input_name: ClassVar[str] = "pixel_values"
    supports_gradient_checkpointing: ClassVar[bool] = False  # Keras: no activation checkpointing here

    def __init__(self, config: BlipConfigBase, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        config.check_buildable()
        self.config = config
        self.__dict__.pop("quantize", None)  # Keras wraps `quantize` per instance (its modes, returns None): ours

    # -- construction helpers ------------------------------------------------------

    def post_init(self) -> None:
        """Set every layer's init scale from this model's config (the outermost model's wins, as in
        transformers); `build_model` then creates the variables."""
        std = getattr(self.config, "initializer_range", 0.02)
        for layer in self._flatten_layers(include_self=False, recursive=True):
            if hasattr(layer, "init_std"):
                layer.init_std = std
            elif isinstance(layer, keras.layers.Embedding):
                layer.embeddings_initializer = initializer(std)
            elif isinstance(layer, keras.layers.Conv2D):
                layer.kernel_initializer = initializer(std)
        self.init_generation_config()

    def build_model(self) -> None:
        """Create every variable from the config's sizes, without running the model."""
        if not self.built:
            self.build(None)

    def tie_weights(self, untied: frozenset[str] = frozenset()) -> None:
        """Share the LM-head decoder with the word embeddings, except names in `untied`."""

    def resize_token_embeddings(
        self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None, mean_resizing: bool = True
    ) -> keras.layers.Embedding:
        """Twin of `BlipPreTrainedModel.resize_token_embeddings`, the same rows. Keras variables cannot change
        shape, so each one is recreated under its name (`replace_variable`); compile again before `fit`."""
        text = text_config_of(self.config, type(self).__name__)
        size = new_vocab_size(text, new_num_tokens, pad_to_multiple_of)
        if size is not None and size != text.vocab_size:
            self.build_model()
            untied = self.untied_names()
            std = getattr(self.config, "initializer_range", 0.02)
            for param in vocab_params(type(self).__name__, self.config, untied):
                owner, variable_name = self.owner_of(param.name, param.kind)
                leaf = param.name.rsplit(".", 1)[-1]
                old = from_keras(keras.ops.convert_to_numpy(getattr(owner, variable_name)), param.kind, leaf)
                new = resized(old, size, param, mean_resizing, std)
                replace_variable(owner, variable_name, to_keras(new, param.kind, leaf))
            for layer in self._flatten_layers(include_self=False, recursive=True):
                if isinstance(layer, keras.layers.Embedding):
                    layer.input_dim = layer.embeddings.shape[0]
                elif isinstance(layer, TFLinear) and getattr(layer, "kernel", None) is not None:
                    layer.out_features = layer.kernel.shape[1]
            text.vocab_size = size
            self.tie_weights(untied)
            self._forget_compiled_functions()
        return self.get_input_embeddings()

    def _forget_compiled_functions(self) -> None:
        """Graphs traced before a variable was replaced hold the old one: drop them (ours and Keras')."""
        for layer in self._flatten_layers(include_self=True, recursive=True):
            for cache in ("_blip_inference_functions", "_blip_generate_functions"):
                layer.__dict__.pop(cache, None)
        if self.compiled:
            self.train_function = self.test_function = self.predict_function = None
            if self.optimizer is not None and self.optimizer.built:  # its slots belong to the old variables
                self.compiled = False

    @property
    def dtype(self) -> str:
        return self.dtype_policy.variable_dtype

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """Twin of `BlipPreTrainedModel.num_parameters`: variables counted once each (tied ones once);
        `only_trainable` those with `trainable`; `exclude_embeddings` leaves out the `Embedding` tables."""
        tables = {
            id(variable)
            for layer in self._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.Embedding)
            for variable in layer.weights
        }
        variables = {id(variable): variable for variable in self.weights}
        return int(
            sum(
                np.prod(variable.shape)
                for key, variable in variables.items()
                if not (exclude_embeddings and key in tables) and (variable.trainable or not only_trainable)
            )
        )

    def get_memory_footprint(self, return_buffers: bool = True) -> int:
        """Bytes held by the variables (`return_buffers`: Keras has no buffers; kept for the same call)."""
        variables = {id(variable): variable for variable in self.weights}.values()
        sizes = (np.prod(v.shape) * np.dtype(keras.backend.standardize_dtype(v.dtype)).itemsize for v in variables)
        return int(sum(sizes))

    @property
    def is_gradient_checkpointing(self) -> bool:
        """Always False: Keras models here have no activation checkpointing (`supports_gradient_checkpointing`)."""
        return False

    def enable_input_require_grads(self) -> None:
        """Accepted for the same program: a `tf.GradientTape` differentiates through frozen layers to any
        trainable variable or watched tensor, so the input embeddings need no flag. Undone by
        `disable_input_require_grads`."""
        self.__dict__["_require_grads_enabled"] = True

    def disable_input_require_grads(self) -> None:
        """Undo `enable_input_require_grads`.

        Raises:
            AttributeError: `enable_input_require_grads` was never called (as in `transformers`' PyTorch).
        """
        if not self.__dict__.pop("_require_grads_enabled", False):
            raise AttributeError(f"{type(self).__name__}: enable_input_require_grads() was not called")

    def set_output_embeddings(self, new_embeddings: keras.layers.Layer) -> None:
        """Replace the LM head's decoder layer (`get_output_embeddings()`).

        Raises:
            AttributeError: a class without an LM head.
        """
        head = self.get_output_embeddings()
        if head is None:
            raise AttributeError(f"{type(self).__name__} has no LM head, so no output embeddings to set")
        owner = self if hasattr(self, "cls") else self.text_decoder
        predictions = owner.cls.predictions
        if any(layer is head for layer in predictions._layers):  # untrack the old head (Keras: no public API)
            del predictions._layers[next(i for i, layer in enumerate(predictions._layers) if layer is head)]
        locked = predictions._tracker.locked
        predictions._tracker.unlock()  # a built layer refuses new sub-layers
        try:
            predictions.decoder = new_embeddings
            predictions.tied_embeddings = None  # the new layer computes the logits, as torch's does
        finally:
            if locked:
                predictions._tracker.lock()
        self._forget_compiled_functions()

    def owner_of(self, name: str, kind: str) -> tuple[Any, str]:
        """(layer, Keras variable name) behind a canonical parameter name, walking attribute names."""
        *path, leaf = name.split(".")
        owner: Any = self
        for segment in path:
            owner = owner[int(segment)] if segment.isdigit() else getattr(owner, keras_attribute(segment))
        return owner, keras_variable_name(kind, leaf)

    def variable(self, name: str, kind: str) -> Any:
        """The Keras variable behind a canonical parameter name."""
        owner, variable_name = self.owner_of(name, kind)
        return getattr(owner, variable_name)

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

        Needs no torch. Takes the keyword arguments of `BlipPreTrainedModel.from_pretrained`
        (`blip_core.modeling.load_options`); `dtype` (or `torch_dtype`) is a Keras dtype name, `device`/`device_map`
        place the variables (`tf.device`).
        """
        options = parse_load_options(cls.__name__, kwargs)
        config = resolve_config(cls.config_class, cls.__name__, pretrained_model_name_or_path, config, options)
        dtype_name = resolve_dtype(options.dtype, config)
        config.dtype = dtype_name  # a Keras dtype name here; the sections keep their own
        target = resolve_device(options.device, options.device_map)
        warn_if_emulated_bf16(dtype_name, "gpu" if target is not None and "GPU" in target.upper() else "cpu")
        source, state = open_pretrained(pretrained_model_name_or_path, cls.__name__, config, options)
        try:
            with building(dtype_name, loading=True), placed(target):
                model = cls(config)
                model.tie_weights(untied=state.untied)
                for name in state.names:  # each variable is created straight from its tensor, read then
                    spec = state.specs[name]
                    owner, variable_name = model.owner_of(name, spec.kind)
                    preload(owner, variable_name, lambda spec=spec: keras_value(state, spec))
                model.build_model()
                quantize_model(model, options.quantization)
        except (AttributeError, IndexError) as err:  # the core validated the names; this is a model-tree bug
            raise CheckpointError(f"{cls.__name__} has no variable for a checkpoint tensor: {err}") from None
        finally:
            source.close()
        attach_generation_config(
            model, pretrained_model_name_or_path, options.hub, options.generation_config, generation_overrides(options)
        )
        return (model, loading_info()) if options.output_loading_info else model

    def quantize(self, mode: str = "int8") -> Any:
        """Int8 weight-only decoding (`blip_tf.quantization`), in place, instead of Keras' `Model.quantize` (the
        layers quantized are fixed: no `config`/`filters`); returns the model. Inference only; the same as
        `from_pretrained(..., quantization=)`.

        Raises:
            ValueError: an unknown mode, a model without a text decoder, or one already quantized.
        """
        if getattr(self, "quantization", None):
            raise ValueError(f"{type(self).__name__} is already quantized ({self.quantization})")
        with placed(self.weights[0].value.device if self.weights else None):
            return quantize_model(self, mode)

    # -- saving ------------------------------------------------------------------------

    def untied_names(self) -> frozenset[str]:
        """Tie aliases that currently hold their own variable (saved, unlike tied ones)."""
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
        """Twin of `BlipPreTrainedModel.save_pretrained`: canonical, PyTorch-named `model.safetensors` by default
        (`transformers`' TF port defaults to `tf_model.h5`); `safe_serialization=False` writes `tf_model.h5` as
        the TF port names it (shards too). `save_function` concerns only `pytorch_model.bin` and is unused here.
        `push_to_hub=True` then uploads the files written. Raises ValueError for `state_dict=` (a PyTorch notion)
        or `saved_model=True`.
        """
        if state_dict is not None:
            raise ValueError(
                f"{type(self).__name__}.save_pretrained: state_dict= is not supported in TensorFlow; set the "
                "variables, then save"
            )
        if getattr(self, "quantization", None):
            raise ValueError(
                f"{type(self).__name__}.save_pretrained: this model's text decoder is quantized "
                f"({self.quantization}), and checkpoints hold full-precision weights; save the model before "
                "quantizing it (quantize again after loading with quantization=)"
            )
        if kwargs.pop("saved_model", False):
            raise ValueError("saved_model=True is not supported; use blip_tf.export_for_serving(model, folder)")
        options = parse_save_options(
            type(self).__name__,
            is_main_process,
            push_to_hub,
            max_shard_size,
            safe_serialization,
            variant,
            save_function,
            {key: value for key, value in kwargs.items() if key not in ("version", "signatures")},
        )
        self.build_model()
        specs = {spec.name: spec for spec in expected_params(type(self).__name__, self.config)}
        arrays, bf16 = {}, set()
        for name in saved_names(list(specs), type(self).__name__, self.config, self.untied_names()):
            spec = specs[name]
            array, is_bf16 = to_numpy(self.variable(name, spec.kind))
            arrays[name] = np.asarray(from_keras(array, spec.kind, spec.leaf), order="C")
            if is_bf16:
                bf16.add(name)
        return write_pretrained(
            save_directory,
            self.config,
            type(self).__name__,
            arrays,
            self.dtype,
            options,
            fmt="safetensors" if options.safe_serialization else "h5",
            bf16_names=frozenset(bf16),
            generation_config=self.generation_config,
            total_parameters=self.num_parameters(),
        )


# Names defined here before this file was split: old imports and whole-model pickles keep working.
__getattr__ = forward_moved_names(
    __name__,
    {
        "additive_mask": "blip_tf.layers",
        "attend": "blip_tf.layers",
        "get_activation": "blip_tf.layers",
    },
)
