"""Crash safety: SIGKILL the agent (a real process) at 30 random points of rollouts, restart it, and
check that it converges every time, with exactly one process per module and a clean cache.

Each kill lands in a phase picked by a seeded RNG, at a random offset into it:

    downloading  while the new generation's artifact is coming in (the server is throttled)
    switching    right after the download: old instances stopping, new ones being created/started
    starting     the new instance's process exists but is not ready yet
    anytime      a random delay after the manifest was published

The seed is printed (``-s``) and named in every failure; ``EDGEFLEET_CRASH_SEED=<n>`` replays a run.
One agent lifetime is: recover from the previous kill, converge, start the next rollout, die.
Generations alternate between two modules (one re-downloaded every time, one only reconfigured)
and one module (the other removed), so stopping, removing and creating are all crossed.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from protocol import ArtifactRef, ModuleSpec, ReportedState
from tests.support.agent_harness import (
    FAKE_MODULE,
    TestHub,
    agent_env,
    kill_module_processes,
    start_agent_process,
    stop_process,
)
from tests.support.artifact_server import ArtifactServer
from tests.support.processes import Mosquitto, wait_for

KILLS = 30
ARTIFACT_BYTES = 640 * 1024
RATE_BPS = 2 * 1024 * 1024  # ~0.3 s per download: long enough to be killed in
QUICK_DISCOVERY = [sys.executable, "-c", "print('[]')"]


def module_processes(device_id: str) -> dict[str, list[tuple[int, str]]]:
    """Live module processes of this device: module -> [(pid, spec hash)]."""
    found: dict[str, list[tuple[int, str]]] = {}
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        cmd = proc.info.get("cmdline") or []
        if proc.info.get("status") == psutil.STATUS_ZOMBIE or "--edgefleet-device" not in cmd:
            continue
        try:
            if cmd[cmd.index("--edgefleet-device") + 1] != device_id:
                continue
            module = cmd[cmd.index("--edgefleet-module") + 1]
            spec_hash = cmd[cmd.index("--edgefleet-spec") + 1]
        except (ValueError, IndexError):
            continue
        found.setdefault(module, []).append((proc.pid, spec_hash))
    return found


def corrupt_blobs(blobs: Path) -> list[str]:
    """Cache entries whose content does not hash to their name."""
    bad = []
    for blob in blobs.iterdir():
        if hashlib.sha256(blob.read_bytes()).hexdigest() != blob.name:
            bad.append(blob.name)
    return bad


def generation_modules(generation: int, model: ArtifactRef, shared: ArtifactRef) -> list[ModuleSpec]:
    health = {"intervalS": 0.5, "timeoutS": 2.0, "failureThreshold": 3, "startupTimeoutS": 30}
    scorer = ModuleSpec.model_validate(
        {
            "name": "scorer",
            "service": "scorer-svc",
            "artifacts": [model.to_wire(), shared.to_wire()],
            "env": {"FAKE_MODULE_READY_AFTER": "0.3"},
            "health": health,
            "startupOrder": 1,
        }
    )
    if generation % 4 == 0:
        return [scorer]
    side = ModuleSpec.model_validate(
        {
            "name": "side",
            "service": "side-svc",
            "artifacts": [shared.to_wire()],
            "env": {"GENERATION": str(generation)},
            "health": health,
        }
    )
    return [scorer, side]


def converged_to(generation: int, modules: list[ModuleSpec]):  # type: ignore[no-untyped-def]
    want = {m.name: m.spec_hash() for m in modules}

    def check(r: ReportedState) -> bool:
        got = {m.name: m.spec_hash for m in r.modules if m.state.value == "Healthy"}
        return r.generation == generation and r.converged and got == want

    return check


class Agents:
    """Starts, SIGKILLs and restarts the agent process for one device."""

    def __init__(self, device_id: str, mosquitto: Mosquitto, hub: TestHub, data_dir: Path, log: Path) -> None:
        self.args = ["--device-id", device_id, "--broker", mosquitto.url, "--data-dir", str(data_dir)]
        self.args += ["--hub", "http://127.0.0.1:9", "--hub-key", hub.key.public_key_b64]
        self.env = agent_env(
            module_command=FAKE_MODULE,
            discovery_command=QUICK_DISCOVERY,
            startup_probe_interval_s=0.05,
            restart_backoff_base_s=0.2,
            restart_backoff_max_s=1.0,
            step_retry_base_s=0.1,
            step_retry_max_s=0.5,
            stop_grace_s=3,
            report_heartbeat_s=5,
            telemetry_interval_s=60,
            reconnect_min_s=0.2,
            reconnect_max_s=1.0,
        )
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = start_agent_process(self.args, self.env, self.log)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGKILL)

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def device_id() -> Iterator[str]:
    dev = f"crash-{os.getpid()}"
    yield dev
    kill_module_processes(dev)


@pytest.mark.slow  # ~100 s on 2 cores: 30 agent restarts, each stopping adopted modules
def test_sigkill_at_random_points_of_rollouts_always_converges(
    mosquitto: Mosquitto, tmp_path: Path, device_id: str
) -> None:
    seed = int(os.environ.get("EDGEFLEET_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\ncrash test seed: {seed} (replay with EDGEFLEET_CRASH_SEED={seed})")
    rng = random.Random(seed)
    data_dir = tmp_path / "agent"
    blobs = data_dir / "cache" / "blobs"
    partial = data_dir / "cache" / "partial"
    hub = TestHub(mosquitto.port, device_id)
    agents = Agents(device_id, mosquitto, hub, data_dir, tmp_path / "agent.log")
    hit: Counter[str] = Counter()
    aimed: Counter[str] = Counter()
    started = time.monotonic()
    try:
        with ArtifactServer(tmp_path / "artifacts", rate_bps=RATE_BPS) as artifacts:
            shared = artifacts.add("shared.bin", b"shared bytes" * 1000, path="model/shared.bin")

            def rollout(generation: int) -> list[ModuleSpec]:
                data = random.Random(seed * 1000 + generation).randbytes(ARTIFACT_BYTES)
                model = artifacts.add(f"model-{generation}.bin", data, path="model/model.bin")
                modules = generation_modules(generation, model, shared)
                hub.publish(generation, modules)
                return modules

            agents.start()
            modules = rollout(1)
            try:
                hub.wait_report(converged_to(1, modules), timeout=60, what="first generation converged")
            except TimeoutError as exc:
                raise AssertionError(f"{exc}\n--- agent log ---\n{agents.log_tail()}") from None

            for kill in range(KILLS):
                generation = kill + 2
                where = f"kill {kill + 1}/{KILLS} (seed {seed}, generation {generation})"
                modules = rollout(generation)
                scorer_hash = modules[0].spec_hash()
                model_hex = modules[0].artifacts[0].digest.split(":")[1]
                phase = rng.choice(["downloading", "switching", "starting", "anytime"])
                aimed[phase] += 1
                offset = rng.uniform(0.0, 1.2 if phase == "anytime" else 0.25)
                part, blob = partial / f"{model_hex}.part", blobs / model_hex
                if phase == "downloading":
                    _poll(lambda: part.exists() or blob.exists())  # noqa: B023 (called in this iteration)
                elif phase == "switching":
                    _poll(blob.exists)
                elif phase == "starting":
                    _poll(lambda: _runs(device_id, "scorer", scorer_hash))  # noqa: B023
                time.sleep(offset)
                hit[_observed_phase(device_id, scorer_hash, part, blob)] += 1
                offline_seen = hub.presence.count("offline")
                agents.kill()
                # the broker's last will marks the end of the dead agent's messages: later reports are the new one's
                wait_for(lambda: hub.presence.count("offline") > offline_seen, 15, what=f"last will after {where}")  # noqa: B023
                hub.reports.clear()
                agents.start()
                try:
                    hub.wait_report(converged_to(generation, modules), timeout=60, what=f"convergence after {where}")
                except TimeoutError as exc:
                    raise AssertionError(f"{exc}\n--- agent log ---\n{agents.log_tail()}") from None

                procs = module_processes(device_id)
                want = {m.name: m.spec_hash() for m in modules}
                assert {name: [h for _, h in found] for name, found in procs.items()} == {
                    name: [h] for name, h in want.items()
                }, f"after {where}: module processes {procs}, want one each of {want}"
                assert corrupt_blobs(blobs) == [], f"after {where}: cache entries that do not match their digest"
                dirs = {p.name: sorted(d.name for d in p.iterdir()) for p in (data_dir / "modules").iterdir()}
                assert dirs == {name: [h] for name, h in want.items()}, f"after {where}: instance directories {dirs}"
    finally:
        agents.close()
        hub.close()
    took = time.monotonic() - started
    print(f"{KILLS} kills in {took:.1f}s; aimed at {dict(aimed)}; observed at kill time {dict(hit)}")


def _runs(device_id: str, module: str, spec_hash: str) -> bool:
    return any(h == spec_hash for _, h in module_processes(device_id).get(module, []))


def _poll(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Wait for a phase to begin; if it never shows (already over), kill anyway: any point is valid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return False


def _observed_phase(device_id: str, scorer_hash: str, part: Path, blob: Path) -> str:
    if part.exists() and not blob.exists():
        return "downloading"
    if not blob.exists():
        return "before download"
    if not _runs(device_id, "scorer", scorer_hash):
        return "switching"
    return "starting or converged"
