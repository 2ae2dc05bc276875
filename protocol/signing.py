"""ed25519 signing of device manifests and direct-method calls.

The hub holds the private key (generated on first start); each agent pins the hub's public key at
provisioning. An agent applies a manifest only if the signature verifies over the canonical JSON
of the manifest object *as received*, the manifest names this device, and its generation is
greater than the last one accepted. It runs a direct method only under the same signature check
over the call object, when the call names this device, is inside its validity window (give or
take ``METHOD_CLOCK_SKEW_S``) and its sequence is greater than the last call it ran. Both kinds go
through one pair of helpers, ``_signature_of`` and ``_check_signature``.

``cryptography`` is imported only to sign (hub side): it is the largest native library an agent
would load (about 8 MB resident), so verification goes through ``edgefleet.protocol.ed25519`` (OpenSSL's
libcrypto, already in the process), and ``public_key_raw`` checks a key without it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.digests import format_digest
from edgefleet.protocol.ed25519 import verify_ed25519
from edgefleet.protocol.errors import (
    ManifestRejected,
    MethodExpired,
    MethodNotForDevice,
    MethodRejected,
    MethodUnauthenticated,
    ProtocolError,
    ReplayedSequence,
    SignatureInvalid,
    StaleGeneration,
)
from edgefleet.protocol.files import write_atomic
from edgefleet.protocol.models import DeviceManifest, MethodCall, SignedManifest, SignedMethodCall

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ED25519_PUBLIC_KEY_BYTES = 32
# Direct-method time policy. A call is run from ``METHOD_CLOCK_SKEW_S`` before it was issued until
# that long after it expired: hub and device clocks are NTP-synced on a working fleet, and half a
# minute tolerates a device that has only just synced after boot. Replays inside the window are
# refused by the sequence number anyway; expiry stops a call delayed on its way (a device offline,
# a message held back) from running after the operator gave up waiting for it.
METHOD_CLOCK_SKEW_S = 30.0
# The longest validity a device accepts (the API's longest call timeout is 300 s): a signed call
# cannot be made into a standing order.
METHOD_MAX_LIFETIME_S = 600.0


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


def _load_json(payload: bytes | str | dict[str, Any]) -> Any:
    """JSON from the wire; ValueError for anything that is not JSON (deep nesting included)."""
    if isinstance(payload, dict):
        return payload
    try:
        return json.loads(payload)
    except RecursionError:  # "[[[[..." a hundred thousand deep: not JSON worth reading
        raise ValueError("JSON nested too deeply") from None


def _signature_of(body: dict[str, Any], hub_key: HubKey) -> str:
    return hub_key.sign(canonical_json(body))


def _check_signature(
    body: dict[str, Any],
    signature_b64: str,
    signed_key_id: str,
    public_key_b64: str,
    *,
    what: str,
    error: type[ProtocolError],
) -> None:
    """Raise ``error`` unless ``signature_b64`` is the pinned hub key's signature of ``body``'s canonical JSON.

    ``body`` is the received object (validated as plain JSON by its model), never a re-serialized model.
    """
    pinned = public_key_raw(public_key_b64)
    expected_key_id = key_id(pinned)
    if signed_key_id != expected_key_id:
        raise error(
            f"{what} is signed with key {signed_key_id}, but this device pins hub key "
            f"{expected_key_id}; re-provision the device if the hub key was rotated"
        )
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except ValueError as exc:
        raise error(f"{what}: signature is not base64") from exc
    if not verify_ed25519(pinned, signature, canonical_json(body)):
        raise error(f"{what}: signature does not verify (tampered payload?)")


# manifests -------------------------------------------------------------------------------------


def sign_manifest(manifest: DeviceManifest, hub_key: HubKey) -> SignedManifest:
    body = manifest.to_wire()
    return SignedManifest(manifest=body, signature=_signature_of(body, hub_key), key_id=hub_key.key_id)


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
        signed = SignedManifest.model_validate(_load_json(payload))
    except ValidationError as exc:
        raise ManifestRejected(
            f"desired-state message for {device_id} is not a signed manifest: {describe_validation(exc)}"
        ) from exc
    except ValueError as exc:
        raise ManifestRejected(f"desired-state message for {device_id} is not a signed manifest: {exc}") from exc

    _check_signature(
        signed.manifest,
        signed.signature,
        signed.key_id,
        public_key_b64,
        what=f"manifest for {device_id}",
        error=SignatureInvalid,
    )
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


# direct methods --------------------------------------------------------------------------------


def sign_method(call: MethodCall, hub_key: HubKey) -> SignedMethodCall:
    body = call.to_wire()
    return SignedMethodCall(call=body, signature=_signature_of(body, hub_key), key_id=hub_key.key_id)


def verify_method(
    payload: bytes | str | dict[str, Any],
    public_key_b64: str,
    *,
    device_id: str,
    last_sequence: int,
    now: datetime | None = None,
    skew_s: float = METHOD_CLOCK_SKEW_S,
) -> MethodCall:
    """Check signature, schema, addressee, validity window and sequence; return the call or raise MethodRejected.

    As with manifests the signature is checked before the call is interpreted. Each refusal's type
    carries the status the device answers with (``MethodRejected.status``) and its message names
    what failed.
    """
    now = now or datetime.now(timezone.utc)
    try:
        signed = SignedMethodCall.model_validate(_load_json(payload))
    except ValidationError as exc:
        raise MethodUnauthenticated(
            f"direct-method message for {device_id} is not a call signed by the hub (direct methods travel only in "
            f"a signed envelope): {describe_validation(exc)}"
        ) from exc
    except ValueError as exc:
        raise MethodUnauthenticated(
            f"direct-method message for {device_id} is not a call signed by the hub (direct methods travel only in "
            f"a signed envelope): {exc}"
        ) from exc
    _check_signature(
        signed.call,
        signed.signature,
        signed.key_id,
        public_key_b64,
        what=f"direct-method call for {device_id}",
        error=MethodUnauthenticated,
    )
    try:
        call = MethodCall.model_validate(signed.call)
    except ValidationError as exc:
        raise MethodRejected(
            f"direct-method call for {device_id} is signed but invalid: {describe_validation(exc)}"
        ) from exc
    if call.device_id != device_id:
        raise MethodNotForDevice(
            f"direct-method call addressed to device {call.device_id!r} arrived at device {device_id!r}; not run"
        )
    # differences of aware datetimes never overflow (a sum with an attacker's year 9999 would)
    lifetime_s = (call.expires_at - call.issued_at).total_seconds()
    if lifetime_s > METHOD_MAX_LIFETIME_S:
        raise MethodExpired(
            f"direct-method call for {device_id} is valid for {lifetime_s:.0f} s, longer than the "
            f"{METHOD_MAX_LIFETIME_S:.0f} s a device accepts; not run"
        )
    ahead_s = (call.issued_at - now).total_seconds()
    if ahead_s > skew_s:
        raise MethodExpired(
            f"direct-method call for {device_id} was issued {ahead_s:.0f} s in the future: hub and device clocks "
            f"differ by more than the allowed {skew_s:.0f} s skew; sync them (NTP). Not run"
        )
    late_s = (now - call.expires_at).total_seconds()
    if late_s > skew_s:
        raise MethodExpired(
            f"direct-method call for {device_id} expired {late_s:.0f} s ago (at {call.expires_at.isoformat()}, "
            f"{skew_s:.0f} s of clock skew allowed); not run"
        )
    if call.sequence <= last_sequence:
        raise ReplayedSequence(call.sequence, last_sequence)
    return call


def request_digest(payload: bytes | str | dict[str, Any]) -> str | None:
    """``sha256:<hex>`` of a command message's canonical JSON, echoed in its response; None: not a JSON object.

    The hub computes it over what it published, the device over what it received: equal exactly
    when the device answers the very call the hub made (whatever a third party copied or forged).
    """
    try:
        raw = _load_json(payload)
        return format_digest(hashlib.sha256(canonical_json(raw)).hexdigest()) if isinstance(raw, dict) else None
    except (ValueError, TypeError, RecursionError):
        return None
