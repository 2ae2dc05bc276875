"""Direct methods in the agent: which calls run, what a refusal says, and that a run call stays run."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from edgefleet.agent import methods
from edgefleet.agent.daemon import Agent
from edgefleet.agent.errors import StateError
from edgefleet.agent.method_gate import Refuse, Run, claimed_correlation_id, judge_call
from edgefleet.agent.methods import answer
from edgefleet.agent.settings import AgentSettings
from edgefleet.protocol import DirectMethodRequest, HubKey, MethodCall, request_digest, sign_method

KEY = HubKey.generate()
DEVICE = "dev-unit"
NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=timezone.utc)


def signed_call(
    sequence: int = 1000,
    method: str = "ping",
    params: dict[str, Any] | None = None,
    device: str = DEVICE,
    key: HubKey = KEY,
    issued: datetime = NOW,
    cid: str = "cid-1",
) -> bytes:
    call = MethodCall(
        device_id=device,
        sequence=sequence,
        issued_at=issued,
        expires_at=issued + timedelta(seconds=10),
        request=DirectMethodRequest(correlation_id=cid, method=method, params=params or {}),  # type: ignore[arg-type]
    )
    return json.dumps(sign_method(call, key).to_wire()).encode()


def tampered(payload: bytes) -> bytes:
    body = json.loads(payload)
    body["call"]["request"]["method"] = "restart-module"
    body["call"]["request"]["params"] = {"module": "svc"}
    return json.dumps(body).encode()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    settings = AgentSettings(
        device_id=DEVICE,
        data_dir=tmp_path,
        hub_public_key=KEY.public_key_b64,
        module_command=[sys.executable, "-c", "pass"],
    )
    a = Agent(settings)
    a.intake.try_hub_key()
    yield a


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> list[DirectMethodRequest]:
    """Every request that reached run_method (what the agent actually did)."""
    calls: list[DirectMethodRequest] = []
    original = methods.run_method

    def recording(request: DirectMethodRequest, ctx: Any) -> tuple[int, dict[str, Any]]:
        calls.append(request)
        return original(request, ctx)

    monkeypatch.setattr(methods, "run_method", recording)
    return calls


def _answer(agent: Agent, payload: bytes, now: datetime = NOW):  # type: ignore[no-untyped-def]
    return answer(payload, agent.ctx, agent.intake.hub_key, now=now)


def test_a_signed_call_runs_and_its_sequence_is_saved_first(agent: Agent, ran: list, tmp_path: Path) -> None:
    payload = signed_call(1000)
    response = _answer(agent, payload)
    assert response is not None and response.status == 200 and response.payload["deviceId"] == DEVICE
    assert response.correlation_id == "cid-1" and response.request_digest == request_digest(payload)
    assert [r.method for r in ran] == ["ping"]
    assert json.loads((tmp_path / "state.json").read_text())["method_sequence"] == 1000


REFUSED = [
    (
        json.dumps({"correlationId": "cid-1", "method": "ping", "params": {}}).encode(),
        401,
        "not a call signed by the hub",
    ),
    (tampered(signed_call()), 401, "signature does not verify"),
    (signed_call(key=HubKey.generate()), 401, "pins hub key"),
    (signed_call(device="dev-other"), 403, "addressed to device 'dev-other'"),
    (signed_call(issued=NOW - timedelta(minutes=5)), 403, "expired"),
    (signed_call(issued=NOW + timedelta(minutes=5)), 403, "in the future"),
    (signed_call(sequence=500), 403, "not greater than the last one run, 999"),
]


@pytest.mark.parametrize(
    ("payload", "status", "reason"),
    REFUSED,
    ids=["unsigned", "tampered", "wrong-key", "wrong-device", "expired", "future", "replayed"],
)
def test_a_refused_call_is_never_run_and_answered_with_the_reason(
    agent: Agent, ran: list, payload: bytes, status: int, reason: str
) -> None:
    agent.saved.update(method_sequence=999)
    before = agent.state
    response = _answer(agent, payload)
    assert response is not None and response.status == status and reason in response.payload["error"]
    assert response.correlation_id == "cid-1" and response.request_digest == request_digest(payload)
    assert ran == [] and agent.state == before


def test_the_same_call_twice_runs_once(agent: Agent, ran: list) -> None:
    payload = signed_call(1000)
    first, second = _answer(agent, payload), _answer(agent, payload)
    assert first is not None and first.status == 200
    assert (
        second is not None and second.status == 403 and "not greater than the last one run, 1000" in str(second.payload)
    )
    assert len(ran) == 1


def test_a_restarted_agent_still_refuses_a_call_it_ran(agent: Agent, ran: list) -> None:
    payload = signed_call(1000)
    assert _answer(agent, payload).status == 200  # type: ignore[union-attr]
    again = Agent(agent.settings)  # same data directory: a restart
    again.intake.try_hub_key()
    response = answer(payload, again.ctx, again.intake.hub_key, now=NOW)
    assert response is not None and response.status == 403 and len(ran) == 1
    assert answer(signed_call(1001), again.ctx, again.intake.hub_key, now=NOW).status == 200  # type: ignore[union-attr]


def test_a_message_naming_no_correlation_id_gets_no_answer(agent: Agent, ran: list) -> None:
    for payload in [b"", b"{not json", b"[1, 2]", b'{"call": 7}', json.dumps({"correlationId": "a\nb"}).encode()]:
        assert _answer(agent, payload) is None
    assert ran == []


def test_without_a_hub_key_nothing_runs(agent: Agent, ran: list) -> None:
    response = answer(signed_call(), agent.ctx, None, now=NOW)
    assert response is not None and response.status == 503 and "no hub key yet" in response.payload["error"]
    assert ran == []


def test_a_call_whose_sequence_cannot_be_saved_is_not_run(
    agent: Agent, ran: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(**_changes: Any) -> None:
        raise StateError("cannot write agent state: disk full")

    monkeypatch.setattr(agent.saved, "update", full_disk)
    response = _answer(agent, signed_call())
    assert response is not None and response.status == 500 and "cannot record its sequence" in response.payload["error"]
    assert ran == []


def test_a_bug_in_a_method_is_a_500_not_a_crash_of_the_loop(agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_request: Any, _ctx: Any) -> tuple[int, dict[str, Any]]:
        raise KeyError("oops")

    monkeypatch.setattr(methods, "run_method", broken)
    response = _answer(agent, signed_call())
    assert response is not None and response.status == 500 and "KeyError" in response.payload["error"]


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"module": "ghost"}, 404),
        ({}, 400),
        ({"module": "m", "tail": -1}, 400),
        ({"module": "m", "tail": 10**100}, 400),
    ],
)
def test_bad_parameters_of_a_genuine_call(agent: Agent, params: dict[str, Any], status: int) -> None:
    response = _answer(agent, signed_call(method="logs", params=params))
    assert response is not None and response.status == status


def test_the_gate_is_pure_data_in_and_out() -> None:
    verdict = judge_call(signed_call(7), KEY.public_key_b64, DEVICE, 6, NOW)
    assert isinstance(verdict, Run) and verdict.call.sequence == 7
    refused = judge_call(signed_call(7), KEY.public_key_b64, DEVICE, 7, NOW)
    assert isinstance(refused, Refuse) and refused.response is not None and refused.response.status == 403
    assert claimed_correlation_id(b'{"call": {"request": {"correlationId": "x"}}}') == "x"
    assert claimed_correlation_id(b'{"correlationId": "' + b"y" * 129 + b'"}') is None
