"""The bootstrap bundle: everything a device needs to join the fleet, in one file.

``edgefleet device register DEV --out FILE`` writes it (mode 0600: it holds the device's private key
or password) and ``edgefleet-agent --bootstrap FILE`` reads it. Its parts:

- who the device is: ``deviceId`` (also the subject of its client certificate, or its username);
- where the fleet is: ``hubUrl`` (artifacts) and ``brokerUrl`` (``mqtts://`` for TLS);
- whom to believe: ``caCertificate`` (the hub's CA, which signed the broker's server certificate)
  and ``hubPublicKey`` (the ed25519 key every manifest must be signed with);
- how to prove itself to the broker: ``clientCertificate`` + ``clientKey`` (``auth: certificate``)
  or ``username`` + ``password`` (``auth: password``, for brokers without client certificates).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from edgefleet.protocol.models import WireModel
from edgefleet.protocol.topics import check_device_id

BUNDLE_FORMAT: Literal["edgefleet-bootstrap/1"] = "edgefleet-bootstrap/1"
AuthKind = Literal["certificate", "password"]


class BootstrapBundle(WireModel):
    format: Literal["edgefleet-bootstrap/1"] = BUNDLE_FORMAT
    device_id: str
    hub_url: str
    broker_url: str
    ca_certificate: str = Field(description="PEM: the hub's CA; verifies the broker's server certificate")
    hub_public_key: str = Field(description="base64 raw ed25519 key manifests are signed with")
    hub_key_id: str
    auth: AuthKind = "certificate"
    client_certificate: str | None = Field(default=None, description="PEM, subject CN = device id")
    client_key: str | None = Field(default=None, description="PEM private key of the client certificate")
    username: str | None = None
    password: str | None = None

    @field_validator("device_id")
    @classmethod
    def _device_id(cls, v: str) -> str:
        return check_device_id(v)

    def missing(self) -> list[str]:
        """The credential fields its ``auth`` needs that are empty (the hub's answer to a registration
        lacks ``clientKey``: the key never leaves the machine that made the signing request)."""
        needed = ("client_certificate", "client_key") if self.auth == "certificate" else ("username", "password")
        return [name for name in needed if not getattr(self, name)]

    def __repr__(self) -> str:  # never print the secrets, also not in a traceback or a log line
        return f"BootstrapBundle(device_id={self.device_id!r}, broker_url={self.broker_url!r}, auth={self.auth!r})"

    __str__ = __repr__
