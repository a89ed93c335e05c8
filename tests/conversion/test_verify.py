"""`blip-convert verify`: both frameworks on one checkpoint, a table of differences, a failing exit code."""

from __future__ import annotations

import sys

import pytest
import torch

import blip_torch
from blip_conversion.cli import main
from blip_conversion.verify import Report
from blip_core import BlipConfig
from tests.helpers.small import SMALL


@pytest.fixture(scope="module")
def small_checkpoints(tmp_path_factory):
    """Real-vocabulary (30524) but narrow models, so the processor's ids fit; no processor files (defaults used)."""
    torch.manual_seed(0)
    folders = {}
    for name in ("BlipForConditionalGeneration", "BlipForQuestionAnswering", "BlipForImageTextRetrieval"):
        model = getattr(blip_torch, name)(BlipConfig(**SMALL))
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.05)
        folders[name] = tmp_path_factory.mktemp(name)
        model.save_pretrained(folders[name])
    return folders


@pytest.mark.parametrize(
    "name", ["BlipForConditionalGeneration", "BlipForQuestionAnswering", "BlipForImageTextRetrieval"]
)
def test_verify_passes_and_prints_a_table(capsys, small_checkpoints, name):
    with pytest.raises(SystemExit) as exit_info:
        sys.exit(main(["verify", str(small_checkpoints[name])]))
    out = capsys.readouterr().out
    assert exit_info.value.code == 0, out
    assert out.startswith(f"{name}: PASS") and "| output | max difference |" in out
    if name != "BlipForImageTextRetrieval":
        lines = [line for line in out.splitlines() if line.startswith(("blip_torch:", "blip_tf:"))]
        assert len(lines) == 2 and lines[0].split(":", 1)[1] == lines[1].split(":", 1)[1]


def test_report_fails_above_the_bound():
    assert Report("X", {"logits": 5e-5}).passed
    assert not Report("X", {"logits": 2e-4}).passed
    assert not Report("X", {"logits": 0.0}, ids_equal=False).passed
    assert "FAIL" in Report("X", {"logits": 2e-4}).table()
