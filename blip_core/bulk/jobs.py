"""What a bulk job computes on one batch: captioning, or CapFilt (captioner + ITM filter), behind NumPy.

A job is a small picklable description (models, options, runtime); `job.runner()` loads its models once in the
process that runs them (the local engine's main process, or each Ray actor) and returns a `Runner` whose `run`
maps prepared items to output rows.

Every model call has a fixed shape: a batch is padded to `batch_size` rows (with copies of its first row, whose
outputs are dropped) and texts are padded to a fixed length. TensorFlow then compiles one program per job, and a
record's numbers depend on its batch companions only through float rounding (a matrix product may round a row
differently at another position in its batch, by about a float32 ulp). The local engine forms its batches within
shards, so a resumed run redoes a shard in exactly the batches of an uninterrupted run and writes the same bits;
Ray forms its own batches, so its scores agree with the local engine's to float32 rounding (captions, decisions
and errors exactly, save a probability within ~1e-6 of the threshold). Sampling draws each record's random
numbers from NumPy's Philox keyed by the seed and the record's key (`generate(sampling_seeds=...)`), so sampled
captions do not depend on the engine, the batch or the framework.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blip_core.bulk.prepare import Prepared, distinct_processors
from blip_core.generation.sampling import key_seed

CAPTION_COLUMNS = (("key", "string"), ("text", "string"), ("caption", "string"), ("error", "string"))
CAPFILT_COLUMNS = (
    ("key", "string"),
    ("text", "string"),
    ("captions", "list<string>"),
    ("text_itm", "float32"),
    ("captions_itm", "list<float32>"),
    ("text_itc", "float32"),
    ("captions_itc", "list<float32>"),
    ("text_kept", "bool"),
    ("captions_kept", "list<bool>"),
    ("kept_texts", "list<string>"),
    ("error", "string"),
)
SAMPLING_MODES = ("nucleus", "beam")
ORIGINAL_TEXT_LENGTH = 35  # the original pads or cuts ITM/ITC texts to 35 tokens


@dataclass(frozen=True)
class RuntimeSpec:
    """Where models run: framework "pt" or "tf", device, weights dtype (float32 keeps the frameworks equal)."""

    framework: str = "pt"
    device: str | None = None
    dtype: str = "float32"


def _pipeline(task: str, model: str, runtime: RuntimeSpec) -> Any:
    from blip_core.tasks.pipelines import pipeline

    return pipeline(task, model=model, framework=runtime.framework, device=runtime.device, dtype=runtime.dtype)


def _run(pipe: Any, function: Any, **arrays: np.ndarray) -> np.ndarray:
    """`function(**arrays)` on the pipeline's model: NumPy in, NumPy out (float32 or int)."""
    from blip_core.tasks.pipeline_runtime import to_numpy

    return to_numpy(pipe.runtime.run(function, **pipe.runtime.tensors(arrays, pipe.model)))


def image_processors(models: list[str]) -> tuple[list[Any], list[int]]:
    """(the distinct image processors of `models`, each model's index among them), without loading a model: what
    a preprocessing stage needs."""
    from blip_core.processing.image_processing import BlipImageProcessor

    return distinct_processors([BlipImageProcessor.from_pretrained(model) for model in models])


def _padded(items: list[Prepared], batch_size: int, index: int) -> np.ndarray:
    """(batch_size, C, H, W) pixels of processor `index`: the items', then copies of the first item's."""
    if not 0 < len(items) <= batch_size:
        raise ValueError(f"a model batch holds 1 to {batch_size} items, got {len(items)}")
    rows = [item.pixels[index] for item in items]
    return np.stack(rows + [rows[0]] * (batch_size - len(rows)))


def _seeds(items: list[Prepared], batch_size: int, seed: int) -> list[int]:
    seeds = [key_seed(seed, item.key) for item in items]
    return seeds + [seeds[0]] * (batch_size - len(seeds))


class CaptionRunner:
    """Captions of a batch, as `pipeline("image-to-text")` writes them (a prompt stays at the start)."""

    def __init__(self, job: CaptionJob) -> None:
        from blip_core.tasks.pipeline_tasks import length_default

        self.job = job
        self.pipe = _pipeline("image-to-text", job.model, job.runtime)
        self.image_processors = [self.pipe.processor.image_processor]
        default = length_default(self.pipe.model, dict(job.generate))
        self.generate, self.quiet = {**default, **dict(job.generate)}, bool(default)

    def run(self, items: list[Prepared]) -> list[dict[str, Any]]:
        size = self.job.batch_size
        arrays = {"pixel_values": _padded(items, size, 0)}
        if self.job.prompt:
            prompt = self.pipe.processor.tokenizer([self.job.prompt] * size, return_tensors="np")
            arrays |= {"input_ids": prompt["input_ids"], "attention_mask": prompt["attention_mask"]}
        options = dict(self.generate)
        if options.get("do_sample"):
            options = {**options, "sampling_seeds": _seeds(items, size, self.job.seed)}
        ids = _generate(self.pipe, options, self.quiet, arrays)
        texts = self.pipe.processor.batch_decode(ids, skip_special_tokens=True)
        rows = zip(items, texts[: len(items)], strict=True)
        return [{"key": i.key, "text": i.text, "caption": t, "error": None} for i, t in rows]


def _generate(pipe: Any, options: dict[str, Any], quiet: bool, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Generated ids (rows, T) as NumPy; the pipeline's own 256-token default meeting a shorter position table is
    not news to the user (as in the pipelines)."""
    import contextlib

    from blip_core.generation.options import quiet_length_cap

    with quiet_length_cap() if quiet else contextlib.nullcontext():
        return _run(pipe, lambda **a: _sequences(pipe.model.generate(**a, **options)), **arrays)


def _sequences(out: Any) -> Any:
    return getattr(out, "sequences", out)


@dataclass(frozen=True)
class CaptionJob:
    """Caption every image (`blip caption --out`): `generate` holds the generation options as sorted pairs."""

    model: str
    batch_size: int = 8
    prompt: str | None = None
    generate: tuple[tuple[str, Any], ...] = ()
    seed: int = 0
    runtime: RuntimeSpec = field(default_factory=RuntimeSpec)
    kind = "caption"
    columns = CAPTION_COLUMNS

    def __post_init__(self) -> None:
        returned = dict(self.generate).get("num_return_sequences", 1)
        if returned != 1:  # rows hold one caption per record; more would shift every caption onto later records
            raise ValueError(
                f"a caption job writes one caption per record: num_return_sequences must be 1, got {returned!r} "
                "(capfilt writes several per record: num_captions)"
            )

    def identity(self) -> dict[str, Any]:
        return _identity(self)

    def runner(self) -> CaptionRunner:
        return CaptionRunner(self)

    def image_processors(self) -> tuple[list[Any], list[int]]:
        return image_processors([self.model])

    def counts(self, rows: list[dict[str, Any]]) -> dict[str, int]:
        return {"records": len(rows), "failed": sum(row["error"] is not None for row in rows)}


def _identity(job: Any) -> dict[str, Any]:
    """What a resumed run must share with the run that started the output (JSON-able)."""
    values = {"kind": job.kind}
    for name in job.__dataclass_fields__:
        value = getattr(job, name)
        values[name] = value.__dict__ if isinstance(value, RuntimeSpec) else value
    values["generate"] = [[name, value] for name, value in job.generate]
    return values


def error_row(job: Any, item: Prepared) -> dict[str, Any]:
    """The output row of a record that could not be used: its key, web text and the reason."""
    row: dict[str, Any] = {name: None for name, _ in job.columns}
    return {**row, "key": item.key, "text": item.text, "error": item.error}
