"""Which hub the CLI talks to, with which token, trusting which CA: ``--hub``/``--token``/``--ca-file``,
else ``EDGEFLEET_HUB``/``EDGEFLEET_TOKEN``/``EDGEFLEET_CA_FILE``, else the config file, else the
default hub (no token; the public CAs).

The config file is ``$EDGEFLEET_CONFIG``, else ``$XDG_CONFIG_HOME/edgefleet/config.toml``, else
``~/.config/edgefleet/config.toml``, with the keys ``hub``, ``token`` and ``ca_file``; ``edgefleet
login`` writes it readable by its owner only. A token (and CA) from the file goes only to the hub
the file names, so ``--hub`` pointing elsewhere never sends it to a stranger.

A token is not sent over plain http:// to a hub beyond this machine's loopback unless the user says
so (``--allow-plain-http``, ``EDGEFLEET_ALLOW_PLAIN_HTTP=1``): anyone on the network would read it.
``resolve`` and ``plain_http_refusal`` are pure; reading and writing the file are the functions
below them.
"""

from __future__ import annotations

import ipaddress
import json
import os
import stat
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import tomllib

from edgefleet.hub.errors import ClientError

DEFAULT_HUB = "http://127.0.0.1:8080"
KEYS = ("hub", "token", "ca_file")
HUB_ENV, TOKEN_ENV, CONFIG_ENV = "EDGEFLEET_HUB", "EDGEFLEET_TOKEN", "EDGEFLEET_CONFIG"
CA_ENV, PLAIN_HTTP_ENV = "EDGEFLEET_CA_FILE", "EDGEFLEET_ALLOW_PLAIN_HTTP"


@dataclass(frozen=True)
class Config:
    path: Path
    hub: str | None = None
    token: str | None = None
    ca_file: str | None = None


@dataclass(frozen=True)
class Connection:
    hub: str
    token: str | None
    withheld_for: str | None = None  # the config file's token was not used: it is for this other hub
    ca_file: str | None = None  # the CA an https:// hub's certificate must chain to; None: the public CAs


def config_path(env: Mapping[str, str]) -> Path:
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser()
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "edgefleet" / "config.toml"


def _same_hub(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def resolve(
    flag_hub: str | None,
    flag_token: str | None,
    env: Mapping[str, str],
    config: Config,
    flag_ca_file: str | None = None,
) -> Connection:
    hub = flag_hub or env.get(HUB_ENV) or config.hub or DEFAULT_HUB
    for_this_hub = config.hub is None or _same_hub(config.hub, hub)
    ca_file = flag_ca_file or env.get(CA_ENV) or (config.ca_file if for_this_hub else None)
    token = flag_token or env.get(TOKEN_ENV)
    if token:
        return Connection(hub, token, ca_file=ca_file)
    if config.token and for_this_hub:
        return Connection(hub, config.token, ca_file=ca_file)
    return Connection(hub, None, withheld_for=config.hub if config.token else None, ca_file=ca_file)


def _loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plain_http_refusal(hub: str, allowed: bool) -> str | None:
    """Why a token must not go to ``hub``: plain http:// beyond this machine, not allowed explicitly. None: it may."""
    parts = urlsplit(hub)
    if allowed or parts.scheme != "http" or _loopback(parts.hostname or ""):
        return None
    return (
        f"the hub at {hub} is plain HTTP: the token would cross the network in clear, for anyone on the way to take; "
        f"serve the hub over HTTPS (`edgefleet hub serve --tls`) and use https://{parts.netloc}, or, on a network "
        f"you trust, say so with --allow-plain-http ({PLAIN_HTTP_ENV}=1)"
    )


def allows_plain_http(flag: bool, env: Mapping[str, str]) -> bool:
    return flag or env.get(PLAIN_HTTP_ENV, "").strip().lower() in ("1", "true", "yes")


def missing_token(connection: Connection, path: Path) -> str:
    """The one-line error for a command that needs a token and has none."""
    message = (
        f"no token for the hub at {connection.hub}: give --token TOKEN, set {TOKEN_ENV}, or run "
        f"`edgefleet login --hub {connection.hub}` (it writes {path})"
    )
    if connection.withheld_for:
        message += f"; the token in {path} is for {connection.withheld_for}"
    return message


def load_config(path: Path) -> Config:
    """The config file's values (none when there is no file); ClientError naming the file and key."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Config(path)
    except OSError as exc:
        raise ClientError(f"{path}: cannot read the edgefleet config file: {exc.strerror or exc}") from None
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ClientError(f"{path}: not valid TOML: {exc}") from None
    for key, value in values.items():
        if key not in KEYS:
            raise ClientError(f"{path}: {key}: unknown key (the config file knows {', '.join(KEYS)})")
        if not isinstance(value, str):
            raise ClientError(f"{path}: {key}: expected a string")
    if values.get("token"):
        _warn_if_readable_by_others(path)
    return Config(
        path, hub=values.get("hub") or None, token=values.get("token") or None, ca_file=values.get("ca_file") or None
    )


def _warn_if_readable_by_others(path: Path) -> None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return
    if mode & 0o077:
        sys.stderr.write(
            f"warning: {path} holds a token and is readable by others (mode {mode:04o}); run `chmod 600 {path}`\n"
        )


def write_config(path: Path, hub: str, token: str, ca_file: str | None = None) -> None:
    """Write ``hub``, ``token`` and ``ca_file``, readable by the owner only (0600), replacing the file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    values = [("hub", hub), ("token", token)] + ([("ca_file", ca_file)] if ca_file else [])
    # JSON strings are valid TOML basic strings (both escape with backslashes and \\uXXXX)
    text = "".join(f"{key} = {json.dumps(value)}\n" for key, value in values)
    fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".toml", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
