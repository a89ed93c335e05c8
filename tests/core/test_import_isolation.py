"""`import blip_core` (and its whole public surface) loads neither torch, tensorflow nor keras."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
import blip_core, blip_core.checkpoints.sources, blip_core.io.hub, blip_core.weights
from blip_core import BlipProcessor, BlipImageProcessor, BlipTokenizer, BlipConfig
BlipImageProcessor(size=8)(__import__("numpy").zeros((9, 9, 3), "uint8"), return_tensors="np")
print(" ".join(m for m in ("torch", "tensorflow", "keras", "transformers") if m in sys.modules))
"""


def test_core_imports_no_framework():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"blip_core pulled in: {out.stdout.strip()}"
