"""blip_tf: the TensorFlow/Keras 3 BLIP models, twins of `blip_torch`'s, on the same checkpoints."""

import functools

import blip_tf._xla_cache  # noqa: F401  first: XLA programs cached across processes (set before TensorFlow loads)
from blip_core.config.generation_config import GenerationConfig
from blip_core.tasks.pipelines import pipeline as _pipeline
from blip_tf.auto import (
    TFAutoModel,
    TFAutoModelForImageTextToText,
    TFAutoModelForVision2Seq,
    TFAutoModelForVisualQuestionAnswering,
    TFAutoModelForZeroShotImageClassification,
)
from blip_tf.captioning import TFBlipForConditionalGeneration
from blip_tf.generation import export_for_serving
from blip_tf.models import TFBlipModel
from blip_tf.question_answering import TFBlipForQuestionAnswering
from blip_tf.retrieval import TFBlipForImageTextRetrieval
from blip_tf.text import TFBlipTextLMHeadModel, TFBlipTextModel
from blip_tf.vision import TFBlipVisionModel

# `pipeline` in TensorFlow: blip_core.pipeline with framework="tf".
pipeline = functools.partial(_pipeline, framework="tf")

__all__ = [
    "TFAutoModel",
    "TFAutoModelForImageTextToText",
    "TFAutoModelForVision2Seq",
    "TFAutoModelForVisualQuestionAnswering",
    "TFAutoModelForZeroShotImageClassification",
    "TFBlipForConditionalGeneration",
    "TFBlipForImageTextRetrieval",
    "TFBlipForQuestionAnswering",
    "TFBlipModel",
    "TFBlipTextLMHeadModel",
    "TFBlipTextModel",
    "TFBlipVisionModel",
    "GenerationConfig",
    "export_for_serving",
    "pipeline",
]
