"""The Python API of bulk jobs, for scripts and notebooks: `caption_dataset`, `capfilt`, `read_output`.

    from blip_core.bulk import capfilt
    summary = capfilt("web_images/", "capfilt_out/", captioner=CAPTIONER, filter_model=FILTER, num_captions=3)
    summary.counts   # {'records': ..., 'failed': ..., 'web_texts': ..., 'web_kept': ..., 'captions': ..., ...}

Without an output folder the rows come back in memory (`summary.rows`), for small inputs. The same call with
`engine="ray"` runs the job on Ray Data (`ray_engine`).
"""

from __future__ import annotations

import json
import numbers
from pathlib import Path
from typing import Any

from blip_core.bulk.capfilt import CapFiltJob
from blip_core.bulk.engine import DEFAULT_WORKERS, run_local
from blip_core.bulk.jobs import CaptionJob, RuntimeSpec
from blip_core.bulk.records import BulkSummary
from blip_core.bulk.shards import OutputFolder, read_rows

ENGINES = ("local", "ray")
DEFAULT_SHARD_SIZE = 1000
CAPTIONER, FILTER = "BlipForConditionalGeneration", "BlipForImageTextRetrieval"
RAY_OPTIONS = ("ray_address", "ray_actors", "num_gpus", "actor_cpus")


class MemoryOutput:
    """An output that keeps the rows in memory (no folder, nothing to resume)."""

    def __init__(self, job: Any, shard_size: int) -> None:
        self.job, self.shard_size, self.shards = job, shard_size, {}
        self.parts: dict[int, list[dict[str, Any]]] = {}
        self.done: set[int] = set()

    def write_shard(self, index: int, rows: list[dict[str, Any]], counts: dict[str, int]) -> None:
        self.parts[index] = rows
        self.shards[index] = {"counts": counts}

    def finish(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for entry in self.shards.values():
            total = {k: total.get(k, 0) + entry["counts"].get(k, 0) for k in {*total, *entry["counts"]}}
        return dict(sorted(total.items()))

    def rows(self) -> list[dict[str, Any]]:
        return [row for index in sorted(self.parts) for row in self.parts[index]]


def _generate_pairs(options: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Generation options as sorted pairs; values must be JSON numbers, strings, booleans or None (they go in
    the manifest that a resumed run compares)."""
    for name, value in options.items():
        if value is not None and not isinstance(value, (str, bool, numbers.Number)):
            raise TypeError(f"generation option {name}={value!r}: bulk jobs take numbers, strings or booleans")
    return tuple(sorted((name, value) for name, value in options.items() if value is not None))


def _runtime(framework: str | None, device: Any, dtype: str) -> RuntimeSpec:
    from blip_core.tasks.pipelines import default_framework

    return RuntimeSpec(framework or default_framework(), None if device is None else str(device), str(dtype))


def _run(job: Any, inputs: Any, out_dir: Any, options: dict[str, Any]) -> BulkSummary:
    from blip_core.bulk.sources import open_source

    engine = options.pop("engine")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if out_dir is not None:  # before reading the input: an output inside it would be read as input
        _check_not_inside(Path(out_dir), inputs)
    source = open_source(inputs, **{k: options.pop(k) for k in ("image_column", "text_column", "key_column")})
    shard_size, output_format = _positive(options.pop("shard_size"), "shard_size"), options.pop("output_format")
    overwrite = options.pop("overwrite")
    if engine == "ray":
        from blip_core.bulk.ray_engine import run_ray

        if out_dir is None:
            raise ValueError("engine='ray' writes Parquet files: give an output folder")
        if output_format != "parquet":
            raise ValueError(f"engine='ray' writes Parquet (write_parquet), not {output_format!r}")
        if options["actor_cpus"] is None:
            options["actor_cpus"] = 1.0
        return run_ray(job, source, Path(out_dir), overwrite=overwrite, **options)
    ray_only = [name for name in RAY_OPTIONS if options.pop(name) is not None]
    if ray_only:
        raise ValueError(f"{', '.join(ray_only)} apply to engine='ray', not to the local engine")
    workers = options["workers"]  # checked before the output folder is made
    if isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 0:
        raise ValueError(f"workers must be a non-negative integer, got {workers!r}")
    if out_dir is None:
        output: Any = MemoryOutput(job, shard_size)
    else:
        output = OutputFolder(out_dir, job, source, output_format, shard_size)
        output.open(overwrite=overwrite)
        if output.complete:
            output.close()
            return BulkSummary(output.counts(), 0, str(out_dir))
    try:
        processed = run_local(job, source, output, **options)
        counts = output.finish()
    finally:
        if isinstance(output, OutputFolder):
            output.close()  # the lock released; a folder this run made and wrote no shard to removed
    rows = output.rows() if isinstance(output, MemoryOutput) else None
    return BulkSummary(counts, processed, None if out_dir is None else str(out_dir), rows=rows)


def _check_not_inside(out_dir: Path, inputs: Any) -> None:
    """The output folder must not lie in an input folder: its shards would be read as input on the next run."""
    out = out_dir.resolve()
    for item in [inputs] if isinstance(inputs, (str, Path)) else list(inputs):
        folder = Path(item).resolve()
        if folder.is_dir() and (out == folder or folder in out.parents):
            raise ValueError(f"the output folder {out_dir} is inside the input folder {item}: choose one outside it")


def _default(task: str, given: Any, python: str, flag: str) -> str:
    """A model given, or the embedded demo model for `task`, said in a warning that names this call's option."""
    import warnings

    from blip_core.tasks.pipelines import DEFAULT_MODELS, default_model

    if given is not None:
        return str(given)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chosen = default_model(task)
    if chosen != DEFAULT_MODELS[task]:
        warnings.warn(
            f"no {python} given: using the embedded demo model {Path(chosen).name}, trained on synthetic shapes "
            f"only; for real photos pass {DEFAULT_MODELS[task]} ({python}=... in Python, {flag} on the command line)",
            stacklevel=3,
        )
    return chosen


def _check_class(source: str, expected: str, python: str) -> str:
    """`source` (folder or Hub id) declares `expected` in its config.json, or a ValueError names what it is; read
    before any folder is made or model loaded (a Hub id that cannot be reached fails here too, as an OSError)."""
    from blip_core.tasks.pipelines import _architecture

    declared = _architecture(source, {})
    if declared is not None and declared != expected:
        raise ValueError(f"{python} must be a {expected} checkpoint; {source} is a {declared}")
    return source


def caption_dataset(
    inputs: Any,
    out_dir: str | Path | None = None,
    *,
    model: str | None = None,
    prompt: str | None = None,
    seed: int = 0,
    framework: str | None = None,
    device: Any = None,
    dtype: str = "float32",
    batch_size: int = 8,
    shard_size: int = DEFAULT_SHARD_SIZE,
    output_format: str = "parquet",
    workers: int = DEFAULT_WORKERS,
    engine: str = "local",
    ray_address: str | None = None,
    ray_actors: int | None = None,
    num_gpus: float | None = None,
    actor_cpus: float | None = None,
    overwrite: bool = False,
    progress: bool = False,
    image_column: str | None = None,
    text_column: str | None = None,
    key_column: str | None = None,
    **generate_kwargs: Any,
) -> BulkSummary:
    """Caption every image of a dataset (a folder, Parquet, or WebDataset shards) into `out_dir`.

    Rows: key, text (the record's web text, or None), caption (as `pipeline("image-to-text")` writes it), error.
    `generate_kwargs` are `generate`'s options (`num_beams`, `max_new_tokens`, `do_sample`, `top_p`, ...);
    sampling is seeded per record by `seed` and its key. A run killed and started again resumes.

    Raises:
        ValueError: bad options or input. OutputExistsError: `out_dir` holds something else (overwrite=True).
        ImportError (MissingExtraError): pyarrow, webdataset or ray missing (`pip install 'blip-dual[scale]'`).
    """
    job = CaptionJob(
        model=_check_class(_default("image-to-text", model, "model", "--model"), CAPTIONER, "model"),
        batch_size=_positive(batch_size, "batch_size"),
        prompt=prompt,
        generate=_generate_pairs(generate_kwargs),
        seed=_seed(seed),
        runtime=_runtime(framework, device, dtype),
    )
    return _run(job, inputs, out_dir, _options(locals()))


def capfilt(
    inputs: Any,
    out_dir: str | Path | None = None,
    *,
    captioner: str | None = None,
    filter_model: str | None = None,
    num_captions: int = 1,
    sampling: str = "nucleus",
    top_p: float | None = None,
    num_beams: int | None = None,
    threshold: float = 0.5,
    protocol: str = "transformers",
    max_text_length: int = 35,
    prompt: str | None = None,
    seed: int = 0,
    framework: str | None = None,
    device: Any = None,
    dtype: str = "float32",
    batch_size: int = 8,
    shard_size: int = DEFAULT_SHARD_SIZE,
    output_format: str = "parquet",
    workers: int = DEFAULT_WORKERS,
    engine: str = "local",
    ray_address: str | None = None,
    ray_actors: int | None = None,
    num_gpus: float | None = None,
    actor_cpus: float | None = None,
    overwrite: bool = False,
    progress: bool = False,
    image_column: str | None = None,
    text_column: str | None = None,
    key_column: str | None = None,
    **generate_kwargs: Any,
) -> BulkSummary:
    """CapFilt (BLIP paper section 3.3) over a dataset: `num_captions` synthetic captions per image by the
    `captioner` (nucleus sampling with `top_p`, default 0.9; or beam search with `num_beams`, default 3), then the
    `filter_model`'s ITM head scores the web text and every caption; a text is kept when its match probability
    exceeds `threshold`.

    Rows: key, text, captions, text_itm / captions_itm (ITM match probabilities), text_itc / captions_itc (ITC
    cosines), text_kept / captions_kept, kept_texts, error (the text fields are None when a record has no web
    text). `summary.counts` adds web_texts, web_kept, captions, captions_kept. Texts are cut to `max_text_length`
    tokens; `protocol="original"` cleans them and puts [ENC] first in the ITM pass, as the original code.

    Raises: as `caption_dataset`; ValueError also for a filter without an ITM head or bad CapFilt options.
    """
    job = CapFiltJob(
        captioner=_check_class(
            _default("image-to-text", captioner, "captioner", "--captioner"), CAPTIONER, "captioner"
        ),
        filter_model=_check_class(
            _default("image-text-matching", filter_model, "filter_model", "--filter"), FILTER, "filter_model"
        ),
        batch_size=_positive(batch_size, "batch_size"),
        num_captions=num_captions,
        sampling=sampling,
        top_p=top_p,
        num_beams=num_beams,
        threshold=float(threshold),
        protocol=protocol,
        max_text_length=max_text_length,
        prompt=prompt,
        generate=_generate_pairs(generate_kwargs),
        seed=_seed(seed),
        runtime=_runtime(framework, device, dtype),
    )
    return _run(job, inputs, out_dir, _options(locals()))


_ENGINE_NAMES = (
    "shard_size",
    "output_format",
    "workers",
    "engine",
    "ray_address",
    "ray_actors",
    "num_gpus",
    "actor_cpus",
    "overwrite",
    "progress",
    "image_column",
    "text_column",
    "key_column",
)


def _options(values: dict[str, Any]) -> dict[str, Any]:
    return {name: values[name] for name in _ENGINE_NAMES}


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"seed must be a non-negative integer, got {value!r}")
    return int(value)


def read_output(out_dir: str | Path) -> list[dict[str, Any]]:
    """Every row of a bulk job's output folder (local engine: in input order), as dicts.

    Raises: FileNotFoundError (no manifest), ValueError (not a bulk output)."""
    return read_rows(out_dir)


def summary_line(summary: BulkSummary) -> str:
    """One line for the shell: the counts as JSON."""
    return json.dumps(summary.counts)
