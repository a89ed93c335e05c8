"""blip_core: the framework-neutral half of blip-dual.

Configs, image processor, tokenizer, processor, Hub resolution, checkpoint I/O as NumPy, the weight-name maps,
the rules both model trees share, and the applications (pipelines, the `blip` command, the demo), each role in
its own sub-package (see docs/architecture.md). Never imports torch or tensorflow at import time.
"""

from blip_core import _compat
from blip_core.config.configuration import BlipConfig, BlipTextConfig, BlipVisionConfig
from blip_core.config.generation_config import GenerationConfig
from blip_core.processing.added_tokens import AddedToken
from blip_core.processing.auto import AutoConfig, AutoImageProcessor, AutoProcessor, AutoTokenizer
from blip_core.processing.feature import BatchEncoding, BatchFeature
from blip_core.processing.image_processing import BlipImageProcessor
from blip_core.processing.image_processing_fast import BlipImageProcessorFast
from blip_core.processing.processor import BlipProcessor
from blip_core.processing.tokenization import BlipTokenizer
from blip_core.tasks.pipelines import KeyDataset, Pipeline, pipeline

__version__ = "0.1.0"

_compat.install()  # the flat module paths of 0.1 (blip_core.configuration, ...) still import

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
