"""How the hub reaches the broker: ``mqtt://host:port`` (plain) or ``mqtts://host:port`` (TLS), and who it is."""

from __future__ import annotations

from dataclasses import dataclass

from edgefleet.hub.errors import SettingsError
from edgefleet.hub.server.ca import TlsFiles
from edgefleet.protocol.brokers import BrokerAddress
from edgefleet.protocol.brokers import parse_broker_url as _parse


def parse_broker_url(url: str) -> BrokerAddress:
    try:
        return _parse(url)
    except ValueError as exc:
        raise SettingsError(f"{exc} (hub setting broker_url, --broker or EDGEFLEET_HUB_BROKER_URL)") from None


@dataclass(frozen=True)
class MqttConnection:
    """The broker's address and the hub's identity there: a client certificate (``tls.cert_file``),
    a username and password, or nothing (an anonymous broker: development only)."""

    url: str
    address: BrokerAddress
    tls: TlsFiles | None = None
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:  # the password never reaches a log line
        return f"MqttConnection(url={self.url!r}, tls={self.tls is not None}, username={self.username!r})"

    @property
    def identity(self) -> str:
        if self.tls is not None and self.tls.cert_file is not None:
            return f"client certificate {self.tls.cert_file}"
        if self.username:
            return f"username {self.username}"
        return "no identity (anonymous)"
