"""What a new user's mistakes get from `blip` and the search API: one clear line, never argparse's whole usage
text or a silently wrong result (found by trying the paper features as a new user)."""

from __future__ import annotations

import numpy as np
import pytest

from blip_core.cli.main import main
from blip_core.tasks.vector_search import VectorIndex


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["vqa", "x.png", "-q", "?", "--protocol", "paper"], "blip vqa: error: argument --protocol: invalid choice"),
        (["index", "build", "x", "--out", "y", "--force", "--append"], "blip index build: error: argument --append"),
        (["eval", "vqa", "--images", "x", "--annotations", "y", "--mode", "foo"], "blip eval vqa: error: argument"),
        ([], "blip: error: the following arguments are required: command"),
    ],
)
def test_usage_errors_are_one_line(argv, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith(expected) and err.count("\n") == 1 and "--help" in err


def test_vqa_top_k_without_answers_or_sampling_is_refused(tmp_path, capsys):
    image = tmp_path / "img.png"
    from blip_core.demo.tasks import held_out

    held_out(1).images[0].save(image)
    assert main(["vqa", str(image), "-q", "how many circles are there?", "--top-k", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--top-k is the number of ranked answers with --answers" in err


def test_empty_texts_file_is_refused(tmp_path, capsys):
    texts = tmp_path / "empty.txt"
    texts.write_text("\n  \n")
    assert main(["index", "build", "--texts", str(texts), "--out", str(tmp_path / "store")]) == 2
    assert "holds no text" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()


def test_search_refuses_rows_that_are_not_unit_vectors():
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(10, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="L2-normalised rows"):
        VectorIndex(raw, "numpy")
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    scores, rows = VectorIndex(unit, "numpy").search(unit[:1], 3)
    assert rows[0, 0] == 0 and abs(scores[0, 0] - 1.0) < 1e-5
