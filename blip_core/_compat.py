"""The flat module paths of blip-dual 0.1 (`blip_core.configuration`, `blip_core.hub`, ...) before `blip_core`
was split into sub-packages by role: each still imports, as the module that now holds its code, with a
`DeprecationWarning` naming the new path. The public names import from `blip_core` itself, as before; the
paths `blip_core.processing`, `blip_core.training`, `blip_core.demo` and `blip_core.cli` are packages now and
keep their public names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType

# Old module (under blip_core) -> where its code lives now.
MOVED_MODULES = {
    "atomic": "io.atomic",
    "hub": "io.hub",
    "hub_errors": "io.hub_errors",
    "hub_upload": "io.hub_upload",
    "native_logs": "io.native_logs",
    "configuration": "config.configuration",
    "generation_config": "config.generation_config",
    "model_constants": "config.model_constants",
    "safetensors_io": "checkpoints.safetensors_io",
    "torch_pickle": "checkpoints.torch_pickle",
    "h5_reader": "checkpoints.h5_reader",
    "h5_probe": "checkpoints.h5_probe",
    "h5_writer": "checkpoints.h5_writer",
    "keras_weights": "checkpoints.keras_weights",
    "bin_writer": "checkpoints.bin_writer",
    "checkpoint": "checkpoints.sources",
    "saving": "checkpoints.writing",
    "image_loading": "processing.image_loading",
    "image_urls": "processing.image_urls",
    "image_depth": "processing.image_depth",
    "image_processing": "processing.image_processing",
    "image_processing_fast": "processing.image_processing_fast",
    "image_resample": "processing.image_resample",
    "image_backends": "processing.image_backends",
    "tokenization": "processing.tokenization",
    "text_batching": "processing.text_batching",
    "text_padding": "processing.text_padding",
    "added_tokens": "processing.added_tokens",
    "feature": "processing.feature",
    "auto": "processing.auto",
    "outputs": "modeling.outputs",
    "interpolation": "modeling.interpolation",
    "limits": "modeling.limits",
    "empty_batch": "modeling.empty_batch",
    "vocabulary": "modeling.vocabulary",
    "model_api": "modeling.model_api",
    "model_classes": "modeling.model_classes",
    "loading": "modeling.loading",
    "load_options": "modeling.load_options",
    "function_cache": "modeling.function_cache",
    "generation_options": "generation.options",
    "generation_rules": "generation.rules",
    "generation_support": "generation.support",
    "prompts": "generation.prompts",
    "pipelines": "tasks.pipelines",
    "pipeline_inputs": "tasks.pipeline_inputs",
    "pipeline_options": "tasks.pipeline_options",
    "pipeline_runtime": "tasks.pipeline_runtime",
    "pipeline_tasks": "tasks.pipeline_tasks",
    "embeddings": "tasks.embeddings",
    "demo_tasks": "demo.tasks",
    "demo_runs": "demo.runs",
    "synthetic": "demo.synthetic",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers `import blip_core.<old name>` with the module at its new path (consulted after the real ones)."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        package, _, old = fullname.partition(".")
        if package != "blip_core" or old not in MOVED_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = "blip_core." + MOVED_MODULES[spec.name.partition(".")[2]]
        warnings.warn(
            f"{spec.name} moved to {new}; import from there, or the public names from blip_core",
            DeprecationWarning,
            stacklevel=2,
        )
        module = importlib.import_module(new)
        self._spec = module.__spec__  # the import system stamps the old spec on the module; put it back
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._spec


def install() -> None:
    if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())
