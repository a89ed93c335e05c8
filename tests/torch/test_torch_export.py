"""`torch.export.export` of every graph of `blip_torch.export` with dynamic axes (export fails on a graph break),
and the exported program gives the eager module's outputs at batch sizes and cache lengths other than the
example's."""

from __future__ import annotations

import pytest
import torch
from torch.export import Dim
from torch.utils._pytree import tree_leaves

import blip_torch
from blip_torch import export as graphs
from tests.helpers.checkpoints import write_generation_checkpoint, write_tiny_checkpoint

DYNAMIC = Dim.DYNAMIC
TOLERANCE = 1e-5
VOCAB, IMAGE = 99, 40


@pytest.fixture(scope="module")
def captioner(tmp_path_factory):
    folder = write_generation_checkpoint("BlipForConditionalGeneration", "varied", tmp_path_factory.mktemp("cap"))
    return blip_torch.BlipForConditionalGeneration.from_pretrained(folder).eval()


@pytest.fixture(scope="module")
def answerer(tmp_path_factory):
    folder = write_generation_checkpoint("BlipForQuestionAnswering", "eos", tmp_path_factory.mktemp("vqa"))
    return blip_torch.BlipForQuestionAnswering.from_pretrained(folder).eval()


@pytest.fixture(scope="module")
def retriever(tmp_path_factory):
    folder = write_tiny_checkpoint("BlipForImageTextRetrieval", tmp_path_factory.mktemp("itm"))
    return blip_torch.BlipForImageTextRetrieval.from_pretrained(folder).eval()


def seeded(seed: int):
    return torch.Generator().manual_seed(seed)


def pixels(batch: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, IMAGE, IMAGE, generator=seeded(seed))


def text(batch: int, length: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids (batch, length) in [4, VOCAB) and a 0/1 mask whose later rows are right-padded."""
    ids = torch.randint(4, VOCAB, (batch, length), generator=seeded(seed))
    mask = torch.ones(batch, length, dtype=torch.long)
    for row in range(1, batch):
        mask[row, length - min(row, length - 1) :] = 0
    return ids, mask


def check_export(module: torch.nn.Module, example: tuple, dynamic_shapes, others: list[tuple]) -> None:
    """Export with the given dynamic axes; the program matches the eager module on `others` within TOLERANCE."""
    with torch.no_grad():
        program = torch.export.export(module, example, dynamic_shapes=dynamic_shapes, strict=True)
        exported = program.module()
        for inputs in others:
            want, got = tree_leaves(module(*inputs)), tree_leaves(exported(*inputs))  # per-layer lists flattened
            for index, (a, b) in enumerate(zip(want, got, strict=True)):
                assert a.shape == b.shape, (index, a.shape, b.shape)
                assert float((a - b).abs().max()) <= TOLERANCE, f"output {index}: {float((a - b).abs().max())}"


def test_vision_encoder_exports_with_dynamic_batch(captioner):
    module = graphs.VisionEncoderGraph(captioner.vision_model).eval()
    check_export(module, (pixels(2),), ({0: DYNAMIC},), [(pixels(3, 1),), (pixels(5, 2),)])


def test_cross_keys_values_export_with_dynamic_batch_and_length(captioner):
    module = graphs.CrossKeysValuesGraph(captioner.text_decoder).eval()
    states = [torch.randn(b, t, 24, generator=seeded(b)) for b, t in ((2, 26), (3, 26), (5, 11))]
    check_export(module, (states[0],), ({0: DYNAMIC, 1: DYNAMIC},), [(s,) for s in states[1:]])


def decoder_inputs(cross: torch.nn.Module, images: int, group: int, past: int, seed: int) -> tuple:
    """One new token per row after `past` cached positions (the last cached one of row 0 is padding)."""
    generator = seeded(seed)
    layers, heads, size = 2, 4, 5
    ids = torch.randint(4, VOCAB, (images, group, 1), generator=generator)
    positions = torch.full((images, group, 1), past, dtype=torch.long)
    mask = torch.ones(images, group, 1, dtype=torch.long)
    past_mask = torch.ones(images, group, past, dtype=torch.long)
    past_mask[0, 0, 0] = 0
    past_keys = [torch.randn(images, group, heads, past, size, generator=generator) for _ in range(layers)]
    past_values = [torch.randn(images, group, heads, past, size, generator=generator) for _ in range(layers)]
    with torch.no_grad():
        cross_keys, cross_values = cross(torch.randn(images, 26, 24, generator=generator))
    encoder_mask = torch.ones(images, 26, dtype=torch.long)
    return ids, positions, mask, past_mask, past_keys, past_values, cross_keys, cross_values, encoder_mask


def test_decoder_step_exports_with_dynamic_batch_rows_and_cache(captioner):
    decoder = captioner.text_decoder
    module, cross = graphs.DecoderGraph(decoder).eval(), graphs.CrossKeysValuesGraph(decoder).eval()
    images, group, past = Dim("images", min=1, max=64), Dim("group", min=1, max=16), Dim("past", min=1, max=40)
    rows, cache, shared = {0: images, 1: group}, {0: images, 1: group, 3: past}, {0: images}
    dynamic = (rows, rows, rows, {0: images, 1: group, 2: past}, [cache] * 2, [cache] * 2, [shared] * 2, [shared] * 2)
    dynamic += ({0: images},)
    others = [decoder_inputs(cross, 3, 1, 5, 1), decoder_inputs(cross, 5, 3, 9, 2)]
    check_export(module, decoder_inputs(cross, 2, 2, 3, 0), dynamic, others)


def test_question_encoder_exports_with_dynamic_batch_and_length(answerer):
    module = graphs.QuestionEncoderGraph(answerer.text_encoder).eval()
    embeds = answerer.vision_model(pixel_values=pixels(5), return_dict=True).last_hidden_state.detach()

    def inputs(batch: int, length: int, seed: int) -> tuple:
        return (*text(batch, length, seed), embeds[:batch])

    dynamic = ({0: DYNAMIC, 1: DYNAMIC}, {0: DYNAMIC, 1: DYNAMIC}, {0: DYNAMIC})
    check_export(module, inputs(2, 6, 0), dynamic, [inputs(3, 4, 1), inputs(5, 9, 2)])


def test_retrieval_graphs_export_with_dynamic_batch(retriever):
    embeds = retriever.vision_model(pixel_values=pixels(5), return_dict=True).last_hidden_state.detach()
    image = graphs.ImageFeaturesGraph(retriever).eval()
    check_export(image, (pixels(2),), ({0: DYNAMIC},), [(pixels(3, 1),), (pixels(5, 2),)])
    texts = graphs.TextFeaturesGraph(retriever).eval()
    check_export(texts, text(2, 6), ({0: DYNAMIC, 1: DYNAMIC},) * 2, [text(3, 4, 1), text(5, 9, 2)])
    itm = graphs.ImageTextMatchingGraph(retriever).eval()
    dynamic = ({0: DYNAMIC, 1: DYNAMIC}, {0: DYNAMIC, 1: DYNAMIC}, {0: DYNAMIC})
    others = [(*text(3, 4, 1), embeds[:3]), (*text(5, 9, 2), embeds)]
    check_export(itm, (*text(2, 6), embeds[:2]), dynamic, others)
