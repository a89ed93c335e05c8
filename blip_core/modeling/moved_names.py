"""Names that moved between modules of a model tree keep importing from where they were, and old pickles (a whole
model saved with `torch.save`) keep loading: the old module's `__getattr__` fetches the name from its new module,
with a `DeprecationWarning` naming it."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any


def forward_moved_names(module_name: str, moved: dict[str, str]) -> Callable[[str], Any]:
    """A module-level `__getattr__` for `module_name` answering each name of `moved` (name -> its new module)."""

    def __getattr__(name: str) -> Any:
        if name not in moved:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        message = f"{module_name}.{name} moved to {moved[name]}.{name}; import it from there"
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(moved[name]), name)

    return __getattr__
