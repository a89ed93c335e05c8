"""BLIP in ONNX Runtime: the graphs `blip-convert to-onnx` writes, run with `onnxruntime` and NumPy only.

>>> from blip_onnx import OnnxBlipForConditionalGeneration  # doctest: +SKIP
>>> model = OnnxBlipForConditionalGeneration.from_pretrained("captioner-onnx")  # doctest: +SKIP
>>> model.generate(pixel_values, num_beams=3)  # doctest: +SKIP

Or through `blip_core.pipeline(task, model=folder, framework="onnx")`. Importing this package imports neither
torch nor TensorFlow (nor onnxruntime, until a model is opened).
"""

from blip_onnx.layout import read_manifest
from blip_onnx.models import (
    OnnxBlipForConditionalGeneration,
    OnnxBlipForImageTextRetrieval,
    OnnxBlipForQuestionAnswering,
    OnnxBlipPreTrainedModel,
)

__all__ = [
    "OnnxBlipForConditionalGeneration",
    "OnnxBlipForImageTextRetrieval",
    "OnnxBlipForQuestionAnswering",
    "OnnxBlipPreTrainedModel",
    "read_manifest",
]
