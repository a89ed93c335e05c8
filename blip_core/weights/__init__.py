"""The weight-name maps: expected parameters, ties, layouts and foreign renames."""

from blip_core.weights.aliases import TiedPair, is_ignored, saved_names, tied_pairs
from blip_core.weights.layouts import from_keras, keras_axes, keras_variable_name, to_keras
from blip_core.weights.names import MODEL_CLASSES, ParamSpec, expected_params
from blip_core.weights.state import CheckpointError, PreparedState, prepare_state

__all__ = [
    "MODEL_CLASSES",
    "CheckpointError",
    "ParamSpec",
    "PreparedState",
    "TiedPair",
    "expected_params",
    "from_keras",
    "is_ignored",
    "keras_axes",
    "keras_variable_name",
    "prepare_state",
    "saved_names",
    "tied_pairs",
    "to_keras",
]
