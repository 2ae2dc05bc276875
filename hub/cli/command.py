"""What every command shares: its context (arguments, the hub client), registration, progress lines.

A handler takes the Context and returns a Result (printed in the chosen format by main) or, for
commands that print nothing of their own (``hub serve``, ``demo``), just an exit status.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from edgefleet.hub.cli.output import FORMATS, Result
from edgefleet.hub.client import HubClient

Handler = Callable[["Context"], "Result[Any] | int"]


class Context:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._client: HubClient | None = None

    @property
    def client(self) -> HubClient:
        """Opened on first use, so commands that never call the hub never need one."""
        if self._client is None:
            self._client = HubClient(self.args.hub)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def say(line: str) -> None:
    """A progress line: stderr, so stdout holds only the result."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def add_command(sub: Any, name: str, handler: Handler, help_: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_, description=help_)
    parser.set_defaults(handler=handler)
    # also accepted after the command (`edgefleet service show x -o json`); SUPPRESS keeps the global value
    parser.add_argument("-o", "--output", choices=FORMATS, default=argparse.SUPPRESS, help="output format")
    return parser


def add_group(groups: Any, name: str, help_: str) -> Any:
    """A command group (`model`, `service`, ...) whose subcommands are required."""
    return groups.add_parser(name, help=help_).add_subparsers(dest="cmd", metavar="CMD", required=True)
