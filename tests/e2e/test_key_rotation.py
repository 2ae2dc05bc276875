"""Rotating the hub's manifest key with a real agent: announced under the old key, then only the new one,
also after the agent restarts from a bundle that still names the old key."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.e2e.conftest import BIN, Fleet
from tests.support.processes import wait_for

SAMPLE = Path(__file__).resolve().parents[2] / "modules" / "samples" / "digits"


@pytest.mark.timeout(400)
def test_rotate_the_hub_key_under_a_running_agent(fleet: Fleet) -> None:
    fleet.start_agent("dev-k", "site=e2e")
    wait_for(lambda: fleet.cli_json("device", "show", "dev-k")["presence"] == "online", 60, what="dev-k online")
    old = fleet.cli_json("hub", "info")["keyFingerprint"]

    started = fleet.cli("hub", "rotate-key").stdout
    assert "announced to every device" in started
    wait_for(lambda: fleet.cli_json("hub", "rotate-key", "--status")["complete"], 60, what="dev-k acknowledged")
    finished = fleet.cli_json("hub", "rotate-key", "--finish")
    assert finished["nextKeyId"] is None and finished["keyFingerprint"] != old

    # manifests signed with the new key are accepted: deploy, Healthy
    fleet.cli("model", "register", "-n", "digits", "-p", str(SAMPLE / "digits_int8.onnx"))
    fleet.cli("model", "deploy", "-n", "svc-k", "-m", "digits:1", timeout=300)
    assert fleet.cli_json("service", "show", "svc-k")["state"] == "Healthy"

    # restarted with only its id: the installed bundle names the old key, the pinned rotation wins
    agent = fleet.procs["agent-dev-k"]
    agent.send_signal(signal.SIGTERM)
    agent.wait(30)
    fleet.spawn(
        "agent-dev-k-again",
        [str(BIN / "edgefleet-agent"), "--device-id", "dev-k", "--data-dir", str(fleet.workdir / "agents" / "dev-k"),
         "--stop-modules-on-exit"],
    )  # fmt: skip
    wait_for(lambda: fleet.cli_json("service", "show", "svc-k")["state"] == "Healthy", 120, what="svc-k Healthy again")
    fleet.cli("service", "delete", "svc-k", timeout=120)  # a new manifest, signed with the new key, applied
    device = fleet.cli_json("device", "show", "dev-k")
    assert not device["lastReport"]["modules"] and not device["lastReport"]["rejected"], device
