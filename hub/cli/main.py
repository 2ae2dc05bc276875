"""``edgefleet``: the operator's command line (talks to the hub's REST API only).

    edgefleet demo
    edgefleet hub serve|broker-config|ca|info|rotate-key
    edgefleet hub token create|list|revoke      (on the hub machine, in its database)
    edgefleet login
    edgefleet token create|list|revoke          (through the API, admin role)
    edgefleet model register|list|show|download|delete|deploy
    edgefleet service list|show|update|score|logs|keys|delete
    edgefleet device register|label|revoke|delete|list|show|ping|restart-module|logs

Commands that call the hub need an operator token: ``--token``, else ``EDGEFLEET_TOKEN``, else the
config file ``edgefleet login`` writes (config.py); an https:// hub with its own CA needs
``--ca-file`` (``edgefleet hub ca`` writes the CA on the hub machine).

Progress goes to stderr, results to stdout (``--output json`` for scripts). User errors are one
line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from edgefleet.hub import __version__
from edgefleet.hub.cli import devices, local, models, services, tokens
from edgefleet.hub.cli.command import Context, say
from edgefleet.hub.cli.config import DEFAULT_HUB
from edgefleet.hub.cli.output import FORMATS, render
from edgefleet.hub.errors import HubError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgefleet", description="Deploy ML models to fleets of edge devices.")
    p.add_argument("--version", action="version", version=f"edgefleet {__version__}")
    p.add_argument("--hub", help=f"hub URL (else EDGEFLEET_HUB, else the config file, else {DEFAULT_HUB})")
    p.add_argument(
        "--token",
        help="operator token (else EDGEFLEET_TOKEN, else the config file); others on this machine can see a "
        "command line, so prefer those",
    )
    p.add_argument(
        "--ca-file",
        help="CA certificate (PEM) an https:// hub's certificate must chain to, e.g. from `edgefleet hub ca` (else "
        "EDGEFLEET_CA_FILE, else the config file; default: the public CAs)",
    )
    p.add_argument(
        "--allow-plain-http",
        action="store_true",
        help="send the token to an http:// hub beyond this machine, in clear (else EDGEFLEET_ALLOW_PLAIN_HTTP=1)",
    )
    p.add_argument("-o", "--output", choices=FORMATS, default="table", help="output format")
    groups = p.add_subparsers(dest="group", metavar="COMMAND", required=True)
    for commands in (local, tokens, models, services, devices):
        commands.add_commands(groups)
    return p


def _error(exc: HubError) -> None:
    """``error: <first line>``, further lines (one per config problem, say) indented beneath it."""
    lines = str(exc).splitlines() or [type(exc).__name__]
    say(f"error: {lines[0]}")
    for line in lines[1:]:
        say(f"       {line}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ctx = Context(args)
    try:
        outcome = args.handler(ctx)
        if isinstance(outcome, int):
            return outcome
        print(render(outcome, args.output))
        return outcome.status
    except HubError as exc:
        _error(exc)
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        ctx.close()


if __name__ == "__main__":
    sys.exit(main())
