"""`rank_answers` (issue 15): the original BLIP's VQA answer ranking in both trees.

The reference is written here in NumPy from the original algorithm (salesforce/BLIP `models/blip_vqa.py`
`rank_answer`, `models/med.py` loss): it takes the decoder's logits for the BOS step and for each candidate
alone (one decoder call per candidate, no repetition, no batching) and does the selection, the label-smoothed
loss and the sort itself.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")

import blip_tf  # noqa: E402
import blip_torch  # noqa: E402
from tests.helpers.checkpoints import write_generation_checkpoint  # noqa: E402

BOS, SEP, PAD = 97, 3, 0
# [DEC] (any first id: rank_answers puts BOS there), the answer, [SEP], padding. Rows 0/2 and 1/4 share their
# first answer token (equal first-token probabilities: the lower index is kept first); lengths 1 to 3 tokens.
CANDIDATES = np.array(
    [
        [BOS, 4, SEP, PAD, PAD],
        [BOS, 6, SEP, PAD, PAD],
        [BOS, 4, 8, SEP, PAD],
        [BOS, 12, 13, 14, SEP],
        [BOS, 6, 20, SEP, PAD],
        [BOS, 30, SEP, PAD, PAD],
        [BOS, 41, 42, SEP, PAD],
        [BOS, 55, SEP, PAD, PAD],
    ]
)
# A one-token answer against two-token ones of slightly higher likelihood: the smoothing's extra per-token cost
# (0.1 x the mean negative log-probability, about 1.5 per token here) puts the short one first.
SMOOTHING_CANDIDATES = np.array([[BOS, 76, 70, SEP], [BOS, 43, SEP, PAD], [BOS, 76, 76, SEP], [BOS, 30, SEP, PAD]])
QUESTIONS = np.array([[5, 7, 9, 11, SEP], [5, 8, 10, SEP, PAD], [6, 6, 2, SEP, PAD]])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = write_generation_checkpoint("BlipForQuestionAnswering", "varied", tmp_path_factory.mktemp("vqa_rank"))
    return (
        blip_torch.BlipForQuestionAnswering.from_pretrained(folder),
        blip_tf.TFBlipForQuestionAnswering.from_pretrained(folder),
    )


def _inputs(seed: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.RandomState(seed)
    return {
        "pixel_values": rng.randn(len(QUESTIONS), 3, 40, 40).astype(np.float32),
        "input_ids": QUESTIONS,
        "attention_mask": (QUESTIONS != PAD).astype(np.int64),
    }


def _decoder_logits(model, inputs: dict[str, np.ndarray], candidates: np.ndarray):
    """(BOS-step logits (B, V), per question a list of each candidate's logits (T, V)), one call per row."""
    mask = torch.tensor(inputs["attention_mask"])
    with torch.no_grad():
        image = model.vision_model(pixel_values=torch.tensor(inputs["pixel_values"])).last_hidden_state
        states = model.text_encoder(
            input_ids=torch.tensor(inputs["input_ids"]), attention_mask=mask, encoder_hidden_states=image
        ).last_hidden_state
        decoder = model.text_decoder
        start = decoder(
            input_ids=torch.full((len(states), 1), BOS), encoder_hidden_states=states, encoder_attention_mask=mask
        ).logits[:, 0]
        rows = []
        for b in range(len(states)):
            per = []
            for ids in candidates:
                length = int((ids != PAD).sum())  # unpadded: the candidate alone
                ids = torch.tensor(np.r_[BOS, ids[1:length]])[None]
                per.append(
                    decoder(
                        input_ids=ids, encoder_hidden_states=states[b : b + 1], encoder_attention_mask=mask[b : b + 1]
                    )
                    .logits[0]
                    .double()
                    .numpy()
                )
            rows.append(per)
    return start.double().numpy(), rows


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def reference_ranking(start, rows, candidates, k, smoothing=0.1):
    """The original algorithm in NumPy: (indices (B, k'), scores (B, k'))."""
    kept = min(k, len(candidates))
    first = np.exp(_log_softmax(start))[:, candidates[:, 1]]
    all_indices, all_scores = [], []
    for b in range(len(start)):
        shortlist = sorted(range(len(candidates)), key=lambda j: (-first[b, j], j))[:kept]
        scores = []
        for j in shortlist:
            log_p = _log_softmax(rows[b][j])  # (T, V): position t predicts token t+1
            targets = candidates[j][1 : int((candidates[j] != PAD).sum())]
            nll = -log_p[np.arange(len(targets)), targets]
            uniform = -log_p[: len(targets)].mean(axis=-1)
            scores.append(-np.sum((1 - smoothing) * nll + smoothing * uniform))
        order = sorted(range(kept), key=lambda i: (-scores[i], i))
        all_indices.append([shortlist[i] for i in order])
        all_scores.append([scores[i] for i in order])
    return np.array(all_indices), np.array(all_scores)


def _run(model, framework: str, inputs: dict[str, np.ndarray], candidates: np.ndarray, **kwargs):
    if framework == "pt":
        out = model.rank_answers(
            **{k: torch.tensor(v) for k, v in inputs.items()}, candidate_ids=torch.tensor(candidates), **kwargs
        )
        return out.indices.numpy(), out.scores.numpy()
    out = model.rank_answers(**inputs, candidate_ids=candidates, **kwargs)
    return out.indices.numpy(), out.scores.numpy()


@pytest.mark.parametrize("k", [1, 3, 5, 8, 128])
def test_twins_agree(models, k):
    inputs = _inputs()
    pt_indices, pt_scores = _run(models[0], "pt", inputs, CANDIDATES, k=k)
    tf_indices, tf_scores = _run(models[1], "tf", inputs, CANDIDATES, k=k)
    assert pt_indices.dtype == tf_indices.dtype == np.int64
    assert pt_scores.dtype == tf_scores.dtype == np.float32
    assert pt_indices.shape == (3, min(k, len(CANDIDATES)))
    np.testing.assert_array_equal(pt_indices, tf_indices)
    np.testing.assert_allclose(pt_scores, tf_scores, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("framework", ["pt", "tf"])
@pytest.mark.parametrize("k", [2, 4, 8])
def test_matches_numpy_reference(models, framework, k):
    inputs = _inputs()
    start, rows = _decoder_logits(models[0], inputs, CANDIDATES)
    expected_indices, expected_scores = reference_ranking(start, rows, CANDIDATES, k)
    indices, scores = _run(models[0 if framework == "pt" else 1], framework, inputs, CANDIDATES, k=k)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-4, rtol=1e-4)
    assert np.all(np.diff(scores, axis=1) <= 0)  # best first


def test_label_smoothing_changes_the_order_and_the_original_value_is_used(models):
    """The config says 0.0 (as the Hub's do); the ranking must follow the original's hard-coded 0.1."""
    assert models[0].config.text_config.label_smoothing == 0.0
    inputs = _inputs()
    candidates = SMOOTHING_CANDIDATES
    start, rows = _decoder_logits(models[0], inputs, candidates)
    smoothed, scores = reference_ranking(start, rows, candidates, 4, smoothing=0.1)
    plain, _ = reference_ranking(start, rows, candidates, 4, smoothing=0.0)
    assert (smoothed[:, 0] != plain[:, 0]).sum() >= 2  # the chosen answer itself differs
    for framework, model in zip(("pt", "tf"), models, strict=True):
        indices, found = _run(model, framework, inputs, candidates, k=4)
        np.testing.assert_array_equal(indices, smoothed)
        np.testing.assert_allclose(found, scores, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_first_token_is_replaced_by_bos_and_padding_is_ignored(models, framework):
    """[CLS] (or anything) first gives the same ranking; extra padding columns change nothing."""
    model = models[0 if framework == "pt" else 1]
    inputs = _inputs()
    base_indices, base_scores = _run(model, framework, inputs, CANDIDATES, k=5)
    other = CANDIDATES.copy()
    other[:, 0] = 2
    padded = np.concatenate([other, np.zeros((len(other), 3), np.int64)], axis=1)
    indices, scores = _run(model, framework, inputs, padded, k=5)
    np.testing.assert_array_equal(indices, base_indices)
    np.testing.assert_allclose(scores, base_scores, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_an_empty_batch_gives_empty_rankings(models, framework):
    model = models[0 if framework == "pt" else 1]
    inputs = {key: value[:0] for key, value in _inputs().items()}
    indices, scores = _run(model, framework, inputs, CANDIDATES, k=3)
    assert indices.shape == scores.shape == (0, 3)


BAD_CALLS = [
    ({"k": 0}, ValueError, "k must be at least 1"),
    ({"k": 2.5}, TypeError, "k must be an integer"),
    ({"k": True}, TypeError, "k must be an integer"),
    ({"candidate_ids": CANDIDATES[0]}, ValueError, "candidate_ids must be 2-D"),
    ({"candidate_ids": CANDIDATES[:0]}, ValueError, "no candidate answers"),
    ({"candidate_ids": CANDIDATES[:, :1]}, ValueError, "at least 2 tokens"),
    ({"candidate_ids": CANDIDATES + 200}, ValueError, "outside the decoder's vocabulary of 99"),
    ({"candidate_attention_mask": np.ones((2, 5), np.int64)}, ValueError, "candidate_attention_mask has shape"),
    ({"attention_mask": np.ones((3, 2), np.int64)}, ValueError, "attention_mask has shape"),
]


@pytest.mark.parametrize("framework", ["pt", "tf"])
@pytest.mark.parametrize(("change", "error", "message"), BAD_CALLS)
def test_bad_arguments_raise_clear_errors(models, framework, change, error, message):
    model = models[0 if framework == "pt" else 1]
    arguments = {**_inputs(), "candidate_ids": CANDIDATES, "k": 3, **change}
    if framework == "pt":
        arguments = {
            key: torch.tensor(value) if isinstance(value, np.ndarray) else value for key, value in arguments.items()
        }
    with pytest.raises(error, match=message):
        model.rank_answers(**arguments)
