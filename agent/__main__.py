"""``python -m agent`` is the ``edgefleet-agent`` command."""

from agent.cli import main

raise SystemExit(main())
