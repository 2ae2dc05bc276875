from __future__ import annotations

import json
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgefleet.protocol import (
    DeviceManifest,
    HubKey,
    ManifestRejected,
    ModuleSpec,
    SignatureInvalid,
    StaleGeneration,
    sign_manifest,
    verify_manifest,
)
from edgefleet.protocol import ed25519 as ed

KEY = HubKey.generate()


def _signed(generation: int = 5, device: str = "dev-1", key: HubKey = KEY) -> dict:
    manifest = DeviceManifest(device_id=device, generation=generation, modules=[ModuleSpec(name="m", service="m")])
    return sign_manifest(manifest, key).to_wire()


def test_a_valid_manifest_verifies_and_parses() -> None:
    manifest = verify_manifest(json.dumps(_signed()), KEY.public_key_b64, device_id="dev-1", last_generation=4)
    assert manifest.generation == 5 and manifest.modules[0].name == "m"


@pytest.mark.parametrize(
    ("payload", "error", "text"),
    [
        (lambda s: {**s, "manifest": {**s["manifest"], "generation": 6}}, SignatureInvalid, "does not verify"),
        (lambda s: {**s, "signature": "%%%"}, SignatureInvalid, "not base64"),
        (lambda s: {**s, "keyId": "0" * 16}, SignatureInvalid, "pins hub key"),
        (lambda s: {"manifest": s["manifest"]}, ManifestRejected, "not a signed manifest"),
    ],
)
def test_tampered_or_malformed_payloads_are_rejected(payload, error, text) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=text):
        verify_manifest(payload(_signed()), KEY.public_key_b64, device_id="dev-1", last_generation=0)


def test_another_hubs_key_stale_generation_and_wrong_device_are_rejected() -> None:
    other = HubKey.generate()
    with pytest.raises(SignatureInvalid):
        verify_manifest(_signed(key=other), KEY.public_key_b64, device_id="dev-1", last_generation=0)
    with pytest.raises(StaleGeneration, match="not greater than the last accepted generation 5"):
        verify_manifest(_signed(5), KEY.public_key_b64, device_id="dev-1", last_generation=5)
    with pytest.raises(ManifestRejected, match="addressed to device 'dev-2'"):
        verify_manifest(_signed(device="dev-2"), KEY.public_key_b64, device_id="dev-1", last_generation=0)


def test_openssl_and_cryptography_verifiers_agree() -> None:
    assert ed._openssl() is not None, "libcrypto with Ed25519 is expected on supported systems"
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes_raw()
    data = b"canonical manifest bytes"
    good = private.sign(data)
    bad = bytes([good[0] ^ 1]) + good[1:]
    openssl = ed._openssl()
    assert openssl is not None
    for signature, message, expected in [(good, data, True), (bad, data, False), (good, data + b"x", False)]:
        assert openssl.verify_ed25519(public, signature, message) is expected
        # the fall-back path, as on a system without a usable libcrypto
        ed._openssl.cache_clear()
        try:
            original = ed._openssl
            ed._openssl = lambda: None  # type: ignore[assignment]
            assert ed.verify_ed25519(public, signature, message) is expected
        finally:
            ed._openssl = original  # type: ignore[assignment]
    assert openssl.verify_ed25519(b"\x00" * 31, good, data) is False  # malformed key: False, not a crash


def test_verifying_does_not_load_cryptography() -> None:
    """The agent's memory goal depends on it: verification uses the libcrypto already mapped."""
    signed = json.dumps(_signed())
    code = (
        "import sys, protocol; "
        f"protocol.verify_manifest({signed!r}, {KEY.public_key_b64!r}, device_id='dev-1', last_generation=0); "
        "print(any(m.startswith('cryptography') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        (
            lambda s: {**s, "manifest": {**s["manifest"], "x": float("nan")}},
            "not plain JSON",
        ),  # NaN before the signature
        (lambda s: json.dumps(s).replace('"generation": 5', '"generation": Infinity'), "not plain JSON"),
        (lambda _s: "[" * 100_000, "nested too deeply"),
        (lambda _s: b"\xff\xfe", "not a signed manifest"),
    ],
    ids=["nan", "infinity", "deep-nesting", "not-utf8"],
)
def test_payloads_that_are_not_plain_json_are_rejected_not_raised(payload, text) -> None:  # type: ignore[no-untyped-def]
    """These once escaped as ValueError/RecursionError, past the agent's intake and out of its loop."""
    with pytest.raises(ManifestRejected, match=text):
        verify_manifest(payload(_signed()), KEY.public_key_b64, device_id="dev-1", last_generation=0)


def test_generations_stop_at_the_largest_integer_json_keeps_exact() -> None:
    from edgefleet.protocol import MAX_GENERATION, ReportedState

    assert MAX_GENERATION == 2**53 - 1
    assert DeviceManifest(device_id="d", generation=MAX_GENERATION).generation == MAX_GENERATION
    for too_big in (MAX_GENERATION + 1, 2**63 - 2, 2**63 - 1):
        with pytest.raises(ValueError, match="less than or equal to 9007199254740991"):
            DeviceManifest(device_id="d", generation=too_big)
        with pytest.raises(ValueError, match="less than or equal to 9007199254740991"):
            ReportedState.model_validate_json(json.dumps({"deviceId": "d", "generation": too_big}))
