"""The two trees mirror each other: same files, twin classes in the same order, same signatures (read with ast)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TORCH, TF = ROOT / "blip_torch", ROOT / "blip_tf"

# Methods one framework needs and the other cannot have, each with its reason.
FRAMEWORK_ONLY = {
    ("BlipPreTrainedModel", "device"): "torch: modules live on a device; TF places ops itself",
    ("BlipPreTrainedModel", "gradient_checkpointing_enable"): "torch: activation checkpointing API",
    ("BlipPreTrainedModel", "gradient_checkpointing_disable"): "torch: activation checkpointing API",
    ("BlipPreTrainedModel", "_init_module"): "torch: init walks modules; Keras layers get initializers",
    ("BlipVisionEmbeddings", "init_own_weights"): "torch: init walks modules; Keras layers get initializers",
    ("TFBlipPreTrainedModel", "build_model"): "Keras: variables are created by build",
    ("TFBlipPreTrainedModel", "owner_of"): "Keras: the loader finds variables by walking attributes",
    ("TFBlipPreTrainedModel", "variable"): "Keras: the loader finds variables by walking attributes",
    ("TFDecoding", "carry"): "XLA: loop state travels as tensors",
    ("TFDecoding", "restore"): "XLA: loop state travels as tensors",
    ("BlipModel", "post_init"): "torch: logit_scale is set after module init; Keras builds it with its value",
    ("TFLinear", "__init__"): "torch's Linear inherits nn.Linear(in_features, out_features, bias), the same parameters",
    ("BlipPreTrainedModel", "from_pretrained"): "API.md: torch takes torch_dtype/device/device_map, TF takes dtype",
    ("TFBlipModel", "model_loss"): "Keras: the loss `fit` trains on; torch users write their own loop",
    ("TFBlipForImageTextRetrieval", "model_loss"): "Keras: `fit` trains on the ITM + ITC objective of y's labels",
}
# Files one tree needs and the other cannot have, each with its reason.
FRAMEWORK_ONLY_FILES = {
    "keras_model.py": "Keras: what `fit`/`predict`/`save`/`get_config` need of a keras.Model; nn.Module has no twin",
    "_xla_cache.py": "TF: XLA programs cached across processes (TF_XLA_FLAGS); PyTorch runs eagerly, nothing to cache",
    "compiled_decoding.py": "torch: the decoding step under torch.compile (a fixed-capacity cache, one graph for all "
    "tokens); TF's generate is always one compiled XLA loop (generation.py)",
    "distribution.py": "TF: the tf.distribute strategy (MirroredStrategy over GPUs or logical CPUs, "
    "MultiWorkerMirroredStrategy from TF_CONFIG); torch's workers come from torchrun's environment (finetuning.py)",
    "export.py": "torch: tensor-only graph modules for torch.export, ONNX, ExecuTorch and AOTInductor; TensorFlow's "
    "deployment format is the SavedModel of `export_for_serving` (generation.py), which compiles the whole loop",
}
# Classes one tree needs and the other cannot have, each with its reason.
FRAMEWORK_ONLY_CLASSES = {
    "Int8Linear": "torch: an int8 module replaces each quantized Linear (modules swap freely); a built Keras layer "
    "cannot be swapped without losing its tracking, so a TFLinear switches to int8 weights in place "
    "(blip_tf.quantization.quantize_layer, the same numbers)",
}
IGNORED_PARAMETERS = {"self", "cls", "training", "kwargs"}


def classes(path: Path) -> dict[str, ast.ClassDef]:
    tree = ast.parse(path.read_text())
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef) and not node.name.startswith("_")}


def methods(node: ast.ClassDef) -> dict[str, list[str]]:
    found = {}
    for item in node.body:
        if isinstance(item, ast.FunctionDef) and (
            not item.name.startswith("_") or item.name in ("__init__", "_init_module")
        ):
            arguments = item.args.posonlyargs + item.args.args + item.args.kwonlyargs
            found[item.name] = [a.arg for a in arguments if a.arg not in IGNORED_PARAMETERS]
    return found


def twin_name(name: str) -> str:
    return "TF" + name if not name.startswith("TF") else name


def test_same_files():
    torch_files = {p.name for p in TORCH.glob("*.py")}
    tf_files = {p.name for p in TF.glob("*.py")}
    assert torch_files ^ tf_files == set(FRAMEWORK_ONLY_FILES)


@pytest.mark.parametrize(
    "stem", sorted(p.stem for p in TORCH.glob("*.py") if p.stem != "__init__" and p.name not in FRAMEWORK_ONLY_FILES)
)
def test_twin_classes_in_order(stem):
    torch_classes = [name for name in classes(TORCH / f"{stem}.py") if name not in FRAMEWORK_ONLY_CLASSES]
    tf_classes = [name for name in classes(TF / f"{stem}.py") if name not in FRAMEWORK_ONLY_CLASSES]
    assert [twin_name(name) for name in torch_classes] == tf_classes


@pytest.mark.parametrize(
    "stem", sorted(p.stem for p in TORCH.glob("*.py") if p.stem != "__init__" and p.name not in FRAMEWORK_ONLY_FILES)
)
def test_twin_signatures(stem):
    torch_classes, tf_classes = classes(TORCH / f"{stem}.py"), classes(TF / f"{stem}.py")
    problems = []
    for name, node in torch_classes.items():
        if name in FRAMEWORK_ONLY_CLASSES:
            continue
        twin = tf_classes[twin_name(name)]
        torch_methods, tf_methods = methods(node), methods(twin)
        torch_methods = {("call" if m == "forward" else m): params for m, params in torch_methods.items()}
        for method in sorted(set(torch_methods) | set(tf_methods)):
            if (name, method) in FRAMEWORK_ONLY or (twin.name, method) in FRAMEWORK_ONLY:
                continue
            if method not in torch_methods or method not in tf_methods:
                if method != "build":  # Keras' build has no PyTorch counterpart
                    problems.append(f"{name}.{method}: only in {'TF' if method in tf_methods else 'torch'}")
                continue
            if torch_methods[method] != tf_methods[method]:
                problems.append(f"{name}.{method}: torch {torch_methods[method]} vs TF {tf_methods[method]}")
    assert not problems, "\n".join(problems)


def test_framework_only_classes_are_real():
    everywhere = [classes(path) for path in list(TORCH.glob("*.py")) + list(TF.glob("*.py"))]
    for class_name, reason in FRAMEWORK_ONLY_CLASSES.items():
        assert any(class_name in found for found in everywhere), f"stale FRAMEWORK_ONLY_CLASSES entry ({reason})"


def test_framework_only_entries_are_real():
    for (class_name, method), reason in FRAMEWORK_ONLY.items():
        found = any(
            class_name in classes(path) and method in methods(classes(path)[class_name])
            for path in list(TORCH.glob("*.py")) + list(TF.glob("*.py"))
        )
        assert found, f"stale FRAMEWORK_ONLY entry {class_name}.{method} ({reason})"
