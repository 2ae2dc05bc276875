"""Broker URLs, as hub, agents and bootstrap bundles write them.

``mqtt://HOST[:PORT]`` is plain MQTT (port 1883 by default): no encryption, and a broker that lets
anyone in unless it checks credentials. ``mqtts://HOST[:PORT]`` is MQTT over TLS (port 8883 by
default): the broker proves itself with a certificate, and the client with a client certificate or
a username and password (README, "Security"). ``tcp://`` and ``ssl://`` are accepted as synonyms.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

PLAIN_PORT = 1883
TLS_PORT = 8883
_SCHEMES = {"mqtt": False, "tcp": False, "mqtts": True, "ssl": True}


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def parse_broker_url(url: str) -> BrokerAddress:
    """The broker's host, port and whether it speaks TLS; ValueError names what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES or not parts.hostname:
        raise ValueError(f"broker URL {url!r}: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (TLS)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"broker URL {url!r}: the port is not a number") from None
    tls = _SCHEMES[parts.scheme]
    return BrokerAddress(parts.hostname, port or (TLS_PORT if tls else PLAIN_PORT), tls)
