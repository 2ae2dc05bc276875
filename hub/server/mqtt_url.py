"""Broker URLs: ``mqtt://host:port`` (port 1883 by default)."""

from __future__ import annotations

from urllib.parse import urlsplit

from edgefleet.hub.errors import SettingsError


def parse_broker_url(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "mqtt" or not parts.hostname:
        raise SettingsError(f"broker URL {url!r}: expected mqtt://HOST[:PORT] (TLS brokers are not supported yet)")
    try:
        port = parts.port or 1883
    except ValueError:
        raise SettingsError(f"broker URL {url!r}: the port is not a number") from None
    return parts.hostname, port
