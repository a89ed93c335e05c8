"""Checkpoints written by `transformers` 4.57.6's TensorFlow BLIP port, in the formats it writes besides a
single `tf_model.h5`: TF-named `model.safetensors` (`save_pretrained(safe_serialization=True)`, metadata
`{"format": "tf"}`), sharded TF safetensors and sharded `tf_model.h5` (`max_shard_size`).

The oracle venv (transformers' TF port needs Keras 2, i.e. `tf-keras`):

    python3.11 -m venv /work/venvs/oracle-tf
    /work/venvs/oracle-tf/bin/pip install torch==2.13.0 tensorflow-cpu==2.21.0 tf-keras==2.21.0 \\
        transformers==4.57.6 h5py pillow
    PYTHONPATH=. /work/venvs/oracle-tf/bin/python -m tests.tools.make_tf_format_fixtures

Each TF model is built the way a user converts: `transformers`' PyTorch class holding the seeded tiny
weights (`tests.helpers.tiny`), saved, then `TFBlip*.from_pretrained(..., from_pt=True)`. The TF port
leaves the LM-head decoder random on that path (REFERENCE §0.5), so its kernel is recorded as the TF
model holds it. Writes (new folders only) under tests/fixtures/hf_checkpoints/:

    caption_tf_safetensors/      TFBlipForConditionalGeneration, model.safetensors with TF names
    caption_tf_sharded_h5/       the same TF model instance, tf_model.h5.index.json + 3 shards
    vqa_tf_sharded_safetensors/  TFBlipForQuestionAnswering, model.safetensors.index.json + shards (TF names)
    blip_model_tf_h5/            TFBlipModel (names under its main layer `blip/`), tf_model.h5

(`TFBlipModel.save_pretrained(safe_serialization=True)` fails in 4.57.6: its 0-d `logit_scale` becomes a NumPy
scalar that `safetensors.numpy` cannot write, so no TF-named safetensors of that class exists.)

and tests/golden/tf_formats.npz + .json: the TF port's own outputs after loading each fixture back
(caption logits, BlipModel logits_per_image / text_embeds / image_embeds) and each decoder kernel.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from tests.helpers.model_cases import make_inputs  # noqa: E402
from tests.helpers.tiny import TINY_TEXT, TINY_TOP, TINY_VISION, VQA_TEXT, seeded_weights, weights_hash  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINTS = ROOT / "tests" / "fixtures" / "hf_checkpoints"
GOLDEN = ROOT / "tests" / "golden"
SHARD = {"caption": "60KB", "vqa": "100KB"}


def hf_config(class_name: str) -> transformers.BlipConfig:
    text = {**TINY_TEXT, **(VQA_TEXT if class_name == "BlipForQuestionAnswering" else {})}
    return transformers.BlipConfig(text_config=text, vision_config=dict(TINY_VISION), **TINY_TOP)


def tf_model_from_torch(class_name: str, folder: Path):
    """The TF port's model converted from `transformers`' PyTorch model with the seeded weights."""
    weights = seeded_weights(class_name)
    model = getattr(transformers, class_name)(hf_config(class_name)).eval()
    result = model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
    assert not result.unexpected_keys and not result.missing_keys, result
    model.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["vision_config"]["num_channels"] = 3  # the TF port cannot build without it (REFERENCE §1.2)
    (folder / "config.json").write_text(json.dumps(config))
    return getattr(transformers, "TF" + class_name).from_pretrained(folder, from_pt=True), weights_hash(weights)


def save(model, name: str, **options) -> Path:
    target = CHECKPOINTS / name
    if target.exists():
        raise FileExistsError(f"{target} exists; remove it first to regenerate")
    model.save_pretrained(target, **options)
    return target


def caption_fixtures(inputs: dict, store: dict, work: Path) -> str:
    model, digest = tf_model_from_torch("BlipForConditionalGeneration", work / "caption")
    save(model, "caption_tf_safetensors", safe_serialization=True)
    save(model, "caption_tf_sharded_h5", max_shard_size=SHARD["caption"])
    store["caption::decoder_kernel"] = model.text_decoder.cls.predictions.decoder.kernel.numpy()
    again = transformers.TFBlipForConditionalGeneration.from_pretrained(CHECKPOINTS / "caption_tf_safetensors")
    ids = inputs["input_ids_full"].astype(np.int32)
    out = again(pixel_values=inputs["pixel_values"], input_ids=ids, attention_mask=np.ones_like(ids))
    store["caption::logits"] = out.logits.numpy()
    return digest


def vqa_fixture(store: dict, work: Path) -> str:
    model, digest = tf_model_from_torch("BlipForQuestionAnswering", work / "vqa")
    save(model, "vqa_tf_sharded_safetensors", safe_serialization=True, max_shard_size=SHARD["vqa"])
    store["vqa::decoder_kernel"] = model.text_decoder.cls.predictions.decoder.kernel.numpy()
    return digest


def blip_model_fixture(inputs: dict, store: dict, work: Path) -> str:
    model, digest = tf_model_from_torch("BlipModel", work / "blip_model")
    save(model, "blip_model_tf_h5")
    again = transformers.TFBlipModel.from_pretrained(CHECKPOINTS / "blip_model_tf_h5")
    ids = inputs["input_ids"].astype(np.int32)
    mask = inputs["attention_mask"].astype(np.int32)
    out = again(pixel_values=inputs["pixel_values"], input_ids=ids, attention_mask=mask)
    for field in ("logits_per_image", "text_embeds", "image_embeds"):
        store[f"blip_model::{field}"] = getattr(out, field).numpy()
    return digest


def main() -> None:
    tf.random.set_seed(0)
    inputs = make_inputs()
    store = {"input::pixel_values": inputs["pixel_values"], "input::input_ids_full": inputs["input_ids_full"]}
    store["input::input_ids"], store["input::attention_mask"] = inputs["input_ids"], inputs["attention_mask"]
    with tempfile.TemporaryDirectory() as work:
        hashes = {
            "BlipForConditionalGeneration": caption_fixtures(inputs, store, Path(work)),
            "BlipForQuestionAnswering": vqa_fixture(store, Path(work)),
            "BlipModel": blip_model_fixture(inputs, store, Path(work)),
        }
    for name in ("caption_tf_safetensors", "caption_tf_sharded_h5", "vqa_tf_sharded_safetensors", "blip_model_tf_h5"):
        (CHECKPOINTS / name / "generation_config.json").unlink(missing_ok=True)
    np.savez_compressed(GOLDEN / "tf_formats.npz", **store)
    meta = {
        "made_by": {"transformers": transformers.__version__, "tensorflow": tf.__version__},
        "weights_sha256": hashes,
        "equal_to_seeded_weights": "all but text_decoder.cls.predictions.decoder.weight (random in the TF port)",
    }
    (GOLDEN / "tf_formats.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    print("wrote", sorted(p.name for p in CHECKPOINTS.iterdir()), "and", GOLDEN / "tf_formats.npz")


if __name__ == "__main__":
    main()
