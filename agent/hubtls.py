"""Whom the agent believes is the hub over https://: artifact downloads and the hub-key fetch.

The CA is the ``hub_ca_file`` setting, else the bootstrap bundle's CA (the hub's own, which issues
the certificate of ``edgefleet hub serve --tls``), else the system's trusted CAs. Certificate and
host name are always verified; there is no setting that turns that off. An http:// hub is plain
HTTP, as before (development).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

from edgefleet.agent.errors import SettingsError

_HOST_MISMATCH = (62, 64)  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
FIX = "set hub_ca_file (EDGEFLEET_AGENT_HUB_CA_FILE, --hub-ca-file) to the CA that issued the hub's certificate"


def hub_ca_file(configured: Path | None, bundle_ca: Path | None) -> Path | None:
    """The CA file for the hub (pure): the setting, else the installed bundle's CA, else None (the system's)."""
    return configured or bundle_ca


@dataclass(frozen=True)
class HubTrust:
    ca_file: Path | None = None
    context: ssl.SSLContext | None = field(default=None, compare=False)  # None: urllib's default, the system's CAs

    @classmethod
    def load(cls, ca_file: Path | None) -> HubTrust:
        """Read ``ca_file`` now, so a bad one stops the agent at start with its name."""
        if ca_file is None:
            return cls()
        try:
            return cls(ca_file, ssl.create_default_context(cafile=str(ca_file)))
        except FileNotFoundError:
            raise SettingsError(
                f"hub CA file {ca_file} does not exist (hub_ca_file, or the bootstrap bundle's)"
            ) from None
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise SettingsError(f"hub CA file {ca_file}: not a PEM CA certificate ({exc})") from None

    def describe(self) -> str:
        return f"the CA in {self.ca_file}" if self.ca_file else "the system's trusted CAs"

    def failure(self, exc: BaseException) -> str | None:
        """What to say when ``exc`` (from urllib) is the hub's certificate failing verification; None otherwise."""
        error = getattr(exc, "reason", exc)
        if not isinstance(error, ssl.SSLCertVerificationError):
            return None
        reason = error.verify_message or str(error)
        if error.verify_code in _HOST_MISMATCH:
            return f"the hub's certificate is not valid for this URL's host ({reason}); use a hub URL it names"
        return f"the hub's certificate does not verify against {self.describe()} ({reason}); {FIX}"
