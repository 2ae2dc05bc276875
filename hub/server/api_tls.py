"""The hub API over HTTPS: which certificate it serves, and the warning when it serves none.

- ``hub serve --tls``: a server certificate from the hub's own CA (the CA every bootstrap bundle
  carries, so devices verify it with nothing more), in ``<data-dir>/identity/api.pem`` and
  ``api.key`` (0600), for the names ``--server-name`` gives (default: localhost, 127.0.0.1, the
  listen address if it is an IP, and the public URL's host). Issued again when those names change,
  30 days before it expires, or when it is not from this CA.
- ``hub serve --tls-cert FILE --tls-key FILE``: the operator's own certificate (a public CA's, say),
  served as it is; checked here so a bad file is one line at start, not a traceback from uvicorn.

Without TLS, operator tokens, download grants and artifacts cross the network in clear: fine on
loopback (development), warned about on any other address (``plain_http_warning``).

The decisions are pure (``default_server_names``, ``reissue_reason``, ``covers``,
``plain_http_warning``, ``check_settings``); ``served_certificate`` reads and writes the files.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509

from edgefleet.hub.errors import SettingsError
from edgefleet.hub.server import pki
from edgefleet.hub.server.ca import RENEW_BEFORE, CertificateAuthority
from edgefleet.hub.server.settings import HubSettings
from edgefleet.protocol.files import write_atomic
from edgefleet.protocol.models import utcnow

log = logging.getLogger(__name__)

_ANY_ADDRESS = ("", "0.0.0.0", "::")


@dataclass(frozen=True)
class ServedCertificate:
    """What uvicorn serves the API with."""

    cert_file: Path
    key_file: Path
    names: tuple[str, ...]  # the names it is valid for
    from_hub_ca: bool  # False: the operator's own (--tls-cert)


# decisions (pure) ------------------------------------------------------------------------------
def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only: ``localhost`` or a loopback address."""
    if host.lower().rstrip(".") == "localhost":
        return True
    ip = _ip(host)
    return ip is not None and ip.is_loopback


def _normal(name: str) -> str:
    ip = _ip(name)
    return str(ip) if ip is not None else name.lower().rstrip(".")


def default_server_names(host: str, public_url: str | None) -> tuple[str, ...]:
    """localhost, 127.0.0.1, the listen address if it is an IP, and the public URL's host."""
    names = ["localhost", "127.0.0.1"]
    if host not in _ANY_ADDRESS and _ip(host) is not None:
        names.append(host)
    public_host = urlsplit(public_url).hostname if public_url else None
    if public_host:
        names.append(public_host)
    return _unique(names)


def _unique(names: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, str] = {}
    for name in names:
        seen.setdefault(_normal(name), name)
    return tuple(seen.values())


def covers(names: Sequence[str], host: str) -> bool:
    """Whether a certificate for ``names`` is valid for ``host`` (a ``*.`` name covers one label)."""
    wanted = _normal(host)
    for name in map(_normal, names):
        if name == wanted:
            return True
        wildcard = name.startswith("*.") and _ip(wanted) is None and "." in wanted
        if wildcard and wanted.split(".", 1)[1] == name[2:]:
            return True
    return False


def reissue_reason(
    cert: x509.Certificate | None, from_this_ca: bool, names: Sequence[str], now: datetime
) -> str | None:
    """Why the hub CA's certificate for the API must be issued (again), or None: it serves as it is."""
    if cert is None:
        return "none was issued yet"
    if not from_this_ca:
        return "it is not from this hub's CA"
    if {_normal(n) for n in pki.alt_names(cert)} != {_normal(n) for n in names}:
        return f"its names {', '.join(pki.alt_names(cert))} are not {', '.join(names)}"
    if cert.not_valid_after_utc - RENEW_BEFORE <= now:
        return f"it expires {cert.not_valid_after_utc:%Y-%m-%d}"
    return None


def check_settings(settings: HubSettings) -> None:
    """SettingsError for TLS settings that cannot work together."""
    s = settings
    if (s.tls_cert_file is None) != (s.tls_key_file is None):
        raise SettingsError(
            "give both --tls-cert and --tls-key (EDGEFLEET_HUB_TLS_CERT_FILE / _TLS_KEY_FILE), or neither"
        )
    if s.tls_cert_file is not None and s.server_names:
        raise SettingsError(
            "--server-name names what the hub's CA issues for --tls; with --tls-cert the names are the certificate's own"
        )
    if s.server_names and not s.api_tls:
        raise SettingsError("--server-name is for the API's certificate: give --tls as well")
    if s.api_tls and s.public_url and urlsplit(s.public_url).scheme != "https":
        raise SettingsError(
            f"--public-url {s.public_url} is not https://, but the hub serves HTTPS: devices would fetch artifacts "
            "from a URL that cannot work; give the https:// URL devices reach"
        )


def plain_http_warning(settings: HubSettings) -> str | None:
    """The warning for an API served in clear beyond this machine; None on loopback or with TLS."""
    if settings.api_tls or is_loopback(settings.host):
        return None
    return (
        f"hub API on http://{settings.host or '0.0.0.0'}:{settings.port} without TLS: operator tokens (Authorization "
        "headers), device download grants and the artifacts themselves cross the network in clear, so anyone who can "
        "see the traffic can take an operator token; serve HTTPS with `edgefleet hub serve --tls` (README, Security)"
    )


# files -----------------------------------------------------------------------------------------
def served_certificate(
    settings: HubSettings, ca: CertificateAuthority, now: datetime | None = None
) -> ServedCertificate | None:
    """The certificate the API serves (issued by the hub CA now if needed), or None for plain HTTP."""
    check_settings(settings)
    if not settings.api_tls:
        return None
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        return _operator_certificate(settings, settings.tls_cert_file, settings.tls_key_file, now or utcnow())
    return _hub_ca_certificate(settings, ca, now or utcnow())


def _hub_ca_certificate(settings: HubSettings, ca: CertificateAuthority, now: datetime) -> ServedCertificate:
    names = _unique(settings.server_names or default_server_names(settings.host, settings.public_url))
    cert_path, key_path = settings.api_cert_path, settings.api_key_path
    cert = None
    if cert_path.exists() and key_path.exists():
        try:
            cert = pki.load_cert(cert_path.read_bytes())
        except ValueError:
            cert = None
    why = reissue_reason(cert, cert is not None and ca.issued(cert), names, now)
    if why is not None:
        cert, key = ca.issue_server(list(names), now)
        cert_path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(cert_path.parent, 0o700)
        write_atomic(key_path, pki.key_pem(key), mode=0o600)
        write_atomic(cert_path, pki.cert_pem(cert))
        log.info("issued the API's certificate %s from the hub CA for %s (%s)", cert_path, ", ".join(names), why)
    _warn_uncovered(settings, names, f"the API's certificate ({cert_path})", "add it with --server-name")
    return ServedCertificate(cert_path, key_path, names, from_hub_ca=True)


def _operator_certificate(settings: HubSettings, cert_file: Path, key_file: Path, now: datetime) -> ServedCertificate:
    where = f"--tls-cert {cert_file} / --tls-key {key_file}"
    for path in (cert_file, key_file):
        if not path.is_file():
            raise SettingsError(f"{where}: {path} does not exist")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert_file, key_file)
        cert = pki.load_cert(cert_file.read_bytes())  # the first in the chain is the server's
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise SettingsError(
            f"{where}: not a PEM certificate and its matching private key ({exc}); give the server certificate "
            "(followed by any intermediates) and its unencrypted key"
        ) from None
    if cert.not_valid_after_utc <= now:
        raise SettingsError(f"{where}: the certificate expired {cert.not_valid_after_utc:%Y-%m-%d}; renew it")
    if stat.S_IMODE(key_file.stat().st_mode) & 0o077:
        log.warning("the API's private key %s is readable by others; chmod 600 it", key_file)
    names = pki.alt_names(cert)
    _warn_uncovered(settings, names, f"the certificate {cert_file}", "use a certificate issued for it")
    return ServedCertificate(cert_file, key_file, names, from_hub_ca=False)


def _warn_uncovered(settings: HubSettings, names: Sequence[str], what: str, fix: str) -> None:
    host = urlsplit(settings.base_url).hostname or ""
    if not covers(names, host):
        log.warning(
            "%s is not valid for %s, the host in the hub's public URL %s (it names %s): devices and clients using "
            "that URL will refuse the hub; %s",
            what,
            host,
            settings.base_url,
            ", ".join(names) or "no host",
            fix,
        )
