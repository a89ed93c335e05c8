"""Auto classes resolve from config.json, and the Hub page's two examples run with only the import line changed."""

from __future__ import annotations

import json
import shutil

import numpy as np
import PIL.Image
import pytest

import blip_core
import blip_tf
import blip_torch
from tests.helpers.images import base_rgb

PHOTO = PIL.Image.fromarray(base_rgb(60, 80, seed=9))


def test_auto_model_takes_the_declared_class(small_models):
    for name, folder in small_models.items():
        assert type(blip_torch.AutoModel.from_pretrained(folder)).__name__ == name
        assert type(blip_tf.TFAutoModel.from_pretrained(folder)).__name__ == "TF" + name
    assert (
        type(
            blip_torch.AutoModelForImageTextToText.from_pretrained(small_models["BlipForConditionalGeneration"])
        ).__name__
        == "BlipForConditionalGeneration"
    )
    assert isinstance(
        blip_core.AutoProcessor.from_pretrained(small_models["BlipForQuestionAnswering"]), blip_core.BlipProcessor
    )


def test_auto_refuses_the_wrong_task(small_models):
    with pytest.raises(
        ValueError,
        match="declares BlipForConditionalGeneration, which AutoModelForVisualQuestionAnswering does not load",
    ):
        blip_torch.AutoModelForVisualQuestionAnswering.from_pretrained(small_models["BlipForConditionalGeneration"])


def test_auto_without_architectures_uses_model_type(tmp_path, small_models):
    shutil.copytree(small_models["BlipModel"], tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config.pop("architectures")
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    assert type(blip_torch.AutoModel.from_pretrained(tmp_path / "m")).__name__ == "BlipModel"


# The Hub page of Salesforce/blip-vqa-base, with the Hub id replaced by a local folder.
SEED_PIPELINE = """
{imports}
pipe = pipeline("visual-question-answering", model=MODEL)
answer = pipe(raw_image, question="how many dogs are in the picture?")
"""
SEED_AUTO = """
{imports}
processor = AutoProcessor.from_pretrained(MODEL)
model = AutoModelForVisualQuestionAnswering.from_pretrained(MODEL)
question = "how many dogs are in the picture?"
inputs = processor(raw_image, question, return_tensors="pt")
out = model.generate(**inputs)
answer = processor.decode(out[0], skip_special_tokens=True)
"""
TF_AUTO = "from blip_tf import TFAutoModelForVisualQuestionAnswering as AutoModelForVisualQuestionAnswering"
IMPORTS = {
    "pt": (
        "from blip_torch import pipeline",
        "from blip_core import AutoProcessor\nfrom blip_torch import AutoModelForVisualQuestionAnswering",
    ),
    "tf": ("from blip_tf import pipeline", "from blip_core import AutoProcessor\n" + TF_AUTO),
}


def test_seed_examples_run_in_both_frameworks_with_only_the_import_changed(small_models):
    answers = {}
    for framework, (pipeline_import, auto_import) in IMPORTS.items():
        for name, source, imports in (("pipeline", SEED_PIPELINE, pipeline_import), ("auto", SEED_AUTO, auto_import)):
            scope = {"MODEL": str(small_models["BlipForQuestionAnswering"]), "raw_image": PHOTO}
            exec(source.format(imports=imports), scope)  # noqa: S102 - the example, as users run it
            answer = scope["answer"]
            answers[(framework, name)] = answer[0]["answer"] if name == "pipeline" else answer
    assert (
        answers[("pt", "auto")] == answers[("tf", "auto")]
        and answers[("pt", "pipeline")] == answers[("tf", "pipeline")]
    )
    # the pipeline generates up to 256 new tokens, generate() 20, as in transformers
    assert answers[("pt", "pipeline")].startswith(answers[("pt", "auto")])
    assert isinstance(np.asarray(answers[("pt", "auto")]).item(), str)


def test_auto_vision2seq_zero_shot_config_and_tokenizer(small_models, tmp_path):
    caption, contrastive = small_models["BlipForConditionalGeneration"], small_models["BlipModel"]
    assert type(blip_torch.AutoModelForVision2Seq.from_pretrained(caption)).__name__ == "BlipForConditionalGeneration"
    assert type(blip_tf.TFAutoModelForVision2Seq.from_pretrained(caption)).__name__ == "TFBlipForConditionalGeneration"
    zero_shot = blip_torch.AutoModelForZeroShotImageClassification.from_pretrained(contrastive)
    assert type(zero_shot).__name__ == "BlipModel"
    assert (
        type(blip_tf.TFAutoModelForZeroShotImageClassification.from_pretrained(contrastive)).__name__ == "TFBlipModel"
    )
    with pytest.raises(ValueError, match="declares BlipForImageTextRetrieval, which AutoModelForZeroShot"):
        blip_torch.AutoModelForZeroShotImageClassification.from_pretrained(small_models["BlipForImageTextRetrieval"])
    # AutoConfig: the class named by model_type, the same fields as the class's own loader
    config = blip_core.AutoConfig.from_pretrained(caption)
    assert type(config) is blip_core.BlipConfig and config == blip_core.BlipConfig.from_pretrained(caption)
    config.vision_config.save_pretrained(tmp_path / "vision")
    assert type(blip_core.AutoConfig.from_pretrained(tmp_path / "vision")) is blip_core.BlipVisionConfig
    assert blip_core.AutoConfig.for_model("blip_text_model", vocab_size=99).vocab_size == 99
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"model_type": "clip"}))
    with pytest.raises(ValueError, match="model_type 'clip' is not a BLIP model"):
        blip_core.AutoConfig.from_pretrained(tmp_path / "other")
    # AutoTokenizer: the tokenizer the processor holds, same ids, slow or fast asked
    processor = blip_core.AutoProcessor.from_pretrained(caption)
    for use_fast in (True, False):
        tokenizer = blip_core.AutoTokenizer.from_pretrained(caption, use_fast=use_fast)
        assert isinstance(tokenizer, blip_core.BlipTokenizer)
        text = "a photograph of two dogs"
        assert tokenizer(text)["input_ids"] == processor.tokenizer(text)["input_ids"]
    with pytest.raises(OSError):
        blip_core.AutoTokenizer.from_pretrained(tmp_path / "other")
