"""`python -m blip_conversion` runs the `blip-convert` command."""

import sys

from blip_conversion.cli import main

sys.exit(main())
