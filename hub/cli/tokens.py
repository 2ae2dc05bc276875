"""``edgefleet token list|create|revoke`` (through the API, with an admin token), ``login`` and ``whoami``.

The first admin token cannot come from the API: ``edgefleet hub token ...`` (local.py) makes it on
the hub machine, straight in the hub's database. A token is printed once, when it is created: as
the only line on stdout in the readable form (so ``TOKEN=$(edgefleet token create ...)`` works),
or inside the JSON with ``-o json``; every other command shows ids and names only.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgefleet.hub.cli.command import Context, add_command, add_group, say
from edgefleet.hub.cli.config import write_config
from edgefleet.hub.cli.output import Result
from edgefleet.hub.cli.tables import token_line, token_table
from edgefleet.hub.errors import ClientError
from edgefleet.hub.schemas import Role, TokenCreate, TokenCreated, TokenView

ROLES = [r.value for r in Role]


def token_request(name: str, role: str, expires_in_days: float | None) -> TokenCreate:
    """The request, checked here for the local command (the API checks the same schema)."""
    try:
        return TokenCreate(name=name, role=Role(role), expires_in_days=expires_in_days)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["loc"][0] == "name":
            raise ClientError(
                f"--name {name!r}: use letters, digits and . _ @ - (at most 64, starting with a letter or digit)"
            ) from None
        raise ClientError(f"--expires-in {expires_in_days:g}: {first['msg']}") from None


def created(token: TokenCreated, where: str) -> Result[TokenCreated]:
    say(f"created {token_line(token)} {where}")
    say("this is the only time the token is shown (the hub keeps only its hash): store it now")
    return Result(token, lambda t: t.token)


def list_(ctx: Context) -> Result[list[TokenView]]:
    return Result(ctx.client.list_tokens(), token_table)


def create(ctx: Context) -> Result[TokenCreated]:
    a = ctx.args
    token = ctx.client.create_token(a.name, a.role, a.expires_in)
    return created(token, f"on {ctx.client.base_url}")


def revoke(ctx: Context) -> Result[TokenView]:
    token = ctx.client.revoke_token(ctx.args.token_ref)
    return Result(token, lambda t: f"revoked {token_line(t)}; it no longer works")


def whoami(ctx: Context) -> Result[TokenView]:
    return Result(ctx.client.whoami(), lambda t: f"{ctx.client.base_url}: {token_line(t)}")


def _read_token() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("token: ").strip()
    return sys.stdin.readline().strip()


def login(ctx: Context) -> Result[TokenView]:
    """Check the token against the hub, then keep hub, token and CA file in the config file (0600)."""
    hub = ctx.connection.hub
    ca_file = ctx.connection.ca_file
    token = ctx.args.token or _read_token()
    if not token:
        raise ClientError("no token given: pass --token TOKEN, or type or pipe it in")
    with ctx.open_client(hub, token) as client:
        me = client.whoami()
    path = ctx.config_path
    stored_ca = str(Path(ca_file).expanduser().resolve()) if ca_file else None  # later commands run anywhere
    write_config(path, hub, token, stored_ca)
    say(f"wrote {path} (readable by you only)" + (f", trusting the CA in {stored_ca}" if stored_ca else ""))
    return Result(me, lambda t: f"logged in to {hub} with {token_line(t)}")


def add_expiry_and_role(parser: Any) -> None:
    parser.add_argument(
        "--role", required=True, choices=ROLES, help="read < deploy < admin; each includes the ones before"
    )
    parser.add_argument("--name", required=True, help="who or what uses it, e.g. ci-reader (unique among live tokens)")
    parser.add_argument("--expires-in", type=float, metavar="DAYS", help="default: never expires")


def add_commands(groups: Any) -> None:
    tok = add_group(groups, "token", "operator tokens, through the hub's API (needs an admin token)")
    add_command(tok, "list", list_, "list tokens: ids, names, roles, state (never the tokens themselves)")
    s = add_command(tok, "create", create, "create a token and print it, this once")
    add_expiry_and_role(s)
    s = add_command(tok, "revoke", revoke, "revoke a token; it stops working at once")
    s.add_argument("token_ref", metavar="ID|NAME", help="the token's id, or the name of a live token")

    add_command(groups, "whoami", whoami, "show the token the CLI uses (its id, name and role) as the hub sees it")
    s = add_command(groups, "login", login, "check a token against the hub and keep both in the config file")
    # SUPPRESS: `edgefleet --hub URL login` and `edgefleet login --hub URL` both work
    s.add_argument("--hub", default=argparse.SUPPRESS, help="hub URL (default: as for every command)")
    s.add_argument("--token", default=argparse.SUPPRESS, help="the token (default: read from the terminal or stdin)")
    s.add_argument(
        "--ca-file", default=argparse.SUPPRESS, help="the hub's CA certificate (PEM), kept in the config file too"
    )
