"""blip_tf: the TensorFlow/Keras 3 BLIP models, twins of `blip_torch`'s, on the same checkpoints."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import functools  # noqa: E402

from blip_core.pipelines import pipeline as _pipeline  # noqa: E402
from blip_tf.auto import (  # noqa: E402
    TFAutoModel,
    TFAutoModelForImageTextToText,
    TFAutoModelForVisualQuestionAnswering,
)
from blip_tf.generation import export_for_serving  # noqa: E402
from blip_tf.models import (  # noqa: E402
    TFBlipForConditionalGeneration,
    TFBlipForImageTextRetrieval,
    TFBlipForQuestionAnswering,
    TFBlipModel,
)
from blip_tf.text import TFBlipTextLMHeadModel, TFBlipTextModel  # noqa: E402
from blip_tf.vision import TFBlipVisionModel  # noqa: E402

# `pipeline` in TensorFlow: blip_core.pipeline with framework="tf".
pipeline = functools.partial(_pipeline, framework="tf")

__all__ = [
    "TFAutoModel",
    "TFAutoModelForImageTextToText",
    "TFAutoModelForVisualQuestionAnswering",
    "TFBlipForConditionalGeneration",
    "TFBlipForImageTextRetrieval",
    "TFBlipForQuestionAnswering",
    "TFBlipModel",
    "TFBlipTextLMHeadModel",
    "TFBlipTextModel",
    "TFBlipVisionModel",
    "export_for_serving",
    "pipeline",
]
