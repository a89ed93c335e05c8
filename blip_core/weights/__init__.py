"""The weight-name maps, the one place that knows every parameter: the expected canonical names, kinds and
PyTorch-layout shapes per class and config (`names`), tied and tolerated keys (`aliases`), the only array
transposes between PyTorch and Keras layouts (`layouts`), foreign names (TF `tf_model.h5`, original BLIP) as
tables (`renames`), and matching a checkpoint to a class (`state`: prefixes, ties, one validation error).

Pure NumPy and names: it imports nothing else of `blip_core`; `checkpoints`, `modeling`, the trees and
`blip_conversion` import it.
"""

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
