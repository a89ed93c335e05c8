"""A checkpoint seen as one class's parameters: prefix selection, ties, one validation.

Both model trees load through `prepare_state`: it decides which file tensor
feeds which parameter, which tied aliases stay tied, and raises a single
`CheckpointError` listing every missing, unexpected and mis-shaped tensor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blip_core.weights.aliases import TiedPair, is_ignored, tied_pairs
from blip_core.weights.names import EMBEDDED_PREFIXES, ParamSpec, expected_params


class CheckpointError(ValueError):
    """A checkpoint that does not fit a model; the message lists every problem."""


@dataclass
class PreparedState:
    """What to assign: canonical names (torch layout) read from `source` under `prefix`."""

    source: Any
    class_name: str
    specs: dict[str, ParamSpec]
    prefix: str
    tied: list[TiedPair] = field(default_factory=list)  # aliases that share their source
    untied: frozenset[str] = frozenset()  # aliases the file holds with their own values

    @property
    def names(self) -> list[str]:
        """Parameters to read from the file (tied aliases excluded)."""
        tied = {pair.alias for pair in self.tied}
        return [name for name in self.specs if name not in tied]

    def get(self, name: str) -> np.ndarray:
        """A fresh, writeable array the caller may keep."""
        return self.source.get(self.prefix + name)

    def lend(self, name: str) -> np.ndarray:
        """A possibly memory-mapped view, for a caller that copies it at once (see `SafetensorsFile.lend`)."""
        lender = getattr(self.source, "lend", None)
        return lender(self.prefix + name) if lender is not None else self.get(name)


def _choose_prefix(file_names: set[str], expected: list[str], class_name: str) -> str:
    """The prefix under which the file holds this class (a vision tower inside a captioner...)."""
    best, best_hits = "", sum(name in file_names for name in expected)
    base = class_name[2:] if class_name.startswith("TFBlip") else class_name
    for prefix in EMBEDDED_PREFIXES.get(base, ()):
        hits = sum(prefix + name in file_names for name in expected)
        if hits > best_hits:
            best, best_hits = prefix, hits
    return best


def _format_problems(problems: dict[str, list[str]]) -> str:
    lines = []
    for title, items in problems.items():
        if items:
            lines.append(f"  {title} ({len(items)}):")
            lines.extend(f"    {item}" for item in items)
    return "\n".join(lines)


def prepare_state(source: Any, class_name: str, config: Any, hint: str = "", **options: Any) -> PreparedState:
    """Match a tensor source to `class_name` built from `config`, or raise `CheckpointError`."""
    specs = {spec.name: spec for spec in expected_params(class_name, config, **options)}
    all_names = [name for name in source.keys() if not is_ignored(name)]
    prefix = _choose_prefix(set(all_names), list(specs), class_name)
    in_file = {name[len(prefix) :] for name in all_names if name.startswith(prefix)}
    tied, untied = [], set()
    for pair in tied_pairs(class_name, config):
        if pair.alias not in in_file:
            tied.append(pair)
        elif pair.source in in_file and np.array_equal(
            source.get(prefix + pair.alias), source.get(prefix + pair.source)
        ):
            tied.append(pair)
        else:
            untied.add(pair.alias)
    tied_aliases = {pair.alias for pair in tied}
    missing = [name for name in specs if name not in in_file and name not in tied_aliases]
    unexpected = sorted(name for name in in_file if name not in specs)
    wrong_shape = [
        f"{name}: file {tuple(source.shape(prefix + name))}, model {specs[name].shape}"
        for name in specs
        if name in in_file and tuple(source.shape(prefix + name)) != specs[name].shape
    ]
    if missing or unexpected or wrong_shape:
        where = f" (read under the prefix {prefix!r})" if prefix else ""
        raise CheckpointError(  # the hint (what the checkpoint is) first: it is what the reader needs
            f"checkpoint {source.path} does not fit {class_name}{where}"
            + (f": {hint}" if hint else "")
            + "\n"
            + _format_problems({"missing": missing, "unexpected": unexpected, "wrong shape": wrong_shape})
        )
    return PreparedState(source, class_name, specs, prefix, tied, frozenset(untied))
