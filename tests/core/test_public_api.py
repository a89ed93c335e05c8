"""Every public import of blip-dual 0.1 still works after `blip_core` was split by role: the packages' public
names, the documented module paths, the 0.1 flat module paths (as the moved modules, with a DeprecationWarning),
and every `import` line of the README and docs/, run in a fresh interpreter."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from blip_core._compat import MOVED_MODULES

ROOT = Path(__file__).resolve().parents[2]

# The public names of 0.1, by the path they were imported from (read off the 0.1 tree).
PUBLIC_NAMES = {
    "blip_core": [
        "AddedToken", "AutoConfig", "AutoImageProcessor", "AutoProcessor", "AutoTokenizer", "BatchEncoding",
        "BatchFeature", "BlipConfig", "BlipImageProcessor", "BlipImageProcessorFast", "BlipProcessor",
        "BlipTextConfig", "BlipTokenizer", "BlipVisionConfig", "GenerationConfig", "KeyDataset", "Pipeline",
        "__version__", "pipeline",
    ],
    "blip_torch": [
        "AutoModel", "AutoModelForImageTextToText", "AutoModelForVision2Seq", "AutoModelForVisualQuestionAnswering",
        "AutoModelForZeroShotImageClassification", "BlipForConditionalGeneration", "BlipForImageTextRetrieval",
        "BlipForQuestionAnswering", "BlipModel", "BlipTextLMHeadModel", "BlipTextModel", "BlipVisionModel",
        "GenerationConfig", "pipeline",
    ],
    "blip_tf": [
        "GenerationConfig", "TFAutoModel", "TFAutoModelForImageTextToText", "TFAutoModelForVision2Seq",
        "TFAutoModelForVisualQuestionAnswering", "TFAutoModelForZeroShotImageClassification",
        "TFBlipForConditionalGeneration", "TFBlipForImageTextRetrieval", "TFBlipForQuestionAnswering", "TFBlipModel",
        "TFBlipTextLMHeadModel", "TFBlipTextModel", "TFBlipVisionModel", "export_for_serving", "pipeline",
    ],
    "blip_core.weights": [
        "CheckpointError", "MODEL_CLASSES", "ParamSpec", "PreparedState", "TiedPair", "expected_params", "from_keras",
        "is_ignored", "keras_axes", "keras_variable_name", "prepare_state", "saved_names", "tied_pairs", "to_keras",
    ],
    "blip_core.training": ["IGNORE_INDEX", "caption_examples", "itm_examples", "read_captioned_folder", "vqa_examples"],
    "blip_core.processing": ["BlipProcessor"],
    "blip_core.demo": ["add_demo_arguments", "main", "run"],
    "blip_core.cli": ["main"],
    "blip_torch.training": ["ITC_TEMPERATURE", "batch_loss", "itm_loss", "itm_objective", "to_tensors", "train"],
    "blip_tf.training": ["ITC_TEMPERATURE", "batch_loss", "fit", "itm_loss", "itm_objective", "to_tensors", "train"],
    "blip_conversion.convert": [
        "ALL_FORMATS", "from_original", "load_config", "read_checkpoint", "to_bin", "to_h5", "to_keras",
        "to_safetensors",
    ],
    "blip_conversion.verify": ["Report", "verify"],
    "blip_conversion.cli": ["main"],
}  # fmt: skip


@pytest.mark.parametrize("module", sorted(PUBLIC_NAMES))
def test_public_names_import_from_where_they_did(module):
    loaded = importlib.import_module(module)
    missing = [name for name in PUBLIC_NAMES[module] if not hasattr(loaded, name)]
    assert not missing, f"{module} lost {missing}"
    if hasattr(loaded, "__all__"):
        assert set(PUBLIC_NAMES[module]) <= set(loaded.__all__)


@pytest.mark.parametrize("old", sorted(MOVED_MODULES), ids=lambda old: f"blip_core.{old}")  # not "hub": a marker name
def test_flat_module_paths_of_0_1_import_the_moved_module(old):
    new = importlib.import_module(f"blip_core.{MOVED_MODULES[old]}")
    sys.modules.pop(f"blip_core.{old}", None)
    with pytest.warns(DeprecationWarning, match=f"blip_core.{old} moved to blip_core.{MOVED_MODULES[old]}"):
        moved = importlib.import_module(f"blip_core.{old}")
    assert moved is new
    assert new.__spec__.name == new.__name__ == f"blip_core.{MOVED_MODULES[old]}"


def test_flat_paths_keep_class_identity_and_from_imports():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from blip_core.configuration import BlipConfig
        from blip_core.image_loading import load_image
    import blip_core

    assert BlipConfig is blip_core.BlipConfig
    assert load_image is importlib.import_module("blip_core.processing.image_loading").load_image
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("blip_core.no_such_module")


def documented_imports() -> list[tuple[str, str]]:
    """(file, statement) for every blip_* import line of the README and docs/, parenthesised ones joined."""
    found = []
    pattern = re.compile(r"^[ \t]*((?:from|import)[ \t]+blip_\w+[\w.]*[^\n(]*(?:\([^)]*\))?[^\n]*)", re.MULTILINE)
    for path in sorted([ROOT / "README.md", ROOT / "CONTRIBUTING.md", *(ROOT / "docs").glob("*.md")]):
        if not path.exists():
            continue
        for match in pattern.finditer(path.read_text()):
            statement = match.group(1).split("#")[0].strip()
            if " import " in statement or statement.startswith("import "):
                found.append((path.name, " ".join(statement.split())))
    return found


def test_every_import_in_the_docs_runs():
    statements = documented_imports()
    assert len(statements) > 20, "the README and docs/ should show their imports"
    code = "import warnings\nwarnings.simplefilter('error', DeprecationWarning)\nfailed = []\n"
    for source, statement in sorted(set(statements)):
        code += f"try:\n    {statement}\nexcept Exception as err:\n"
        code += f"    failed.append(({source!r}, {statement!r}, repr(err)))\n"
    code += "print('\\n'.join(map(str, failed)))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", "imports in the docs that fail (or use a 0.1 path):\n" + out.stdout


TREE_MOVES = {
    "blip_torch.models": ("BlipForConditionalGeneration", "blip_torch.captioning"),
    "blip_torch.text": ("BlipTextLayer", "blip_torch.text_layers"),
    "blip_torch.modeling_utils": ("Linear", "blip_torch.layers"),
    "blip_torch.generation": ("decoder_step", "blip_torch.decoding"),
    "blip_tf.models": ("TFBlipForQuestionAnswering", "blip_tf.question_answering"),
    "blip_tf.text": ("TFBlipTextSelfAttention", "blip_tf.text_layers"),
    "blip_tf.modeling_utils": ("attend", "blip_tf.layers"),
    "blip_tf.generation": ("set_row", "blip_tf.decoding"),
}


@pytest.mark.parametrize("old", sorted(TREE_MOVES))
def test_names_moved_within_a_tree_import_from_their_old_module(old):
    name, new = TREE_MOVES[old]
    with pytest.warns(DeprecationWarning, match=f"{old}.{name} moved to {new}.{name}"):
        moved = getattr(importlib.import_module(old), name)
    assert moved is getattr(importlib.import_module(new), name)
    with pytest.raises(AttributeError, match="no_such_name"):
        importlib.import_module(old).no_such_name  # noqa: B018


def test_a_pickle_naming_an_old_module_loads():
    """A whole model pickled (torch.save) before the split names its classes by their old modules."""
    import pickle

    from blip_torch.captioning import BlipForConditionalGeneration

    with pytest.warns(DeprecationWarning):
        assert pickle.loads(b"cblip_torch.models\nBlipForConditionalGeneration\n.") is BlipForConditionalGeneration
