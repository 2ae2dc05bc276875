"""``python -m hub`` is the ``edgefleet`` command (handy where the console script is not on PATH)."""

import sys

from edgefleet.hub.cli.main import main

sys.exit(main())
