"""`python -m blip_core.demo`: the same as `blip demo`."""

import sys

from blip_core.demo.show import main

sys.exit(main())
