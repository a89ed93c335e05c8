"""`torch.compile` and `generate`: every way of compiling a model (or its decoder) decodes through one compiled
step graph that gives the eager ids, and the number of graphs does not grow with the number of tokens."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
import torch._dynamo

import blip_torch
from blip_torch.compiled_decoding import compile_context
from tests.helpers.checkpoints import write_generation_checkpoint
from tests.helpers.model_cases import BOS, PAD, SEP, make_inputs

INPUTS = make_inputs()
PIXELS = torch.from_numpy(INPUTS["pixel_values"])
PROMPT = torch.tensor([[PAD, PAD, BOS, 11, 23, SEP], [BOS, 7, 8, 9, 10, SEP]])  # left-padded prompt batch
CASES = {
    "greedy": {"max_new_tokens": 7},
    "beam3": {"num_beams": 3, "max_new_tokens": 6},
    "padded_prompts": {"input_ids": PROMPT, "attention_mask": (PROMPT != PAD).long(), "max_new_tokens": 6},
}
PATTERNS = ["torch.compile(model)", "model.compile()", "model.forward", "torch.compile(decoder)", "decoder.compile()"]


class GraphCounter:
    """A dynamo backend that runs each graph as traced (no code generation) and counts the graphs compiled."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, graph: torch.fx.GraphModule, example_inputs: list) -> object:
        self.graphs += 1
        return graph.forward


@pytest.fixture(scope="module")
def caption_folder(tmp_path_factory):
    return write_generation_checkpoint("BlipForConditionalGeneration", "varied", tmp_path_factory.mktemp("cap"))


@pytest.fixture(scope="module")
def vqa_folder(tmp_path_factory):
    return write_generation_checkpoint("BlipForQuestionAnswering", "eos", tmp_path_factory.mktemp("vqa"))


@pytest.fixture(scope="module")
def eager_ids(caption_folder):
    model = blip_torch.BlipForConditionalGeneration.from_pretrained(caption_folder).eval()
    return {name: model.generate(PIXELS, **kwargs) for name, kwargs in CASES.items()}


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()  # graphs of earlier tests neither count nor fill the recompile limit
    yield
    torch._dynamo.reset()


def compiled_model(folder, pattern: str, counter: GraphCounter, cls=blip_torch.BlipForConditionalGeneration):
    """A fresh model compiled by `pattern` (fullgraph: a graph break fails); returns (object to call, model)."""
    model = cls.from_pretrained(folder).eval()
    options = {"backend": counter, "fullgraph": True}
    if pattern == "torch.compile(model)":
        return torch.compile(model, **options), model
    if pattern == "model.compile()":
        model.compile(**options)
    elif pattern == "model.forward":
        model.forward = torch.compile(model.forward, **options)
    elif pattern == "torch.compile(decoder)":
        model.text_decoder = torch.compile(model.text_decoder, **options)
    else:
        model.text_decoder.compile(**options)
    return model, model


@pytest.mark.parametrize("pattern", PATTERNS)
def test_compiled_generate_gives_eager_ids(caption_folder, eager_ids, pattern):
    counter = GraphCounter()
    compiled, _ = compiled_model(caption_folder, pattern, counter)
    for name, kwargs in CASES.items():
        ids = compiled.generate(PIXELS, **kwargs)
        np.testing.assert_array_equal(ids.numpy(), eager_ids[name].numpy(), err_msg=f"{pattern}: {name}")
    # one graph per kind of step (plain rows, beams sharing an image, padded prompts), none per token
    assert counter.graphs == 3, pattern


def test_graph_count_does_not_grow_with_tokens(caption_folder):
    counter = GraphCounter()
    compiled, _ = compiled_model(caption_folder, "torch.compile(model)", counter)
    compiled.generate(PIXELS, max_new_tokens=5)
    assert counter.graphs == 1
    compiled.generate(PIXELS, max_new_tokens=15)  # a longer cache: the capacity axis is dynamic
    compiled.generate(torch.cat([PIXELS, PIXELS[:1]]), max_new_tokens=9)  # another batch size
    assert counter.graphs == 1
    compiled.generate(PIXELS[:1], max_new_tokens=5)  # one row: PyTorch specialises size-1 axes, once
    compiled.generate(PIXELS[:1], max_new_tokens=15)
    assert counter.graphs == 2
    compiled.generate(PIXELS, num_beams=3, max_new_tokens=5)
    after_beams = counter.graphs
    compiled.generate(PIXELS, num_beams=3, max_new_tokens=15)
    assert after_beams == 3 and counter.graphs == 3


def test_compiled_vqa_gives_eager_ids_for_questions_of_other_lengths(vqa_folder):
    model = blip_torch.BlipForQuestionAnswering.from_pretrained(vqa_folder).eval()
    questions = [INPUTS["input_ids_full"][:, :6], INPUTS["input_ids_full"]]  # 6 and 7 tokens
    mask = torch.from_numpy(INPUTS["attention_mask"])
    runs = [(torch.from_numpy(q), mask[:, : q.shape[1]], beams) for q in questions for beams in (1, 3)]
    want = [model.generate(q, PIXELS, attention_mask=m, num_beams=b, max_new_tokens=6) for q, m, b in runs]
    counter = GraphCounter()
    compiled = torch.compile(model, backend=counter, fullgraph=True)
    for (question, question_mask, beams), expected in zip(runs, want, strict=True):
        ids = compiled.generate(question, PIXELS, attention_mask=question_mask, num_beams=beams, max_new_tokens=6)
        np.testing.assert_array_equal(ids.numpy(), expected.numpy(), err_msg=f"{question.shape}, beams {beams}")
    assert counter.graphs == 2  # plain rows and beams; the question length is a dynamic axis


def test_uncompiled_model_decodes_eagerly(caption_folder):
    model = blip_torch.BlipForConditionalGeneration.from_pretrained(caption_folder).eval()
    assert compile_context(model) is None and compile_context(model.text_decoder) is None
    compiled = torch.compile(model, backend=GraphCounter())
    assert compile_context(model) is compiled.dynamo_ctx
    assert compile_context(model.text_decoder) is compiled.dynamo_ctx
    del compiled
    gc.collect()
    assert compile_context(model) is None  # the wrapper is gone: the model decodes eagerly again


def test_training_mode_decoder_stays_eager(caption_folder, eager_ids):
    counter = GraphCounter()
    compiled, model = compiled_model(caption_folder, "model.compile()", counter)
    model.text_decoder.train()
    for module in model.text_decoder.modules():  # dropout off: the training path gives the eval ids
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    model.text_decoder.config.attention_probs_dropout_prob = 0.0
    for layer in model.text_decoder.bert.encoder.layer:
        layer.attention.self.dropout = layer.crossattention.self.dropout = 0.0
    ids = compiled.generate(PIXELS, **CASES["greedy"])
    np.testing.assert_array_equal(ids.numpy(), eager_ids["greedy"].numpy())
    assert counter.graphs == 0


@pytest.mark.slow
def test_inductor_generate_gives_eager_ids(caption_folder, eager_ids):
    model = blip_torch.BlipForConditionalGeneration.from_pretrained(caption_folder).eval()
    compiled = torch.compile(model, dynamic=True)
    for name in ("greedy", "beam3"):
        ids = compiled.generate(PIXELS, **CASES[name])
        np.testing.assert_array_equal(ids.numpy(), eager_ids[name].numpy(), err_msg=name)
