"""The `blip` command: one module per sub-command group, the shared parser and dispatch in `main`.

It is the top of `blip_core`: it may import every other sub-package; nothing imports it but the console
script (`blip = blip_core.cli:main`) and `python -m blip_core.cli`.
"""

from blip_core.cli.main import main

__all__ = ["main"]
