"""``python -m agent`` is the ``edgefleet-agent`` command."""

from edgefleet.agent.cli import main

raise SystemExit(main())
