"""The operator's side of provisioning: the device's key pair and signing request, and the bundle file.

The key pair is made here, on the operator's machine, and only the signing request goes to the hub,
so the private key travels nowhere but into the bundle file (mode 0600, never printed or logged).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgefleet.hub.client import HubClient
from edgefleet.hub.errors import ClientError
from edgefleet.hub.schemas import DeviceRegistration
from edgefleet.protocol.bootstrap import AuthKind, BootstrapBundle


def new_key_and_csr(device_id: str) -> tuple[str, str]:
    """(private key PEM, signing request PEM with subject CN = ``device_id``), EC P-256."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem.decode(), csr.public_bytes(serialization.Encoding.PEM).decode()


def check_writable(path: Path, overwrite: bool) -> None:
    """Before anything is registered: the bundle must be writable where the operator asked."""
    if path.exists() and not overwrite:
        raise ClientError(f"{path} exists; choose another --out, or give --force to overwrite it")
    if not path.parent.is_dir():
        raise ClientError(f"{path}: folder {path.parent} does not exist; create it or choose another --out")


def write_bundle(path: Path, bundle: BootstrapBundle) -> None:
    """The bundle as JSON, created with mode 0600 (it holds the device's key or password)."""
    data = bundle.model_dump_json(by_alias=True, indent=2).encode()
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ClientError(f"cannot write the bootstrap bundle {path}: {exc.strerror}") from None


def provision(
    client: HubClient,
    device_id: str,
    labels: dict[str, str],
    out: Path,
    auth: AuthKind = "certificate",
    overwrite: bool = False,
) -> DeviceRegistration:
    """Register ``device_id`` at the hub and write its bootstrap bundle to ``out`` (0600).

    The answer comes back with the bundle's secrets removed, so it may be printed or logged."""
    check_writable(out, overwrite)
    key_pem, csr = new_key_and_csr(device_id) if auth == "certificate" else (None, None)
    registration = client.register_device(device_id, labels, auth, csr)
    bundle = registration.bundle
    if key_pem is not None:
        bundle = bundle.model_copy(update={"client_key": key_pem})
    missing = bundle.missing()
    if missing:
        raise ClientError(f"the hub's answer for {device_id} lacks {', '.join(missing)}; is it an edgefleet hub?")
    write_bundle(out, bundle)
    public = registration.bundle.model_copy(update={"client_key": None, "password": None})
    return registration.model_copy(update={"bundle": public})
