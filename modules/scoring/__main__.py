"""``python -m edgefleet.modules.scoring``: see edgefleet.modules.scoring.server and ``--help``."""

import sys

from edgefleet.modules.scoring.server import main

sys.exit(main())
