"""Test session set-up: torch before tensorflow, seeds, opt-in markers."""

from __future__ import annotations

import os
import random

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the network

import numpy as np
import pytest

try:  # torch first: importing it after tensorflow can clash over shared libraries
    import torch
except ImportError:  # pragma: no cover - the core tests run without frameworks too
    torch = None


@pytest.fixture
def image_urls_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lift HF_HUB_OFFLINE for a test that fetches images from its own local server (offline, no URL is fetched)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="run tests marked slow")
    parser.addoption("--run-hub", action="store_true", help="run tests that need the Hugging Face Hub")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for marker, option in (("slow", "--run-slow"), ("hub", "--run-hub")):
        if config.getoption(option):
            continue
        skip = pytest.mark.skip(reason=f"opt in with {option}")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    random.seed(0)
    np.random.seed(0)
    if torch is not None:
        torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """class name -> folder holding that class's tiny seeded checkpoint."""
    from blip_core.weights.names import MODEL_CLASSES
    from tests.helpers.checkpoints import write_tiny_checkpoint

    root = tmp_path_factory.mktemp("tiny_checkpoints")
    return {name: write_tiny_checkpoint(name, root / name) for name in MODEL_CLASSES}


@pytest.fixture(scope="session")
def small_models(tmp_path_factory):
    """class name -> folder of a small real-vocabulary model with processor files."""
    from tests.helpers.small import write_small_models

    return write_small_models(tmp_path_factory.mktemp("small_models"))
