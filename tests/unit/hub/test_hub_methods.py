"""The hub's side of direct methods, without a broker: what it signs, and which responses count.

The controller's MQTT client is never connected here: ``publish`` is replaced by a recorder, and
responses go in through ``ingest`` exactly as the MQTT callback hands them over.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from edgefleet.hub.errors import InvalidRequest, MethodTimeout
from edgefleet.hub.server.controller import Controller
from edgefleet.hub.server.grants import BlobGrants
from edgefleet.hub.server.method_sequence import MethodSequence
from edgefleet.hub.server.mqtt_url import MqttConnection, parse_broker_url
from edgefleet.hub.server.rotation import HubKeys
from edgefleet.hub.server.store import SqliteStore
from edgefleet.hub.server.store.records import CredentialRecord
from edgefleet.protocol import DirectMethodResponse, HubKey, TopicKind, request_digest, verify_method
from edgefleet.protocol.topics import parse_topic

KEY = HubKey.generate()
GRANTS = BlobGrants(b"k" * 32, "http://127.0.0.1:9")


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_sequences_follow_the_clock_in_ms_and_never_repeat_or_go_back() -> None:
    clock = Clock(1_700_000_000.0)
    seq = MethodSequence(clock)
    drawn = []
    for _ in range(3):  # a burst inside one millisecond
        with seq.draw("a") as n:
            drawn.append(n)
    assert drawn == [1_700_000_000_000, 1_700_000_000_001, 1_700_000_000_002]
    with seq.draw("b") as n:
        assert n == 1_700_000_000_000  # per device
    clock.t -= 60  # the clock stepped back: still increasing for this hub
    with seq.draw("a") as n:
        assert n == 1_700_000_000_003


def test_a_restarted_hub_continues_above_what_it_gave_before() -> None:
    """The sequence needs no storage: a restart takes longer than a burst runs ahead of the clock."""
    before = MethodSequence(Clock(1_700_000_000.0))
    for _ in range(50):
        with before.draw("a") as last:
            pass
    after = MethodSequence(Clock(1_700_000_001.0))  # the new process, a second later
    with after.draw("a") as first:
        assert first > last


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[Controller]:
    store = SqliteStore(tmp_path / "hub.db")
    now = datetime.now(timezone.utc)
    for serial, device in enumerate(("dev-a", "dev-b")):  # the hub listens only to registered devices
        credential = CredentialRecord(
            device_id=device, kind="certificate", serial=f"{serial + 1:x}", fingerprint="sha256:x",
            issued_at=now, not_after=now,
        )  # fmt: skip
        store.register_device(device, {}, credential, now)
    url = "mqtt://127.0.0.1:9"
    c = Controller(store, HubKeys(KEY), MqttConnection(url, parse_broker_url(url)), GRANTS)
    yield c
    store.close()


class Wire:
    """Stands in for the broker: records what the controller publishes."""

    def __init__(self, controller: Controller) -> None:
        self.published: list[tuple[str, bytes]] = []
        self.arrived = threading.Event()
        controller._client.publish = self.publish  # type: ignore[method-assign]

    def publish(self, topic: str, payload: Any, qos: int = 0, retain: bool = False) -> None:
        self.published.append((topic, payload.encode() if isinstance(payload, str) else payload))
        self.arrived.set()


def call_in_background(
    controller: Controller, device: str, method: str = "ping", timeout: float = 5.0
) -> dict[str, Any]:
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["response"] = controller.call_method(device, method, {}, timeout)
        except Exception as exc:
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    result["thread"] = thread
    return result


def response(cid: str, digest: str | None, status: int = 200, **payload: Any) -> bytes:
    return (
        DirectMethodResponse(correlation_id=cid, status=status, payload=payload, request_digest=digest)
        .model_dump_json(by_alias=True)
        .encode()
    )


def test_a_call_is_signed_for_its_device_and_counts_only_its_own_answer(controller: Controller) -> None:
    wire = Wire(controller)
    result = call_in_background(controller, "dev-b")
    assert wire.arrived.wait(5)
    [(topic, payload)] = wire.published
    assert parse_topic(topic) == ("dev-b", TopicKind.COMMANDS)
    call = verify_method(payload, KEY.public_key_b64, device_id="dev-b", last_sequence=0)
    cid, digest = call.request.correlation_id, request_digest(payload)
    assert call.request.method == "ping" and (call.expires_at - call.issued_at).total_seconds() == 5

    # device A answers B's call on its own topic: ignored (topic), as are a forged or copied call's answer
    # (digest), a response without a digest, a malformed response and one to a call nobody made
    controller.ingest("dev-a", TopicKind.RESPONSES, response(cid, digest, spoofed=True))
    controller.ingest("dev-b", TopicKind.RESPONSES, response(cid, request_digest(b'{"other": 1}'), spoofed=True))
    controller.ingest("dev-b", TopicKind.RESPONSES, response(cid, None, spoofed=True))
    controller.ingest("dev-b", TopicKind.RESPONSES, json.dumps({"correlationId": cid, "status": "ok"}).encode())
    controller.ingest("dev-b", TopicKind.RESPONSES, response("nobody", digest, spoofed=True))
    assert "response" not in result and result["thread"].is_alive()

    controller.ingest("dev-b", TopicKind.RESPONSES, response(cid, digest, genuine=True))
    controller.ingest("dev-b", TopicKind.RESPONSES, response(cid, digest, status=403, late=True))  # first one counts
    result["thread"].join(5)
    assert result["response"].payload == {"genuine": True} and result["response"].status == 200


def test_a_spoofed_answer_alone_leaves_the_call_unanswered(controller: Controller) -> None:
    wire = Wire(controller)
    result = call_in_background(controller, "dev-b", timeout=0.5)
    assert wire.arrived.wait(5)
    payload = wire.published[0][1]
    cid = json.loads(payload)["call"]["request"]["correlationId"]
    controller.ingest("dev-a", TopicKind.RESPONSES, response(cid, request_digest(payload), lines=["spoofed"]))
    result["thread"].join(5)
    assert isinstance(result["error"], MethodTimeout)


def test_concurrent_calls_to_one_device_are_published_in_sequence_order(controller: Controller) -> None:
    wire = Wire(controller)
    results = [call_in_background(controller, "dev-b", timeout=0.3) for _ in range(8)]
    for r in results:
        r["thread"].join(5)
    sequences = [json.loads(p)["call"]["sequence"] for _t, p in wire.published]
    assert len(sequences) == 8 and sequences == sorted(sequences) and len(set(sequences)) == 8


def test_unknown_methods_and_unsendable_params_are_the_callers_error(controller: Controller) -> None:
    with pytest.raises(InvalidRequest, match="unknown direct method 'reboot'"):
        controller.call_method("dev-b", "reboot", {}, 1)
    with pytest.raises(InvalidRequest, match="invalid params"):
        controller.call_method("dev-b", "logs", {"tail": float("nan")}, 1)
