"""Signed direct-method calls: what a device runs, and the words of each refusal."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from edgefleet.protocol import (
    METHOD_CLOCK_SKEW_S,
    DirectMethodRequest,
    DirectMethodResponse,
    HubKey,
    MethodCall,
    MethodExpired,
    MethodNotForDevice,
    MethodRejected,
    MethodUnauthenticated,
    ReplayedSequence,
    request_digest,
    sign_method,
    verify_method,
)
from edgefleet.protocol.signing import METHOD_MAX_LIFETIME_S

KEY = HubKey.generate()
NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=timezone.utc)


def call(
    sequence: int = 100,
    device: str = "dev-1",
    issued: datetime = NOW,
    lifetime_s: float = 10.0,
    method: str = "ping",
    params: dict[str, Any] | None = None,
) -> MethodCall:
    request = DirectMethodRequest(correlation_id="c-1", method=method, params=params or {})  # type: ignore[arg-type]
    return MethodCall(
        device_id=device,
        sequence=sequence,
        issued_at=issued,
        expires_at=issued + timedelta(seconds=lifetime_s),
        request=request,
    )


def signed(key: HubKey = KEY, **fields: Any) -> dict[str, Any]:
    return sign_method(call(**fields), key).to_wire()


def verify(payload: Any, last_sequence: int = 99, now: datetime = NOW) -> MethodCall:
    return verify_method(payload, KEY.public_key_b64, device_id="dev-1", last_sequence=last_sequence, now=now)


def test_a_signed_call_for_this_device_verifies() -> None:
    verified = verify(json.dumps(signed(params={"module": "svc"}, method="logs")).encode())
    assert (
        verified.sequence == 100 and verified.request.method == "logs" and verified.request.params == {"module": "svc"}
    )


def test_the_wire_form_is_the_call_its_signature_and_the_key_id() -> None:
    wire = signed()
    assert set(wire) == {"call", "signature", "keyId"} and wire["keyId"] == KEY.key_id
    assert set(wire["call"]) == {"schemaVersion", "deviceId", "sequence", "issuedAt", "expiresAt", "request"}
    assert wire["call"]["request"] == {"correlationId": "c-1", "method": "ping", "params": {}}


def _retarget(s: dict[str, Any]) -> dict[str, Any]:
    return {**s, "call": {**s["call"], "deviceId": "dev-2"}}


def _bump(s: dict[str, Any]) -> dict[str, Any]:
    return {**s, "call": {**s["call"], "sequence": s["call"]["sequence"] + 1}}


@pytest.mark.parametrize(
    ("payload", "error", "status", "text"),
    [
        (lambda s: s["call"]["request"], MethodUnauthenticated, 401, "not a call signed by the hub"),  # bare request
        (lambda s: {"call": s["call"]}, MethodUnauthenticated, 401, "not a call signed by the hub"),  # no signature
        (_bump, MethodUnauthenticated, 401, "signature does not verify"),  # tampered
        (_retarget, MethodUnauthenticated, 401, "signature does not verify"),  # re-addressed by hand
        (lambda s: {**s, "signature": "%%%"}, MethodUnauthenticated, 401, "not base64"),
        (lambda s: {**s, "keyId": "0" * 16}, MethodUnauthenticated, 401, "pins hub key"),
        (lambda _s: signed(key=HubKey.generate()), MethodUnauthenticated, 401, "pins hub key"),  # another hub
        (lambda _s: b"{not json", MethodUnauthenticated, 401, "not a call signed by the hub"),
        (lambda _s: b"[" * 100_000, MethodUnauthenticated, 401, "nested too deeply"),
        (lambda _s: signed(device="dev-2"), MethodNotForDevice, 403, "addressed to device 'dev-2'"),
        (lambda _s: signed(sequence=99), ReplayedSequence, 403, "not greater than the last one run, 99"),
        (lambda _s: signed(sequence=5), ReplayedSequence, 403, "not greater than the last one run"),
        (lambda _s: signed(issued=NOW - timedelta(seconds=70)), MethodExpired, 403, "expired 60 s ago"),
        (lambda _s: signed(issued=NOW + timedelta(seconds=45)), MethodExpired, 403, "issued 45 s in the future"),
        (lambda _s: signed(lifetime_s=METHOD_MAX_LIFETIME_S + 1), MethodExpired, 403, "longer than the 600 s"),
    ],
    ids=[
        "unsigned-bare-request", "no-signature", "tampered", "re-addressed", "signature-not-base64", "key-id",
        "wrong-key", "garbage", "deep-nesting", "wrong-device", "replayed", "older", "expired", "future",
        "standing-order",
    ],
)  # fmt: skip
def test_each_refusal_says_what_failed_and_carries_its_status(payload, error, status, text) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=text) as caught:
        verify(payload(signed()))
    assert caught.value.status == status


def test_the_clock_skew_is_allowed_either_way() -> None:
    skew = timedelta(seconds=METHOD_CLOCK_SKEW_S - 1)
    assert verify(signed(issued=NOW + skew)).sequence == 100  # device clock a little behind
    assert verify(signed(issued=NOW - timedelta(seconds=10) - skew)).sequence == 100  # expired, but within skew


def test_a_signed_but_invalid_call_is_a_bad_request() -> None:
    body = call().to_wire()
    body["request"]["method"] = "reboot"  # a newer hub's method, say: signed, but not one this device knows
    envelope = {"call": body, "signature": KEY.sign(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())}
    with pytest.raises(MethodRejected, match="signed but invalid") as caught:
        verify({**envelope, "keyId": KEY.key_id})
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "change",
    [
        {"issuedAt": "2025-06-01T12:00:00"},  # no time zone: not comparable with the device's clock
        {"expiresAt": "2025-06-01T11:59:00Z"},  # expires before it is issued
        {"sequence": 2**53},  # past the largest integer JSON keeps exact
        {"sequence": 0},
    ],
)
def test_the_call_body_is_validated_strictly(change: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        MethodCall.model_validate({**call().to_wire(), **change})


def test_the_request_digest_is_the_same_on_both_sides_and_differs_for_any_other_call() -> None:
    wire = signed()
    received = json.dumps(wire, indent=3).encode()  # another byte form of the same object
    assert request_digest(received) == request_digest(wire) is not None
    assert str(request_digest(wire)).startswith("sha256:")
    assert request_digest(signed(sequence=101)) != request_digest(wire)
    assert request_digest(b"[1]") is None and request_digest(b"\xff") is None and request_digest(b"[" * 100_000) is None


def test_responses_and_requests_refuse_what_no_json_reader_could_read() -> None:
    with pytest.raises(ValueError):
        DirectMethodResponse.model_validate_json(b'{"correlationId": "c", "status": 200, "payload": {"x": NaN}}')
    with pytest.raises(ValueError):
        DirectMethodResponse.model_validate_json(b'{"correlationId": "c", "status": 9000}')
    with pytest.raises(ValueError):
        DirectMethodRequest(correlation_id="x" * 129, method="ping")
    with pytest.raises(ValueError):
        DirectMethodRequest(correlation_id="a/b", method="ping")
