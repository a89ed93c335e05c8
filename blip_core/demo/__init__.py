"""`blip demo` and the demo models: synthetic scenes with known captions, questions and answers (`synthetic`),
the held-out set and its metrics (`tasks`), running the embedded models in one framework (`runs`), and the
side-by-side display (`show`, also `python -m blip_core.demo`). The trained models themselves are package
data under `blip_core/data/models/` (made by `scripts/train_demo.py`).

It imports `io`, `config`, `processing` and `training`, and the frameworks only lazily; `cli` imports it.
"""

from blip_core.demo.show import add_demo_arguments, main, run

__all__ = ["add_demo_arguments", "main", "run"]
