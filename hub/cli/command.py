"""What every command shares: its context (arguments, the hub and token, the client), registration, progress lines.

A handler takes the Context and returns a Result (printed in the chosen format by main) or, for
commands that print nothing of their own (``hub serve``, ``demo``), just an exit status.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from edgefleet.hub.cli.config import (
    Connection,
    allows_plain_http,
    config_path,
    load_config,
    missing_token,
    plain_http_refusal,
    resolve,
)
from edgefleet.hub.cli.output import FORMATS, Result
from edgefleet.hub.client import HubClient
from edgefleet.hub.errors import ClientError

Handler = Callable[["Context"], "Result[Any] | int"]


class Context:
    def __init__(self, args: argparse.Namespace, env: Mapping[str, str] | None = None) -> None:
        self.args = args
        self.env = os.environ if env is None else env
        self._connection: Connection | None = None
        self._client: HubClient | None = None

    @property
    def config_path(self) -> Path:
        return config_path(self.env)

    @property
    def connection(self) -> Connection:
        """The hub and token (flags, environment, config file), read on first use."""
        if self._connection is None:
            config = load_config(self.config_path)
            a = self.args
            self._connection = resolve(
                getattr(a, "hub", None), getattr(a, "token", None), self.env, config, getattr(a, "ca_file", None)
            )
        return self._connection

    def open_client(self, hub: str, token: str) -> HubClient:
        """A client for ``hub`` sending ``token``, trusting the connection's CA; refused over plain HTTP
        beyond loopback unless the user allowed it."""
        refusal = plain_http_refusal(hub, allows_plain_http(getattr(self.args, "allow_plain_http", False), self.env))
        if refusal:
            raise ClientError(refusal)
        return HubClient(hub, token, ca_file=self.connection.ca_file)

    @property
    def client(self) -> HubClient:
        """Opened on first use, so commands that never call the hub need neither a hub nor a token."""
        if self._client is None:
            connection = self.connection
            if not connection.token:
                raise ClientError(missing_token(connection, self.config_path))
            self._client = self.open_client(connection.hub, connection.token)
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
