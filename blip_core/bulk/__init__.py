"""Bulk captioning and CapFilt over whole datasets: input readers, a streaming resumable engine, the jobs, Ray Data.

- `records`: one input record (stable key, image bytes or path, optional web text) and the `Source` protocol;
- `sources`: the readers (a folder of images, Parquet, WebDataset `.tar` shards), the same records locally and as
  a Ray Dataset;
- `prepare`: image decoding and preprocessing, run in worker processes; `shards`: the output folder (atomic
  shards, manifest, resume); `engine`: the local streaming engine; `ray_engine`: the same job on Ray Data;
- `jobs`: what runs on a batch (captioning, CapFilt) behind NumPy; `api`: `caption_dataset` and `capfilt`.

Layer: an application beside `tasks`; it may import io, config, processing, modeling, generation and tasks, and
only `cli` imports it. torch, tensorflow, pyarrow, webdataset and ray are imported inside calls only.
"""

from blip_core.bulk.api import BulkSummary, capfilt, caption_dataset, read_output

__all__ = ["BulkSummary", "caption_dataset", "capfilt", "read_output"]
