"""What `transformers`' TF models do inside Keras, done with Keras 3: the base of every `TFBlip*` model.

- `TFBlip*(config)` is built (random initialisation from the config) when constructed, unless
  `from_pretrained` is loading a checkpoint into it;
- `model(batch)` takes the processor's `BatchFeature` (any mapping) as its first argument;
- an input error of ours (`ValueError`/`TypeError` from `call`) reaches the caller as raised, without
  Keras' "Exception encountered when calling ..." envelope;
- `fit`/`evaluate`/`predict` and their `*_on_batch` take a `BatchFeature`, labels from `y` or from the
  batch, train on the model's own loss (or on `compile(loss=...)`); a failed call leaves no broken
  traced function behind; `predict` returns the model's output class holding NumPy arrays;
- `get_config`/`from_config` carry the BLIP config; `model.save(...)` names the formats that work;
- `generate` traced by a user's `tf.function` is a clear error naming `export_for_serving`.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

import keras
import optree
import tensorflow as tf

from blip_core.modeling.outputs import ModelOutput

_CONSTRUCTING = contextvars.ContextVar("blip_tf_constructing", default=0)
_OWN_LOSS = ("auto", "auto_with_warning", "passthrough")  # transformers' names for "the model's own loss"
_STEP_FUNCTIONS = ("train_function", "test_function", "predict_function")


def _built_when_made(init: Any) -> Any:
    """`__init__` that builds the model once the outermost constructor returns (sub-models are built by it,
    with its initializer range), except while `from_pretrained` loads (the checkpoint fills the variables)."""

    @functools.wraps(init)
    def construct(self: Any, *args: Any, **kwargs: Any) -> None:
        token = _CONSTRUCTING.set(_CONSTRUCTING.get() + 1)
        try:
            init(self, *args, **kwargs)
        finally:
            _CONSTRUCTING.reset(token)
        from blip_tf.layers import _LOADING

        if not _CONSTRUCTING.get() and not _LOADING.get():
            self.build_model()

    return construct


def _plain_errors(call: Any) -> Any:
    """`call` whose ValueError/TypeError reach the caller as raised: Keras re-raises an exception it has
    marked as annotated unchanged, instead of a copy with the arguments it received around the message."""

    @functools.wraps(call)
    def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(self, *args, **kwargs)
        except (ValueError, TypeError) as error:
            error._keras_call_info_injected = True  # Keras' own marker (keras/src/utils/traceback_utils.py)
            raise

    return checked


def _eager_only(generate: Any) -> Any:
    """`generate` that names the way to a graph when traced (it compiles its own XLA loop per shape, from
    Python values that a traced call does not have)."""

    @functools.wraps(generate)
    def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not tf.executing_eagerly():
            raise NotImplementedError(
                f"{type(self).__name__}.generate cannot run inside tf.function (it already decodes in its own "
                "XLA-compiled loop); call it eagerly, or use blip_tf.export_for_serving(model, folder) for a graph "
                "that captions (or answers) from tensors"
            )
        return generate(self, *args, **kwargs)

    return checked


def plain_batch(value: Any) -> Any:
    """A `BatchFeature` (or any mapping that is not a dict) as the plain dict Keras takes apart."""
    return dict(value) if isinstance(value, Mapping) and type(value) is not dict else value


def _plain_arguments(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    if args:
        args = (plain_batch(args[0]), *args[1:])
    if "x" in kwargs:
        kwargs = {**kwargs, "x": plain_batch(kwargs["x"])}
    return args, kwargs


def matched_outputs(y: Any, y_pred: Any) -> tuple[Any, Any]:
    """(labels, outputs) paired as `transformers`' train step pairs them for a compiled loss and metrics:
    by key for a dict of labels, by order (the loss left out) for a tuple, else the first output that is
    not the loss."""
    if not isinstance(y_pred, ModelOutput):
        return y, y_pred
    outputs = [key for key in y_pred.keys() if key != "loss"]
    if isinstance(y, Mapping) and len(y) == 1:
        ((key, value),) = y.items()
        return value, y_pred[key] if key in y_pred else y_pred[outputs[0]]
    if isinstance(y, Mapping):
        return dict(y), {key: y_pred[key] for key in y if key in y_pred}
    if isinstance(y, (tuple, list)):
        return y, tuple(y_pred[key] for key in outputs[: len(y)])
    return y, y_pred[outputs[0]]


def _keras_entry(name: str) -> Any:
    """Keras' `name` (fit, predict, ...) taking a `BatchFeature`; a failure drops the traced step functions."""

    @functools.wraps(getattr(keras.Model, name))
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        args, kwargs = _plain_arguments(args, kwargs)
        if name in ("fit", "train_on_batch") and self.optimizer is not None and not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)  # here, never inside a step traced again later
        try:
            return getattr(super(TFKerasModel, self), name)(*args, **kwargs)
        except BaseException:
            for function in _STEP_FUNCTIONS:  # Keras would reuse a half-traced step: the next call traces afresh
                setattr(self, function, None)
            raise

    return method


class TFKerasModel:
    """Mixin placed before `keras.Model` in `TFBlipPreTrainedModel`'s bases (see the module docstring)."""

    label_inputs: ClassVar[tuple[str, ...]] = ()  # batch keys that are labels for a model without `labels`

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _built_when_made(cls.__dict__["__init__"])
        if "call" in cls.__dict__:
            cls.call = _plain_errors(cls.__dict__["call"])
        if "generate" in cls.__dict__:
            cls.generate = _eager_only(cls.__dict__["generate"])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if args:  # Keras takes only tensors (and dicts, lists of them) positionally
            args = (plain_batch(args[0]), *args[1:])
        return super().__call__(*args, **kwargs)

    # -- Keras configuration --------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        """The BLIP config as a dict (what `transformers`' TF models return)."""
        return self.config.to_dict()

    @classmethod
    def from_config(cls, config: Any, custom_objects: Any = None, **kwargs: Any) -> Any:
        """A randomly initialised model from a config object or its dict (`get_config`'s)."""
        if not isinstance(config, cls.config_class):
            config = cls.config_class.from_dict(dict(config), **kwargs)
        return cls(config)

    @classmethod
    def _from_config(cls, config: Any, **kwargs: Any) -> Any:
        return cls.from_config(config, **kwargs)

    def save(self, filepath: Any, *args: Any, **kwargs: Any) -> None:
        """Keras' whole-model formats are not supported: a ValueError naming what is."""
        raise ValueError(
            f"{type(self).__name__}.save({str(filepath)!r}): Keras' .keras/.h5 whole-model files are not "
            "supported for BLIP models; use model.save_pretrained(folder) (reload with "
            f"{type(self).__name__}.from_pretrained(folder)), model.save_weights(path) for Keras weights, or "
            "blip_tf.export_for_serving(model, folder) for a TensorFlow SavedModel"
        )

    # -- compile / fit / evaluate / predict -------------------------------------------------

    def compile(self, optimizer: Any = "rmsprop", loss: Any = None, *args: Any, **kwargs: Any) -> None:
        """Keras' compile; no `loss` (or `transformers`' "auto") trains on the model's own loss."""
        if isinstance(loss, str) and loss in _OWN_LOSS:
            loss = None
        super().compile(optimizer, loss, *args, **kwargs)

    fit = _keras_entry("fit")
    evaluate = _keras_entry("evaluate")
    predict = _keras_entry("predict")
    train_on_batch = _keras_entry("train_on_batch")
    test_on_batch = _keras_entry("test_on_batch")
    predict_on_batch = _keras_entry("predict_on_batch")

    def train_step(self, data: Any) -> Any:
        return super().train_step(self._with_labels(data))

    def test_step(self, data: Any) -> Any:
        return super().test_step(self._with_labels(data))

    def predict_step(self, data: Any) -> Any:
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self(self._as_inputs(x), training=False)

    def _as_inputs(self, x: Any) -> dict[str, Any]:
        """The batch's inputs as a dict: a mapping copied, a lone tensor under `call`'s first argument."""
        if isinstance(x, Mapping):
            return dict(x)
        return {next(iter(inspect.signature(self.call).parameters)): x}

    def _with_labels(self, data: Any) -> tuple:
        """(x, y, sample_weight) with the labels where the model reads them, as `transformers`' train step:
        `y` (a tensor) becomes `labels` unless the batch has them; a dict `y` gives its keys that `call`
        takes. Without a `labels` argument (matching), labels in the batch move to `y`."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x = self._as_inputs(x)
        arguments = inspect.signature(self.call).parameters
        if "labels" in arguments:
            if isinstance(y, Mapping):
                x.update({key: value for key, value in y.items() if key in arguments and key not in x})
            elif y is not None and "labels" not in x:
                x["labels"] = y
        elif y is None:
            y = next((x.pop(key) for key in self.label_inputs if key in x), None)
        return x, y, sample_weight

    def compute_loss(
        self, x: Any = None, y: Any = None, y_pred: Any = None, sample_weight: Any = None, training: bool = True
    ) -> tf.Tensor:
        """The loss `compile(loss=...)` names on the outputs `y` matches, else the model's own (`model_loss`)."""
        if self._compile_loss is not None:
            y, y_pred = matched_outputs(y, y_pred)
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        if sample_weight is not None:
            raise ValueError(
                f"{type(self).__name__}: sample_weight/class_weight need a per-example loss; the model's own loss "
                "is already a mean over the batch (pass loss=... to compile to weight examples)"
            )
        return tf.reshape(self.model_loss(x, y, y_pred, training), ())

    def model_loss(self, x: Any, y: Any, y_pred: Any, training: bool) -> tf.Tensor:
        """The loss the model computed (`labels` given); models that train differently override this."""
        loss = getattr(y_pred, "loss", None)
        if loss is None:
            raise ValueError(
                f"{type(self).__name__}: the batch has no labels, so the model computes no loss to train on; give "
                "labels as y (fit(x, y), or (features, labels) dataset elements), a 'labels' key of the batch, or "
                "compile(loss=...)"
            )
        return loss

    def compute_metrics(self, x: Any, y: Any, y_pred: Any, sample_weight: Any = None) -> dict[str, Any]:
        return super().compute_metrics(x, *matched_outputs(y, y_pred), sample_weight)


def _flatten(output: ModelOutput) -> tuple[tuple, tuple, tuple]:
    """(children, metadata, entries) for optree: the set fields' values, keyed by their names."""
    keys = tuple(output.keys())
    return tuple(output[key] for key in keys), keys, keys


def _unflatten(cls: type[ModelOutput]) -> Any:
    def rebuild(keys: tuple, values: Any) -> ModelOutput:
        return cls(**dict(zip(keys, values, strict=True)))

    return rebuild


def register_outputs() -> None:
    """Make Keras' tree functions (optree, namespace "keras") see into the output classes, as TensorFlow's
    nest does for mappings, so `predict` maps and concatenates their tensors: each class is registered."""
    pending = [ModelOutput]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls is ModelOutput:
            continue
        try:
            optree.register_pytree_node(cls, _flatten, _unflatten(cls), namespace="keras")
        except ValueError:  # registered already (a module reloaded)
            pass


register_outputs()
