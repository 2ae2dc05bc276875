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


def announcing(generation: int, key: HubKey, announced: HubKey | None) -> bytes:
    manifest = DeviceManifest(
        device_id="dev-unit", generation=generation, next_hub_key=announced.public_key_b64 if announced else None
    )
    return sign_manifest(manifest, key).model_dump_json(by_alias=True).encode()


def test_key_rotation_announced_under_the_old_key_then_only_the_new_key(agent: Agent, tmp_path: Path) -> None:
    new = HubKey.generate()
    assert not agent.accept_manifest(signed(1, key=new))  # not announced: refused
    assert "re-provision the device" in (agent.intake.rejected or "")
    assert agent.accept_manifest(announcing(2, KEY, new))  # announced under the pinned key
    assert agent.intake.next_hub_key == new.public_key_b64
    assert agent.accept_manifest(announcing(3, KEY, new))  # the old key still works until the new one is used
    assert agent.accept_manifest(signed(4, key=new))  # the new key: from now on the only one
    assert agent.intake.hub_key == new.public_key_b64 and agent.intake.next_hub_key is None
    assert not agent.accept_manifest(signed(5, key=KEY))
    pinned = json.loads((tmp_path / "hub-key.json").read_text())
    assert pinned["publicKey"] == new.public_key_b64 and pinned["rotatedFrom"] == [KEY.public_key_b64]
    # a restart with the provisioned (old) key configured keeps the rotated one
    again = Agent(agent.settings)
    again.intake.try_hub_key()
    assert again.intake.hub_key == new.public_key_b64


def test_an_announcement_survives_a_restart_and_a_forged_one_is_not_believed(agent: Agent) -> None:
    new, forger = HubKey.generate(), HubKey.generate()
    assert not agent.accept_manifest(announcing(2, forger, forger))  # not signed with the pinned key: ignored
    assert agent.intake.next_hub_key is None
    assert agent.accept_manifest(announcing(2, KEY, new))
    again = Agent(agent.settings)
    again.intake.try_hub_key()
    assert again.intake.next_hub_key == new.public_key_b64 and again.intake.hub_key == KEY.public_key_b64
    assert again.accept_manifest(signed(3, key=new))


def test_manifests_without_an_announcement_keep_their_old_wire_form() -> None:
    wire = DeviceManifest(device_id="d", generation=1).to_wire()
    assert "nextHubKey" not in wire
    assert DeviceManifest(device_id="d", generation=1, next_hub_key=KEY.public_key_b64).to_wire()["nextHubKey"]
