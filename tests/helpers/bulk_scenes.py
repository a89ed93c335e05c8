"""A folder of synthetic scenes the demo models know, with web texts half right and half wrong, for CapFilt tests.

Scene i is `blip_core.demo.synthetic` held-out sample i, saved as `sNN.png`. `captions.jsonl` gives even scenes
their true caption and odd scenes a caption with one attribute changed (what the demo filter must drop); the
scenes in `without_text` get no line (records without web text). `broken` adds files that cannot be decoded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

MODELS = Path(__file__).resolve().parents[2] / "blip_core" / "data" / "models"
CAPTIONER = str(MODELS / "BlipForConditionalGeneration")
FILTER = str(MODELS / "BlipForImageTextRetrieval")
BROKEN = {"zz_broken.jpg": b"this is not an image\n", "zz_truncated.png": b"\x89PNG\r\n\x1a\n\x00\x00"}


class Scene(NamedTuple):
    """One written scene: its key, its web text (None: no line) and whether that text describes the image."""

    key: str
    text: str | None
    right: bool


def write_scenes(
    folder: Path, count: int = 16, without_text: tuple[int, ...] = (5,), broken: bool = False
) -> list[Scene]:
    """Write the scenes (and `captions.jsonl`) into `folder`; the scenes in key order."""
    from blip_core.demo import synthetic

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    scenes, lines = [], []
    for index, (image, scene) in enumerate(synthetic.samples(synthetic.HELD_OUT_SEED, 0, count)):
        key = f"s{index:02d}.png"
        image.save(folder / key)
        text = scene.caption if index % 2 == 0 else scene.altered(rng).caption
        if index in without_text:
            scenes.append(Scene(key, None, False))
            continue
        lines.append({"file": key, "caption": text})
        scenes.append(Scene(key, text, index % 2 == 0))
    if broken:
        for name, data in BROKEN.items():
            (folder / name).write_bytes(data)
    (folder / "captions.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return scenes


SCORES = ("text_itm", "text_itc", "captions_itm", "captions_itc")


def assert_same_rows(remote: dict[str, dict], local: dict[str, dict]) -> None:
    """Rows by key from runs whose batches differ (Ray, other companions): everything exact but the ITM/ITC
    scores, which agree within 2e-6 (a matrix product may round a row differently at another batch position)."""
    assert sorted(remote) == sorted(local)
    for key, row in local.items():
        other = remote[key]
        assert {k: v for k, v in other.items() if k not in SCORES} == {k: v for k, v in row.items() if k not in SCORES}
        for name in SCORES:
            if name in row:
                mine, theirs = row[name], other[name]
                assert (mine is None) == (theirs is None), (key, name)
                if mine is not None:
                    assert np.allclose(theirs, mine, rtol=0, atol=2e-6), (key, name, mine, theirs)
