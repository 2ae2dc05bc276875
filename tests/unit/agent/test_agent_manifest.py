"""Manifest handling in the agent: what is accepted, what is rejected and reported, what is ignored."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.agent.daemon import Agent
from edgefleet.agent.settings import AgentSettings
from edgefleet.protocol import DeviceManifest, HubKey, ModuleSpec, sign_manifest

KEY = HubKey.generate()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    settings = AgentSettings(
        device_id="dev-unit",
        data_dir=tmp_path,
        hub_public_key=KEY.public_key_b64,
        module_command=[sys.executable, "-c", "pass"],
    )
    a = Agent(settings)
    a.intake.try_hub_key()
    yield a


def signed(generation: int, device_id: str = "dev-unit", key: HubKey = KEY, modules: int = 0) -> bytes:
    specs = [ModuleSpec(name=f"m{i}", service="s") for i in range(modules)]
    manifest = DeviceManifest(device_id=device_id, generation=generation, modules=specs)
    return sign_manifest(manifest, key).model_dump_json(by_alias=True).encode()


def test_valid_manifest_is_accepted_and_persisted(agent: Agent, tmp_path: Path) -> None:
    assert agent.accept_manifest(signed(3, modules=1))
    assert agent.desired is not None and agent.desired.generation == 3
    saved = json.loads((tmp_path / "state.json").read_text())
    assert saved["generation"] == 3 and saved["signed_manifest"]["manifest"]["generation"] == 3
    # a restarted agent continues from disk without the broker
    again = Agent(agent.settings)
    assert again.desired == agent.desired


def test_redelivered_retained_copy_is_silently_ignored(agent: Agent) -> None:
    payload = signed(3)
    assert agent.accept_manifest(payload)
    assert not agent.accept_manifest(payload)
    assert agent.intake.rejected is None


def tampered(payload: bytes) -> bytes:
    body = json.loads(payload)
    body["manifest"]["generation"] = 99
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (signed(1), "not greater than the last accepted generation 2"),
        (signed(2, modules=1), "not greater than the last accepted generation 2"),  # same generation, other body
        (tampered(signed(5)), "signature does not verify"),
        (signed(5, key=HubKey.generate()), "signed with key"),
        (signed(5, device_id="dev-other"), "addressed to device 'dev-other'"),
        (b"{not json", "not a signed manifest"),
        (b'{"manifest": {}, "signature": "", "keyId": ""}', "signed with key"),
    ],
    ids=["stale", "same-generation-different-body", "tampered", "wrong-key", "wrong-device", "garbage", "unsigned"],
)
def test_rejected_manifest_is_reported_and_changes_nothing(agent: Agent, payload: bytes, reason: str) -> None:
    assert agent.accept_manifest(signed(2, modules=0))
    before = (agent.desired, agent.state)
    assert not agent.accept_manifest(payload)
    assert reason in (agent.intake.rejected or "")
    assert (agent.desired, agent.state) == before
    report = agent.build_report(agent.reconcile())
    assert report.rejected == agent.intake.rejected and report.generation == 2
    # the next good manifest clears the rejection
    assert agent.accept_manifest(signed(6))
    assert agent.intake.rejected is None


def test_cleared_retained_message_is_ignored(agent: Agent) -> None:
    assert not agent.accept_manifest(b"")
    assert agent.intake.rejected is None and agent.desired is None
