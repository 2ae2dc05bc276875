"""Automatic rollback with real module processes: a generation that never gets ready is rolled back
to last-known-good after its window, reported Failed + rolled back, not retried (no flapping), and
a newer good generation applies normally."""

from __future__ import annotations

import time
from pathlib import Path

import psutil

from edgefleet.protocol import ReportedState
from tests.integration.test_agent_reconcile import RunningAgent, env, fast_settings, get_json, healthy, spec
from tests.support.agent_harness import TestHub, module_pids, module_state
from tests.support.artifact_server import ArtifactServer
from tests.support.processes import Mosquitto, wait_for

__all__ = ["env"]  # the fixture, shared with the reconcile tests

WINDOW_S = 1.5


def spec_of(pid: int) -> str:
    cmd = psutil.Process(pid).cmdline()
    return cmd[cmd.index("--edgefleet-spec") + 1]


def rolled_back(generation: int):  # type: ignore[no-untyped-def]
    def check(r: ReportedState) -> bool:
        return r.generation == generation and r.rolled_back_from == generation and r.converged

    return check


def test_never_ready_generation_rolls_back_stays_rolled_back_and_a_newer_one_applies(
    env: tuple[TestHub, ArtifactServer], mosquitto: Mosquitto, tmp_path: Path
) -> None:
    hub, artifacts = env
    v1 = artifacts.add("v1.onnx", b"one" * 100, path="model/model.onnx")
    v2 = artifacts.add("v2.onnx", b"two" * 100, path="model/model.onnx")
    settings = fast_settings(
        hub.device_id, mosquitto, tmp_path / "agent", hub.key.public_key_b64, rollback={"window_s": WINDOW_S}
    )
    running = RunningAgent(settings)
    try:
        web1, side = spec("web", [v1]), spec("side", [v1])
        hub.publish(1, [web1, side])
        first = hub.wait_report(lambda r: healthy("web", 1)(r) and r.last_known_good == 1, what="gen 1 known good")
        endpoint = next(m.endpoint for m in first.modules if m.name == "web")
        (side_pid,) = module_pids(hub.device_id, "side")

        # generation 2: web never gets ready; side is unchanged
        web2 = spec("web", [v2], env={"FAKE_MODULE_READY_AFTER": "100000"})
        hub.publish(2, [web2, side])
        report = hub.wait_report(rolled_back(2), what="generation 2 rolled back to 1")
        by_name = {m.name: m for m in report.modules}
        assert by_name["web"].state.value == "Failed" and by_name["web"].rolled_back
        assert "not Healthy in time (Transitioning: waiting for the module to be ready)" in by_name["web"].message
        assert "rolled back to generation 1" in by_name["web"].message
        assert by_name["side"].state.value == "Failed" and by_name["side"].rolled_back  # the generation failed
        assert report.last_known_good == 1 and by_name["web"].endpoint == endpoint
        (web_pid,) = module_pids(hub.device_id, "web")
        assert spec_of(web_pid) == web1.spec_hash()  # generation 1's web serves again, on its port
        assert get_json(f"{endpoint}/info")["args"]["edgefleet_spec"] == web1.spec_hash()
        assert module_pids(hub.device_id, "side") == [side_pid]  # healthy and unchanged: never restarted

        # no flapping: over several windows the failed generation is not tried again
        seen = len(hub.reports)
        time.sleep(4 * WINDOW_S)
        assert module_pids(hub.device_id, "web") == [web_pid] and module_pids(hub.device_id, "side") == [side_pid]
        later = [*hub.reports[seen:], hub.wait_report(rolled_back(2))]
        assert all(r.rolled_back_from == 2 and module_state(r, "web") == "Failed" for r in later)
        assert running.agent.state.rollback is not None and running.agent.state.last_known_good == 1

        # an agent restart remembers the rollback: still generation 1's web, still reported rolled back
        running.stop()
        before = len(hub.reports)
        running = RunningAgent(settings)
        wait_for(
            lambda: [r for r in hub.reports[before:] if r.seq >= 1 and rolled_back(2)(r)],
            30,
            what="report after restart",
        )
        assert module_pids(hub.device_id, "web") == [web_pid]

        # generation 3 (good) applies normally and becomes last-known-good
        web3 = spec("web", [v2])
        hub.publish(3, [web3, side])
        report = hub.wait_report(
            lambda r: healthy("web", 3)(r) and r.last_known_good == 3, what="generation 3 Healthy and known good"
        )
        assert report.rolled_back_from is None and not any(m.rolled_back for m in report.modules)
        (new_pid,) = module_pids(hub.device_id, "web")
        assert spec_of(new_pid) == web3.spec_hash()
        assert module_pids(hub.device_id, "side") == [side_pid]
        assert running.agent.serving_gaps["web"] > 0
    finally:
        running.stop()
