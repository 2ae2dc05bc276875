"""ed25519 signing of device manifests.

The hub holds the private key (generated on first start); each agent pins the hub's public key at
provisioning. An agent applies a manifest only if the signature verifies over the canonical JSON
of the manifest object *as received*, the manifest names this device, and its generation is
greater than the last one accepted.

``cryptography`` is imported only to sign (hub side): it is the largest native library an agent
would load (about 8 MB resident), so verification goes through ``edgefleet.protocol.ed25519`` (OpenSSL's
libcrypto, already in the process), and ``public_key_raw`` checks a key without it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.ed25519 import verify_ed25519
from edgefleet.protocol.errors import ManifestRejected, SignatureInvalid, StaleGeneration
from edgefleet.protocol.files import write_atomic
from edgefleet.protocol.models import DeviceManifest, SignedManifest

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ED25519_PUBLIC_KEY_BYTES = 32


def key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


def key_fingerprint(public_raw: bytes) -> str:
    """``sha256:<64 hex>`` of the raw public key: what an operator compares when a device pins the key
    on first use (``edgefleet-agent --hub-key-fingerprint``); the key id is too short for that."""
    return "sha256:" + hashlib.sha256(public_raw).hexdigest()


def public_key_raw(public_key_b64: str) -> bytes:
    """The 32 raw bytes of a base64 ed25519 public key; ValueError if it is not one.

    The same check ``load_public_key`` makes (an ed25519 public key is any 32 bytes), without
    loading ``cryptography``.
    """
    try:
        raw = base64.b64decode(public_key_b64, validate=True)
    except ValueError as exc:  # binascii.Error is a ValueError
        raise ValueError(f"not a base64 raw ed25519 public key: {public_key_b64[:20]!r}...") from exc
    if len(raw) != ED25519_PUBLIC_KEY_BYTES:
        raise ValueError(f"not a base64 raw ed25519 public key: {public_key_b64[:20]!r}...")
    return raw


def load_public_key(public_key_b64: str) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    raw = public_key_raw(public_key_b64)
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except Exception as exc:  # ValueError, or an UnsupportedAlgorithm: both mean the same to the user
        raise ValueError(f"not a base64 raw ed25519 public key: {public_key_b64[:20]!r}...") from exc


class HubKey:
    """The hub's signing key."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        from cryptography.hazmat.primitives import serialization

        self._private = private
        self.public_raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @classmethod
    def generate(cls) -> HubKey:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, path: str | Path) -> HubKey:
        """Load the PEM key at ``path``, or create it (mode 0600) on first start."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        path = Path(path)
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise ValueError(f"{path}: not an ed25519 private key")
            return cls(key)
        hub_key = cls.generate()
        pem = hub_key._private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        write_atomic(path, pem, mode=0o600)
        return hub_key

    @property
    def public_key_b64(self) -> str:
        return base64.b64encode(self.public_raw).decode("ascii")

    @property
    def key_id(self) -> str:
        return key_id(self.public_raw)

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.public_raw)

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self._private.sign(data)).decode("ascii")


def sign_manifest(manifest: DeviceManifest, hub_key: HubKey) -> SignedManifest:
    body = manifest.to_wire()
    return SignedManifest(manifest=body, signature=hub_key.sign(canonical_json(body)), key_id=hub_key.key_id)


def describe_validation(exc: ValidationError) -> str:
    """``where: what`` per problem, never the input: a manifest carries scoring keys, and this text
    is logged and reported to the hub."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        parts.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def verify_manifest(
    payload: bytes | str | dict[str, Any],
    public_key_b64: str,
    *,
    device_id: str,
    last_generation: int,
) -> DeviceManifest:
    """Check signature, addressee, schema and generation; return the manifest or raise ManifestRejected.

    Order matters: the signature is checked before the body is interpreted, so an attacker's
    payload is never parsed further than JSON.
    """
    try:
        raw = json.loads(payload) if isinstance(payload, (bytes, str)) else payload
        signed = SignedManifest.model_validate(raw)
    except ValidationError as exc:
        raise ManifestRejected(
            f"desired-state message for {device_id} is not a signed manifest: {describe_validation(exc)}"
        ) from exc
    except ValueError as exc:
        raise ManifestRejected(f"desired-state message for {device_id} is not a signed manifest: {exc}") from exc

    expected_key_id = key_id(public_key_raw(public_key_b64))
    if signed.key_id != expected_key_id:
        raise SignatureInvalid(
            f"manifest for {device_id} is signed with key {signed.key_id}, but this device pins hub key "
            f"{expected_key_id}; re-provision the device if the hub key was rotated"
        )
    try:
        signature = base64.b64decode(signed.signature, validate=True)
    except ValueError as exc:
        raise SignatureInvalid(f"manifest for {device_id}: signature is not base64") from exc
    if not verify_ed25519(public_key_raw(public_key_b64), signature, canonical_json(signed.manifest)):
        raise SignatureInvalid(f"manifest for {device_id}: signature does not verify (tampered payload?)")

    try:
        manifest = DeviceManifest.model_validate(signed.manifest)
    except ValidationError as exc:
        raise ManifestRejected(f"manifest for {device_id} is signed but invalid: {describe_validation(exc)}") from exc
    if manifest.device_id != device_id:
        raise ManifestRejected(
            f"manifest addressed to device {manifest.device_id!r} arrived at device {device_id!r}; ignored"
        )
    if manifest.generation <= last_generation:
        raise StaleGeneration(manifest.generation, last_generation)
    return manifest
