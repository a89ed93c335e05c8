"""TF `generate` keeps one XLA function per prompt shape in a bounded cache, each traced once: many prompt widths
neither grow memory without bound nor make TensorFlow warn about retracing; a user's tf.function is refused."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tensorflow as tf

import blip_tf
import blip_tf.generation as tf_generation

PIXELS = np.random.RandomState(3).randn(1, 3, 40, 40).astype(np.float32)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def prompt(model, width: int) -> np.ndarray:
    ids = np.arange(5, 5 + width, dtype=np.int32)[None] % model.config.text_config.vocab_size
    ids[0, 0] = model.config.text_config.bos_token_id
    return ids


@pytest.mark.slow  # seven XLA compilations (about 18 s)
def test_many_prompt_widths_neither_retrace_nor_grow_the_cache(tiny_checkpoints, monkeypatch):
    monkeypatch.setattr(tf_generation, "COMPILED_PER_DECODER", 3)
    model = blip_tf.TFBlipForConditionalGeneration.from_pretrained(tiny_checkpoints["BlipForConditionalGeneration"])
    records = _Records()
    logging.getLogger("tensorflow").addHandler(records)
    try:
        first = [model.generate(PIXELS, input_ids=prompt(model, width), max_new_tokens=2) for width in range(1, 8)]
    finally:
        logging.getLogger("tensorflow").removeHandler(records)
    assert not [message for message in records.messages if "retracing" in message], records.messages
    functions = model.text_decoder._blip_generate_functions
    assert len(functions) == 3  # the three latest widths
    assert [key[-1][2].shape for key in functions] == [(1, 5), (1, 6), (1, 7)]
    for width, ids in zip(range(1, 8), first, strict=True):
        assert ids.shape == (1, width + 2)
        np.testing.assert_array_equal(ids[:, :width], prompt(model, width))
    again = model.generate(PIXELS, input_ids=prompt(model, 2), max_new_tokens=2)  # evicted: compiled afresh
    np.testing.assert_array_equal(again, first[1])
    assert len(functions) == 3


def test_generate_inside_a_users_tf_function_names_export_for_serving(tiny_checkpoints):
    model = blip_tf.TFBlipForConditionalGeneration.from_pretrained(tiny_checkpoints["BlipForConditionalGeneration"])
    with pytest.raises(NotImplementedError, match=r"cannot run inside tf.function.*export_for_serving"):
        tf.function(model.generate)(tf.constant(PIXELS))
