"""blip_core: the framework-neutral half of blip-dual.

Configs, image processor, tokenizer, processor, Hub resolution, checkpoint
I/O as NumPy and the weight-name maps. Never imports torch or tensorflow at
import time.
"""

from blip_core.added_tokens import AddedToken
from blip_core.auto import AutoConfig, AutoImageProcessor, AutoProcessor, AutoTokenizer
from blip_core.configuration import BlipConfig, BlipTextConfig, BlipVisionConfig
from blip_core.feature import BatchEncoding, BatchFeature
from blip_core.generation_config import GenerationConfig
from blip_core.image_processing import BlipImageProcessor
from blip_core.image_processing_fast import BlipImageProcessorFast
from blip_core.pipelines import KeyDataset, Pipeline, pipeline
from blip_core.processing import BlipProcessor
from blip_core.tokenization import BlipTokenizer

__version__ = "0.1.0"

__all__ = [
    "AddedToken",
    "AutoConfig",
    "AutoImageProcessor",
    "AutoProcessor",
    "AutoTokenizer",
    "BatchEncoding",
    "BatchFeature",
    "BlipConfig",
    "BlipImageProcessor",
    "BlipImageProcessorFast",
    "BlipProcessor",
    "BlipTextConfig",
    "BlipTokenizer",
    "BlipVisionConfig",
    "GenerationConfig",
    "KeyDataset",
    "Pipeline",
    "__version__",
    "pipeline",
]
