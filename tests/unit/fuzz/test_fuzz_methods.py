"""Fuzzing direct-method calls: verify_method and the agent's method handler, as the loop runs it.

Properties: verification raises nothing but MethodRejected; what it accepts is exactly a call the
hub key signed, for this device, inside its window, newer than the last one run; a running agent
given any command message (``_on_message`` then ``_drain_inbox``) never raises, publishes only
well-formed responses, and runs only such a call, at most once.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from edgefleet.agent import methods
from edgefleet.agent.daemon import Agent
from edgefleet.agent.settings import AgentSettings
from edgefleet.protocol import (
    METHOD_CLOCK_SKEW_S,
    DirectMethodRequest,
    DirectMethodResponse,
    HubKey,
    MethodCall,
    MethodRejected,
    TopicKind,
    canonical_json,
    sign_method,
    verify_method,
)
from edgefleet.protocol.models import MAX_SAFE_INTEGER
from tests.unit.fuzz.strategies import EXAMPLE_COUNTS, fuzz_settings, payloads

KEY = HubKey.generate()
OTHER = HubKey.generate()
DEVICE = "dev-1"
NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=timezone.utc)
SIGNED_BY_KEY: set[bytes] = set()
ANSWERS = {200, 400, 401, 403, 404, 500, 503}

requests = st.builds(
    lambda cid, method, params: DirectMethodRequest(correlation_id=cid, method=method, params=params),
    st.sampled_from(["c-1", "c-2", "0123abcd"]),
    st.sampled_from(["ping", "logs", "restart-module"]),
    st.sampled_from([{}, {"module": "svc"}, {"module": "svc", "tail": 5}, {"module": "", "tail": -3}]),
)


def _signed(
    request: DirectMethodRequest, sequence: int, device: str, issued_s: float, life_s: float, key: HubKey
) -> dict[str, Any]:
    issued = NOW + timedelta(seconds=issued_s)
    call = MethodCall(
        device_id=device,
        sequence=sequence,
        issued_at=issued,
        expires_at=issued + timedelta(seconds=life_s),
        request=request,
    )
    wire = sign_method(call, key).to_wire()
    if key is KEY:
        SIGNED_BY_KEY.add(canonical_json(wire["call"]))
    return wire


signed_calls = st.builds(
    _signed,
    requests,
    st.one_of(st.integers(1, 100), st.integers(1, MAX_SAFE_INTEGER)),
    st.sampled_from([DEVICE, DEVICE, "dev-2"]),
    st.one_of(st.floats(-5, 5), st.floats(-1000, 1000)),  # issued this many seconds from the device's now
    st.one_of(st.floats(1, 60), st.floats(0.001, 700)),  # valid this long (a device accepts at most 600 s)
    st.sampled_from([KEY, KEY, KEY, OTHER]),
)
last_sequences = st.one_of(st.integers(0, 100), st.integers(0, MAX_SAFE_INTEGER))


def _check_genuine(call: MethodCall, payload: bytes, last_sequence: int) -> None:
    assert call.device_id == DEVICE and last_sequence < call.sequence
    assert (call.issued_at - NOW).total_seconds() <= METHOD_CLOCK_SKEW_S
    assert (NOW - call.expires_at).total_seconds() <= METHOD_CLOCK_SKEW_S
    assert canonical_json(json.loads(payload)["call"]) in SIGNED_BY_KEY


@EXAMPLE_COUNTS
def test_verify_method_accepts_only_fresh_calls_the_hub_key_signed_for_this_device(examples: int) -> None:
    @fuzz_settings(examples)
    @given(payloads(signed_calls), last_sequences)
    def check(payload: bytes, last_sequence: int) -> None:
        try:
            call = verify_method(payload, KEY.public_key_b64, device_id=DEVICE, last_sequence=last_sequence, now=NOW)
        except MethodRejected as exc:
            assert exc.status in ANSWERS
            event(f"refused: {type(exc).__name__}")
            return
        event("accepted")
        _check_genuine(call, payload, last_sequence)

    check()


@EXAMPLE_COUNTS
def test_no_command_message_escapes_into_the_agents_loop_or_runs_unless_genuine(
    examples: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = AgentSettings(
        device_id=DEVICE,
        data_dir=tmp_path,
        hub_public_key=KEY.public_key_b64,
        module_command=[sys.executable, "-c", "pass"],
    )
    agent = Agent(settings)
    agent.intake.try_hub_key()
    published: list[bytes] = []
    ran: list[DirectMethodRequest] = []
    monkeypatch.setattr(agent.link, "publish_response", published.append)
    original = methods.run_method
    monkeypatch.setattr(methods, "run_method", lambda request, ctx: (ran.append(request), original(request, ctx))[1])
    monkeypatch.setattr(methods, "utcnow", lambda: NOW)  # the device's clock

    @fuzz_settings(examples)
    @given(payloads(signed_calls), last_sequences)
    def check(payload: bytes, last_sequence: int) -> None:
        agent.saved.update(method_sequence=last_sequence)
        published.clear()
        ran.clear()
        agent._on_message(TopicKind.COMMANDS, payload)  # as the MQTT thread hands it over
        agent._drain_inbox()  # as the loop handles it: must not raise
        assert len(published) <= 1
        for raw in published:
            response = DirectMethodResponse.model_validate_json(raw)  # the hub can read every answer
            assert response.status in ANSWERS
        event("ran" if ran else "not run")
        if ran:
            [request] = ran
            call = MethodCall.model_validate(json.loads(payload)["call"])
            assert call.request == request
            _check_genuine(call, payload, last_sequence)
            assert agent.state.method_sequence == call.sequence  # recorded: it cannot run again
            agent._on_message(TopicKind.COMMANDS, payload)
            agent._drain_inbox()
            assert len(ran) == 1, "a replayed call ran again"
        else:
            assert agent.state.method_sequence == last_sequence

    check()


def test_a_refusal_quoting_a_lone_surrogate_is_still_an_answer() -> None:
    """Found by the fuzzing above: a key id of "\\ud800" made the refusal itself invalid JSON."""
    from edgefleet.agent.method_gate import Refuse, _refuse

    payload = b'{"call": {"request": {"correlationId": "c-1"}}, "keyId": "\\ud800"}'
    verdict = _refuse(payload, 401, "key id '\ud800' is not the hub's")
    assert isinstance(verdict, Refuse) and verdict.response is not None
    assert verdict.response.payload == {"error": "key id '\\ud800' is not the hub's"}
