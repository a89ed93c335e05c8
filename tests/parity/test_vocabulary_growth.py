"""`resize_token_embeddings` in both trees: identical rows (`blip_core.modeling.vocabulary`), `transformers`' sizes,
kept rows and added-row rule (golden: tests/tools/make_vocab_golden.py), round trips across frameworks,
training after."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import torch

import blip_tf
import blip_torch
from blip_core import BlipProcessor
from blip_core.checkpoints.sources import save_safetensors
from blip_core.modeling.vocabulary import vocab_params
from blip_core.weights import saved_names
from blip_core.weights.layouts import from_keras
from tests.helpers.compare import assert_outputs_close, flatten
from tests.helpers.golden import load_json, load_npz
from tests.helpers.tiny import config_for, seeded_weights, sub_config, tiny_config
from tests.helpers.vocab_cases import RESIZE_CASES

GOLDEN, HF_ARRAYS = load_json("vocabulary.json")["resize"], load_npz("vocabulary.npz")
OLD_VOCAB = 99
# transformers' added rows are the old rows' mean plus N(0, 1e-9 x their covariance): allow 6 standard deviations
NOISE_SIGMAS = 6.0


def write_checkpoint(class_name: str, folder, tied: bool = True):
    config = config_for(class_name) if class_name == "BlipForQuestionAnswering" else tiny_config()
    config.text_config.tie_word_embeddings = tied
    sub = sub_config(class_name, config)
    weights = seeded_weights(class_name, config)
    folder.mkdir(parents=True, exist_ok=True)
    save_safetensors(folder / "model.safetensors", {n: weights[n] for n in saved_names(list(weights), class_name, sub)})
    sub.save_pretrained(folder)
    return folder, weights


def load_both(folder, class_name):
    return getattr(blip_torch, class_name).from_pretrained(folder), getattr(blip_tf, "TF" + class_name).from_pretrained(
        folder
    )


def token_tensors(torch_model, tf_model, class_name) -> tuple[dict, dict]:
    """Every token-indexed tensor (torch layout) of both models, by canonical name."""
    params = vocab_params(class_name, torch_model.config, torch_model.untied_names())
    state = torch_model.state_dict()
    ours_pt = {p.name: state[p.name].numpy() for p in params}
    ours_tf = {
        p.name: from_keras(tf_model.variable(p.name, p.kind).numpy(), p.kind, p.name.rsplit(".", 1)[-1]) for p in params
    }
    return ours_pt, ours_tf


@pytest.mark.parametrize("case", RESIZE_CASES, ids=lambda case: case.name)
def test_resize_equals_transformers_and_both_trees_agree(tmp_path, case):
    folder, old = write_checkpoint(case.class_name, tmp_path, case.tied)
    torch_model, tf_model = load_both(folder, case.class_name)
    rows_pt = torch_model.resize_token_embeddings(case.new_num_tokens, case.pad_to_multiple_of).weight.shape[0]
    rows_tf = tf_model.resize_token_embeddings(case.new_num_tokens, case.pad_to_multiple_of).embeddings.shape[0]
    golden = GOLDEN[case.name]
    assert rows_pt == rows_tf == golden["embedding_rows"]
    text_pt = getattr(torch_model.config, "text_config", torch_model.config)
    text_tf = getattr(tf_model.config, "text_config", tf_model.config)
    assert text_pt.vocab_size == text_tf.vocab_size == golden["config_vocab_size"]
    ours_pt, ours_tf = token_tensors(torch_model, tf_model, case.class_name)
    assert ours_pt.keys() == ours_tf.keys()
    for name in ours_pt:  # NumPy computed them once: the two trees hold the same float32 values
        assert ours_pt[name].shape[0] == rows_pt and np.array_equal(ours_pt[name], ours_tf[name]), name
    kept = min(OLD_VOCAB, rows_pt)
    for name in golden["resized"]:
        hf, ours = HF_ARRAYS[f"{case.name}::{name}"], dict(torch_model.state_dict())[name].numpy()
        assert hf.shape == ours.shape, name
        assert np.array_equal(ours[:kept], hf[:kept]), f"{name}: kept rows must be copied exactly"
        source = old[name][:OLD_VOCAB].astype(np.float64)
        bound = NOISE_SIGMAS * np.sqrt(1e-9 * source.var(axis=0)) + 1e-6
        assert (np.abs(ours[kept:] - hf[kept:]) <= bound).all(), f"{name}: added rows differ from transformers"


def test_where_transformers_leaves_tensors_behind_we_resize_them(tmp_path):
    """transformers 4.57 resizes only the VQA encoder's embeddings and no untied captioning head, leaving the
    model inconsistent with its config; every token-indexed tensor follows here."""
    vqa = GOLDEN["vqa_grow"]["resized"]
    assert vqa == ["text_encoder.embeddings.word_embeddings.weight"]
    assert GOLDEN["caption_untied"]["resized"] == ["text_decoder.bert.embeddings.word_embeddings.weight"]
    folder, old = write_checkpoint("BlipForConditionalGeneration", tmp_path, tied=False)
    model = blip_torch.BlipForConditionalGeneration.from_pretrained(folder)
    model.resize_token_embeddings(103)
    state = model.state_dict()
    head = "text_decoder.cls.predictions."
    assert state[head + "decoder.weight"].shape == (103, 20) and state[head + "bias"].shape == (103,)
    expected = old[head + "decoder.weight"].astype(np.float64).mean(0)
    assert np.allclose(state[head + "decoder.weight"][99:].numpy(), expected, atol=1e-6)
    assert np.allclose(state[head + "bias"][99:].numpy(), old[head + "bias"].mean(), atol=1e-6)


def run_both(torch_model, tf_model, **arrays):
    with torch.no_grad():
        a = torch_model(**{k: torch.from_numpy(v) for k, v in arrays.items()})
    return flatten(dict(a)), flatten(dict(tf_model(**{k: tf.constant(v) for k, v in arrays.items()})))


@pytest.mark.parametrize("class_name", ["BlipForConditionalGeneration", "BlipForQuestionAnswering"])
def test_new_tokens_run_the_same_in_both_trees_and_survive_saving(tmp_path, class_name):
    folder, _ = write_checkpoint(class_name, tmp_path / "source")
    torch_model, tf_model = load_both(folder, class_name)
    torch_model.resize_token_embeddings(105)
    tf_model.resize_token_embeddings(105)
    rng = np.random.RandomState(3)
    size = torch_model.config.vision_config.image_size
    ids = np.array([[97, 100, 5, 104, 3], [97, 102, 103, 7, 3]], np.int64)
    arrays = {"pixel_values": rng.randn(2, 3, size, size).astype(np.float32), "input_ids": ids}
    if class_name == "BlipForQuestionAnswering":
        arrays["decoder_input_ids"] = ids[:, ::-1].copy()
    expected, actual = run_both(torch_model, tf_model, **arrays)
    assert expected["logits"].shape[-1] == 105
    assert_outputs_close(actual, expected)
    torch_model.save_pretrained(tmp_path / "from_torch")
    tf_again = getattr(blip_tf, "TF" + class_name).from_pretrained(tmp_path / "from_torch")
    tf_again.save_pretrained(tmp_path / "from_tf")
    torch_again = getattr(blip_torch, class_name).from_pretrained(tmp_path / "from_tf")
    for name, value in torch_model.state_dict().items():
        assert torch.equal(value, torch_again.state_dict()[name]), name
    assert_outputs_close(run_both(torch_again, tf_again, **arrays)[1], expected)


@pytest.mark.parametrize("class_name", ["BlipTextLMHeadModel", "BlipForImageTextRetrieval"])
def test_mean_resizing_false_draws_the_same_rows_in_both_trees(tmp_path, class_name):
    folder, old = write_checkpoint(class_name, tmp_path)
    torch_model, tf_model = load_both(folder, class_name)
    torch_model.resize_token_embeddings(150, mean_resizing=False)
    tf_model.resize_token_embeddings(150, mean_resizing=False)
    ours_pt, ours_tf = token_tensors(torch_model, tf_model, class_name)
    for name, value in ours_pt.items():
        assert np.array_equal(value, ours_tf[name]), name
        assert np.array_equal(value[:OLD_VOCAB], old[name]), name
    rows = next(v for n, v in ours_pt.items() if n.endswith("word_embeddings.weight"))[OLD_VOCAB:]
    assert 0.015 < rows.std() < 0.025 and abs(rows.mean()) < 0.01  # N(0, initializer_range=0.02)


def test_errors_are_the_same_in_both_trees(tiny_checkpoints):
    torch_model, tf_model = load_both(tiny_checkpoints["BlipForConditionalGeneration"], "BlipForConditionalGeneration")
    for args, message in (
        ((97,), "would drop token 97, the model's bos_token_id"),
        ((0,), "new_num_tokens must be a positive integer"),
        ((101.0,), "new_num_tokens must be a positive integer"),
        ((True,), "new_num_tokens must be a positive integer"),
        ((None, 0), "pad_to_multiple_of must be a positive integer"),
    ):
        errors = []
        for model in (torch_model, tf_model):
            with pytest.raises(ValueError, match=message) as info:
                model.resize_token_embeddings(*args)
            errors.append(str(info.value))
        assert errors[0] == errors[1]
    assert torch_model.config.text_config.vocab_size == tf_model.config.text_config.vocab_size == 99
    for model in load_both(tiny_checkpoints["BlipVisionModel"], "BlipVisionModel"):
        with pytest.raises(ValueError, match="has no text model"):
            model.resize_token_embeddings(120)


def test_no_size_or_the_same_size_changes_nothing(tiny_checkpoints):
    torch_model, tf_model = load_both(tiny_checkpoints["BlipTextLMHeadModel"], "BlipTextLMHeadModel")
    before = {k: v.clone() for k, v in torch_model.state_dict().items()}
    for model in (torch_model, tf_model):
        assert model.resize_token_embeddings() is model.get_input_embeddings()
        assert model.resize_token_embeddings(99) is model.get_input_embeddings()
    assert all(torch.equal(v, before[k]) for k, v in torch_model.state_dict().items())
    assert torch_model.resize_token_embeddings(None, 32).weight.shape[0] == 128


def test_input_embeddings_are_the_text_ones_as_in_transformers(tiny_checkpoints):
    for case in RESIZE_CASES[:-1]:
        if case.class_name in ("BlipTextModel", "BlipTextLMHeadModel"):
            continue
        model = getattr(blip_torch, case.class_name).from_pretrained(tiny_checkpoints[case.class_name])
        width = GOLDEN[case.name]["input_embeddings_width"]
        assert isinstance(model.get_input_embeddings(), torch.nn.Embedding)
        assert model.get_input_embeddings().weight.shape == (99, width), case.class_name


def test_keras_fit_and_torch_training_learn_the_new_token(small_models):
    """Add a token, resize, train: the new token's rows move in both frameworks."""
    from blip_core.demo.synthetic import samples
    from blip_core.training import caption_examples
    from blip_tf.training import fit
    from blip_torch.training import train

    folder = small_models["BlipForConditionalGeneration"]
    processor = BlipProcessor.from_pretrained(folder)
    assert processor.tokenizer.add_tokens(["<obj>"]) == 1
    new_id = processor.tokenizer.convert_tokens_to_ids("<obj>")
    pairs = samples(7, 0, 4)
    examples = caption_examples(processor, [image for image, _ in pairs], [f"<obj> {s.caption}" for _, s in pairs])
    assert (examples["input_ids"] == new_id).any()
    keras_model = blip_tf.TFBlipForConditionalGeneration.from_pretrained(folder)
    keras_model.compile(optimizer="adam")  # compiled before resizing: must be compiled again
    keras_model.resize_token_embeddings(len(processor.tokenizer))
    row = keras_model.get_input_embeddings().embeddings[new_id].numpy().copy()
    history = fit(keras_model, examples, batch_size=2, epochs=2, learning_rate=1e-2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert not np.allclose(keras_model.get_input_embeddings().embeddings[new_id].numpy(), row)
    torch_model = blip_torch.BlipForConditionalGeneration.from_pretrained(folder)
    torch_model.resize_token_embeddings(len(processor.tokenizer))
    before = torch_model.get_input_embeddings().weight[new_id].detach().clone()
    assert np.isfinite(train(torch_model, [examples], learning_rate=1e-2)).all()
    assert not torch.allclose(torch_model.get_input_embeddings().weight[new_id], before)


@pytest.mark.slow  # two Keras fits: the resize itself is covered by the fit test above
def test_keras_model_compiled_and_trained_before_resizing_asks_for_compile(small_models):
    from blip_tf.training import to_tensors

    folder = small_models["BlipForConditionalGeneration"]
    model = blip_tf.TFBlipForConditionalGeneration.from_pretrained(folder)
    from blip_core.demo.synthetic import samples
    from blip_core.training import caption_examples

    processor = BlipProcessor.from_pretrained(folder)
    pairs = samples(7, 0, 2)
    examples = caption_examples(processor, [image for image, _ in pairs], [s.caption for _, s in pairs])
    model.compile(optimizer="adam")
    model.fit(dict(to_tensors(examples, model)), epochs=1, batch_size=2, verbose=0)
    model.resize_token_embeddings(30530)
    with pytest.raises(ValueError, match="compile"):
        model.fit(dict(to_tensors(examples, model)), epochs=1, batch_size=2, verbose=0)
    model.compile(optimizer="adam")
    history = model.fit(dict(to_tensors(examples, model)), epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
