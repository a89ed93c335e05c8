"""`pipeline(task, model=...)`: BLIP tasks in one call, in PyTorch, TensorFlow or ONNX Runtime (an export of
`blip-convert to-onnx`, `framework="onnx"`), called as in `transformers`.

Tasks: "image-to-text" (captioning, optional prompt), "image-text-to-text" (prompted captioning
with `transformers`' records), "visual-question-answering" (alias "vqa"), "zero-shot-image-classification"
(a `BlipModel` as in `transformers`, or a retrieval checkpoint's ITM head: the released BlipModel
has no trained text weights) and "image-text-matching" (ITM probability and ITC cosine).
How calls are read: `pipeline_inputs`; options: `pipeline_options`; the tasks: `pipeline_tasks`;
devices and dtypes: `pipeline_runtime`. Frameworks are imported when a pipeline is built, never by
`import blip_core`.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from blip_core.io.hub import split_hub_options
from blip_core.modeling.model_classes import TASK_OF_CLASS
from blip_core.processing.processor import BlipProcessor
from blip_core.tasks.pipeline_inputs import (
    Item,
    KeyDataset,
    Request,
    images_request,
    prompted_request,
    take_images,
    vqa_request,
)
from blip_core.tasks.pipeline_options import merge, split_options
from blip_core.tasks.pipeline_runtime import FRAMEWORKS, Runtime, choose_dtype
from blip_core.tasks.pipeline_tasks import PIPELINE_MAX_NEW_TOKENS, RUNNERS

__all__ = ["PIPELINE_MAX_NEW_TOKENS", "KeyDataset", "Pipeline", "pipeline"]

DEFAULT_MODELS = {
    "image-to-text": "Salesforce/blip-image-captioning-base",
    "image-text-to-text": "Salesforce/blip-image-captioning-base",
    "visual-question-answering": "Salesforce/blip-vqa-base",
    "image-text-matching": "Salesforce/blip-itm-base-coco",
    "zero-shot-image-classification": "Salesforce/blip-itm-base-coco",
}
TASK_CLASSES = {
    "image-to-text": "BlipForConditionalGeneration",
    "image-text-to-text": "BlipForConditionalGeneration",
    "visual-question-answering": "BlipForQuestionAnswering",
    "image-text-matching": "BlipForImageTextRetrieval",
    "zero-shot-image-classification": "BlipForImageTextRetrieval",
}
TASK_ALIASES = {"vqa": "visual-question-answering"}
_CALL_INPUTS = ("inputs", "images", "image", "question", "text")


def default_framework() -> str:
    """PyTorch when installed, else TensorFlow."""
    for name, module in (("pt", "torch"), ("tf", "tensorflow")):
        if importlib.util.find_spec(module) is not None:
            return name
    raise RuntimeError("neither torch nor tensorflow is installed: pip install 'blip-dual[torch]' or 'blip-dual[tf]'")


class Pipeline:
    """A loaded model and processor for one task; call it on images (and texts) as in `transformers`.

    One input gives one result, a list a list of results, a generator or dataset an iterator
    that runs the model only as it is consumed (`batch_size` inputs at a time).
    """

    def __init__(
        self, task: str, model: Any, processor: BlipProcessor, runtime: Runtime, batch_size: int = 1, **options: Any
    ) -> None:
        given = [name for name in _CALL_INPUTS if name in options]
        if given:
            raise TypeError(f"{given} are inputs of each call, not options of pipeline(...): pass them to the pipe")
        self.task, self.model, self.processor, self.runtime = task, model, processor, runtime
        self.batch_size = _check_batch_size(batch_size)
        self._options = split_options(task, options)

    @property
    def framework(self) -> str:
        return self.runtime.framework

    @property
    def device(self) -> Any:
        return self.runtime.device

    @property
    def dtype(self) -> Any:
        """The model's dtype (a torch dtype, or a Keras dtype name)."""
        return self.runtime.model_dtype(self.model)

    torch_dtype = dtype

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def image_processor(self) -> Any:
        return self.processor.image_processor

    def save_pretrained(
        self, save_directory: str | os.PathLike, safe_serialization: bool = True, **kwargs: Any
    ) -> None:
        """Write the model (with `save_pretrained`'s options, as `transformers` passes them) and its processor
        files into `save_directory`."""
        self.model.save_pretrained(save_directory, safe_serialization=safe_serialization, **kwargs)
        self.processor.save_pretrained(save_directory)

    def __call__(self, *args: Any, batch_size: int | None = None, num_workers: int | None = None, **kwargs: Any) -> Any:
        """Run the task; see the module docstring of `blip_core.tasks.pipeline_inputs` for the call forms.

        Raises:
            TypeError: an argument the task does not take, or images given twice.
            ValueError: inputs or options of the wrong kind (messages name them).
        """
        size = self.batch_size if batch_size is None else _check_batch_size(batch_size)
        _check_workers(num_workers)
        request, options = self._read_call(args, kwargs)
        run = RUNNERS[self.task]
        if request.shape == "stream":
            return _stream(request.items, lambda chunk: run(self, chunk, options), size)
        items = list(request.items)
        results = [
            result for start in range(0, len(items), size) for result in run(self, items[start : start + size], options)
        ]
        if request.shape == "single":
            return results[0]
        if request.shape == "flat":
            return [record for result in results for record in result]
        return results

    def _read_call(self, args: tuple, kwargs: dict[str, Any]) -> tuple[Request, dict[str, Any]]:
        """The call's items and its options merged over the pipeline's."""
        images, rest = take_images(args, kwargs, self.task)
        second = {
            "visual-question-answering": "question",
            "image-text-to-text": "text",
            "zero-shot-image-classification": "candidate_labels",
            "image-to-text": "prompt",
            "image-text-matching": "text",
        }[self.task]
        if rest:
            if second in kwargs:
                raise TypeError(f"{self.task}: {second} given twice, positionally and as {second}=")
            kwargs[second] = rest[0]
            if len(rest) > 1:
                raise TypeError(f"{self.task} takes at most 2 positional arguments (images, {second}), got {len(args)}")
        if self.task == "visual-question-answering":
            request = vqa_request(images, kwargs.pop("question", None))
        elif self.task == "image-text-to-text":
            request = prompted_request(images, kwargs.pop("text", None))
        options = merge(self._options, split_options(self.task, kwargs))
        if self.task == "image-to-text":
            request = images_request(images, self.task, options.get("prompt"))
        elif self.task in ("zero-shot-image-classification", "image-text-matching"):
            request = images_request(images, self.task)
        return request, options


def _stream(items: Iterator[Item], run: Callable[[list[Item]], list], size: int) -> Iterator[Any]:
    """Results of `items` in order, computed `size` items at a time as the iterator is consumed."""
    chunk: list[Item] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield from run(chunk)
            chunk = []
    if chunk:
        yield from run(chunk)


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


def _check_workers(num_workers: Any) -> None:
    """`num_workers` sizes `transformers`' DataLoader; here inputs load in the calling thread, so it
    changes nothing but is checked."""
    if num_workers is not None and (
        isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0
    ):
        raise ValueError(f"num_workers must be a non-negative integer, got {num_workers!r}")


def pipeline(
    task: str | None = None,
    model: Any = None,
    config: Any = None,
    tokenizer: Any = None,
    feature_extractor: Any = None,
    image_processor: Any = None,
    processor: Any = None,
    framework: str | None = None,
    revision: str | None = None,
    use_fast: bool = True,
    token: Any = None,
    device: Any = None,
    device_map: Any = None,
    dtype: Any = None,
    torch_dtype: Any = None,
    trust_remote_code: bool | None = None,
    model_kwargs: dict[str, Any] | None = None,
    pipeline_class: Any = None,
    batch_size: int = 1,
    **kwargs: Any,
) -> Pipeline:
    """Build a pipeline for `task` from a folder, a Hub id or a loaded model (`transformers.pipeline`'s arguments).

    `device`: an int (-1 CPU, n accelerator n, the default 0 falling back to the CPU), a string or a
    `torch.device`; `dtype` (or `torch_dtype`): a dtype, its name or "auto" (PyTorch's default);
    other keyword arguments are the task's options (`prompt`, `max_new_tokens`, `generate_kwargs`,
    `candidate_labels`, generation options, ...) and Hub options (`cache_dir`, `local_files_only`).
    `use_fast` and `trust_remote_code` are accepted for compatibility (the tokenizer is always the
    fast one; BLIP has no remote code).

    >>> captioner = pipeline("image-to-text", model="Salesforce/blip-image-captioning-base")  # doctest: +SKIP
    >>> captioner("photo.jpg")  # doctest: +SKIP
    [{'generated_text': 'a cat sitting on a couch'}]

    Raises:
        ValueError: an unknown task or framework, a model the task cannot use, bad device or dtype.
        TypeError: `pipeline_class`, or options the task does not take.
    """
    if pipeline_class is not None:
        raise TypeError("pipeline_class is not supported: BLIP pipelines are built in")
    hub, options = split_hub_options(kwargs)
    extra_hub, model_options = split_hub_options(dict(model_kwargs or {}))
    hub = {**extra_hub, **hub, **{k: v for k, v in (("revision", revision), ("token", token)) if v is not None}}
    framework = framework or _framework_of(model) or _export_framework(model) or default_framework()
    if framework not in FRAMEWORKS:
        raise ValueError(f"framework must be 'pt', 'tf' or 'onnx', got {framework!r}")
    if framework != "onnx" and _export_framework(model) == "onnx":
        raise ValueError(
            f"{model} is an ONNX export (blip-convert to-onnx), which ONNX Runtime runs: pass framework='onnx' "
            "(--framework onnx), or give the original checkpoint"
        )
    task = _task(task, model, hub)
    source = model if model is not None else default_model(task)
    in_kwargs = {key: model_options.pop(key) for key in ("dtype", "torch_dtype") if key in model_options}
    if any(value is not None for value in in_kwargs.values()) and (dtype is not None or torch_dtype is not None):
        raise ValueError("a dtype was given both to pipeline(...) and in model_kwargs: give it once")
    dtype = dtype if dtype is not None else in_kwargs.get("dtype")
    torch_dtype = torch_dtype if torch_dtype is not None else in_kwargs.get("torch_dtype")
    runtime = Runtime(framework, device, choose_dtype(framework, dtype, torch_dtype))
    processor = _processor(processor, tokenizer, image_processor or feature_extractor, source, hub)
    if config is not None:
        model_options["config"] = config
    if device_map is not None:
        model_options["device_map"] = device_map
    loaded = runtime.load(_model_class(task, source, hub), source, {**hub, **model_options})
    return Pipeline(task, loaded, processor, runtime, batch_size, **options)


def _framework_of(model: Any) -> str | None:
    """ "pt", "tf" or "onnx" for an already loaded model, None for a name."""
    if model is None or isinstance(model, (str, os.PathLike)):
        return None
    name = type(model).__name__
    return "tf" if name.startswith("TF") else "onnx" if name.startswith("Onnx") else "pt"


def _export_framework(model: Any) -> str | None:
    """ "onnx" for a local folder written by `blip-convert to-onnx` (it holds no weights the trees read)."""
    from blip_onnx.layout import MANIFEST

    if isinstance(model, (str, os.PathLike)) and (Path(model) / MANIFEST).is_file():
        return "onnx"
    return None


def _task(task: str | None, model: Any, hub: dict[str, Any]) -> str:
    if task is None:
        if model is None:
            raise RuntimeError("Impossible to instantiate a pipeline without either a task or a model being specified")
        name = _architecture(model, hub)
        if name not in TASK_OF_CLASS:
            raise ValueError(f"cannot tell the task of {model}: pass task=..., one of {sorted(TASK_CLASSES)}")
        return TASK_OF_CLASS[name]
    task = TASK_ALIASES.get(task, task)
    if task not in TASK_CLASSES:
        raise ValueError(f"unknown task {task!r}; BLIP pipelines: {sorted(TASK_CLASSES)} (and 'vqa')")
    return task


def _architecture(source: Any, hub: dict[str, Any]) -> str | None:
    """The BLIP class a checkpoint (or loaded model) declares."""
    if not isinstance(source, (str, os.PathLike)):
        return type(source).__name__.removeprefix("TF").removeprefix("Onnx")
    from blip_core.config.json_files import read_config_json
    from blip_core.io.hub import resolve_file

    declared = read_config_json(resolve_file(source, "config.json", **hub)).get("architectures") or []
    return declared[0].removeprefix("TF") if declared else None


def _model_class(task: str, source: Any, hub: dict[str, Any]) -> str:
    """The class a task loads; zero-shot takes a `BlipModel` checkpoint as one (as transformers)."""
    if task == "zero-shot-image-classification" and _architecture(source, hub) == "BlipModel":
        return "BlipModel"
    return TASK_CLASSES[task]


def _processor(processor: Any, tokenizer: Any, image_processor: Any, source: Any, hub: dict[str, Any]) -> BlipProcessor:
    if isinstance(processor, BlipProcessor):
        return processor
    if isinstance(processor, (str, os.PathLike)):
        return BlipProcessor.from_pretrained(processor, **hub)
    if processor is not None:
        raise TypeError(f"processor must be a BlipProcessor or a folder/Hub id, got {type(processor).__name__}")
    named = source if isinstance(source, (str, os.PathLike)) else None
    if named is None and (tokenizer is None or image_processor is None):
        raise ValueError("pass processor=... (or tokenizer= and image_processor=) with an already loaded model")
    if tokenizer is None and image_processor is None:
        return BlipProcessor.from_pretrained(named, **hub)
    from blip_core.processing.image_processing import BlipImageProcessor
    from blip_core.processing.tokenization import BlipTokenizer

    if tokenizer is None or isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = BlipTokenizer.from_pretrained(tokenizer or named, **hub)
    if image_processor is None or isinstance(image_processor, (str, os.PathLike)):
        image_processor = BlipImageProcessor.from_pretrained(image_processor or named, **hub)
    return BlipProcessor(image_processor, tokenizer)


def default_model(task: str) -> str:
    """The embedded demo models for their tasks when present (said aloud: they know only synthetic
    shapes), else the Salesforce Hub repos."""
    embedded = Path(__file__).resolve().parents[1] / "data" / "models" / TASK_CLASSES[task]
    if not (embedded / "config.json").exists():
        return DEFAULT_MODELS[task]
    warnings.warn(
        f"no model given: using the embedded demo model {embedded.name}, trained on synthetic shapes only; "
        f"for real photos pass {DEFAULT_MODELS[task]} (model=... in Python, --model on the command line)",
        stacklevel=3,
    )
    return str(embedded)
