"""`python -m blip_core.cli`: the same as `blip`."""

import sys

from blip_core.cli.main import main

sys.exit(main())
