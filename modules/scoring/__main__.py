"""``python -m modules.scoring``: see modules.scoring.server and ``--help``."""

import sys

from modules.scoring.server import main

sys.exit(main())
