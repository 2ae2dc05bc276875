"""Crash safety: SIGKILL the agent (a real process) at 30 random points of rollouts, restart it, and
check that it converges every time, with exactly one process per module and a clean cache.

Some generations are bad: their scorer never gets ready, so the agent must roll back to
last-known-good when the rollback window ends. Each kill is aimed at a phase picked by a seeded RNG,
at a random offset into it, and what the device was doing when it died is observed; the test fails
unless kills landed in every phase named here (a phase no kill landed in is aimed at again, at its
start, a few more times). Good generations:

    downloading  while the new generation's artifact is coming in (the server is throttled)
    switching    right after the download: old instances stopping, new ones being created/started
    starting     the new instance's process exists but is not ready yet
    anytime      a random delay after the manifest was published (lands in any phase, or converged)

Bad generations (every phase is aimed at, over the run):

    window       the bad scorer runs, not ready, before the rollback window ends
    rollback     the rollback is decided (recorded in the agent's state): bad instances stopping
    restoring    the last-known-good scorer's process is back but not ready yet
    rolled back  right after the device reported the rollback

After each restart the device must settle: a good generation Healthy (and last-known-good); a bad
one rolled back: reported Failed + rolled back, the last-known-good spec hashes running, and never a
report that goes back to the bad generation once the rollback was reported or recorded.

The rollback window is the agent setting EDGEFLEET_AGENT_ROLLBACK__WINDOW_S, chosen per agent lifetime:
short while a bad generation is out, long while a good one is, so that a good generation is never
rolled back only because this (shared) machine was slow to restart the agent. The window survives
restarts (it counts from when replacing began), so a short one for good generations would make the test
depend on timing; switching lifetimes is a graceful restart, which must adopt the modules untouched.

The seed is printed (``-s``) and named in every failure; ``EDGEFLEET_CRASH_SEED=<n>`` replays a run.
One agent lifetime is: recover from the previous kill, converge, start the next rollout, die.
Generations alternate between two modules (one re-downloaded every time, one only reconfigured)
and one module (the other removed), so stopping, removing and creating are all crossed, also when
rolling back.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from edgefleet.protocol import ArtifactRef, ModuleSpec, ReportedState
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
BAD = 12  # generations among the killed ones whose scorer never gets ready
GOOD_PHASES = ["downloading", "switching", "starting", "anytime"]
BAD_PHASES = ["window", "rollback", "restoring", "rolled back"]
OBSERVABLE = [p for p in GOOD_PHASES + BAD_PHASES if p != "anytime"]  # "anytime" is an aim, not a state
AIM_AGAIN = 3  # extra kills at most per phase no kill landed in
ROLLBACK_WINDOW_S = 2.0  # agent setting while a bad generation is out
SAFE_WINDOW_S = 600.0  # while a good one is: it never rolls back, however slow the machine
ARTIFACT_BYTES = 640 * 1024
RATE_BPS = 2 * 1024 * 1024  # ~0.3 s per download: long enough to be killed in
QUICK_DISCOVERY = [sys.executable, "-c", "print('[]')"]
SETTLE_S = 60.0  # generous: the machine is shared


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


def agent_state(data_dir: Path) -> dict[str, object]:
    """The agent's state file (written atomically: any read sees a whole version)."""
    try:
        raw = json.loads((data_dir / "state.json").read_text())
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def recorded_rollback(data_dir: Path) -> int | None:
    """The generation the agent's state says it rolled back from (None: no rollback)."""
    rollback = agent_state(data_dir).get("rollback")
    return rollback.get("from_generation") if isinstance(rollback, dict) else None


def generation_modules(generation: int, model: ArtifactRef, shared: ArtifactRef, bad: bool) -> list[ModuleSpec]:
    health = {"intervalS": 0.5, "timeoutS": 2.0, "failureThreshold": 3, "startupTimeoutS": 30}
    ready_after = "100000" if bad else "0.3"  # bad: never ready within any window
    scorer = ModuleSpec.model_validate(
        {
            "name": "scorer",
            "service": "scorer-svc",
            "artifacts": [model.to_wire(), shared.to_wire()],
            "env": {"FAKE_MODULE_READY_AFTER": ready_after},
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


def hashes(modules: list[ModuleSpec]) -> dict[str, str]:
    return {m.name: m.spec_hash() for m in modules}


@dataclass(frozen=True)
class Expect:
    """Where the device must settle for one generation: Healthy, or (bad) rolled back to last-known-good."""

    generation: int
    modules: list[ModuleSpec]
    bad: bool
    lkg_generation: int  # the last-known-good before this generation
    lkg_modules: list[ModuleSpec]

    @property
    def serving(self) -> dict[str, str]:
        """Module -> spec hash of the one process each that must run."""
        return hashes(self.lkg_modules if self.bad else self.modules)

    @property
    def known_good(self) -> tuple[int, list[ModuleSpec]]:
        """Last-known-good once settled: this generation if good, else the one before."""
        return (self.lkg_generation, self.lkg_modules) if self.bad else (self.generation, self.modules)

    @property
    def what(self) -> str:
        if self.bad:
            return f"generation {self.generation} rolled back to {self.lkg_generation}"
        return f"generation {self.generation} Healthy"

    def settled(self, r: ReportedState) -> bool:
        if r.generation != self.generation or not r.converged:
            return False
        if not self.bad:
            got = {m.name: m.spec_hash for m in r.modules if m.state.value == "Healthy"}
            return r.rolled_back_from is None and r.last_known_good == self.generation and got == self.serving
        serving = self.serving
        return (
            r.rolled_back_from == self.generation
            and r.last_known_good == self.lkg_generation
            and [m.name for m in r.modules] == [m.name for m in self.modules]
            and all(m.state.value == "Failed" and m.rolled_back for m in r.modules)
            # where last-known-good has the module, that version serves (its spec hash is reported)
            and all(m.spec_hash == serving.get(m.name) for m in r.modules)
        )

    def check_reports(self, reports: list[ReportedState], where: str, rolled_back_from_start: bool = False) -> bool:
        """A good generation is never rolled back; a bad one, once rolled back, stays so (no flapping).
        Returns whether the reports ended rolled back."""
        mine = [r for r in reports if r.generation == self.generation]
        if not self.bad:
            flagged = [r.seq for r in mine if r.rolled_back_from is not None]
            assert not flagged, f"{where}: good generation {self.generation} reported rolled back (seq {flagged})"
            return False
        seen = rolled_back_from_start
        for r in mine:
            if seen:
                assert r.rolled_back_from == self.generation, (
                    f"{where}: generation {self.generation} flapped back after its rollback: {r}"
                )
            seen = seen or r.rolled_back_from == self.generation
        return seen


class Agents:
    """Starts, SIGKILLs and restarts the agent process for one device."""

    def __init__(self, device_id: str, mosquitto: Mosquitto, hub: TestHub, data_dir: Path, log: Path) -> None:
        self.hub = hub
        self.args = ["--device-id", device_id, "--broker", mosquitto.url, "--data-dir", str(data_dir)]
        self.args += ["--hub", "http://127.0.0.1:9", "--hub-key", hub.key.public_key_b64]
        self.env = agent_env(
            modules__command=FAKE_MODULE,
            modules__startup_probe_interval_s=0.05,
            modules__stop_grace_s=3,
            discovery__command=QUICK_DISCOVERY,
            restart__backoff_base_s=0.2,
            restart__backoff_max_s=1.0,
            retry__base_s=0.1,
            retry__max_s=0.5,
            reporting__heartbeat_s=5,
            reporting__telemetry_interval_s=60,
            mqtt__reconnect_min_s=0.2,
            mqtt__reconnect_max_s=1.0,
        )
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.window_s = SAFE_WINDOW_S

    def start(self, window_s: float) -> None:
        self.window_s = window_s
        env = {**self.env, **agent_env(rollback__window_s=window_s)}
        self.proc = start_agent_process(self.args, env, self.log)

    def end(self, sig: int, where: str) -> list[ReportedState]:
        """Stop the agent (SIGKILL: a crash; SIGTERM: graceful) and return all of that lifetime's reports."""
        assert self.proc is not None
        offline_seen = self.hub.presence.count("offline")
        if sig == signal.SIGKILL:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        else:
            stop_process(self.proc, sig, timeout=30)
        # the offline presence (last will, or said on a graceful stop) ends the dead agent's messages
        wait_for(lambda: self.hub.presence.count("offline") > offline_seen, 15, what=f"offline presence {where}")
        reports = list(self.hub.reports)
        self.hub.reports.clear()
        return reports

    def close(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGKILL)

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def settle(self, expect: Expect, what: str, rolled_back_from_start: bool = False) -> ReportedState:
        """Wait for the device to settle where ``expect`` says; then check this lifetime's reports."""
        try:
            found = self.hub.wait_report(expect.settled, timeout=SETTLE_S, what=what)
        except TimeoutError as exc:
            expect.check_reports(list(self.hub.reports), what, rolled_back_from_start)  # the likelier cause
            raise AssertionError(f"{exc}\n--- agent log ---\n{self.log_tail()}") from None
        expect.check_reports(list(self.hub.reports), what, rolled_back_from_start)
        return found


@pytest.fixture
def device_id() -> Iterator[str]:
    dev = f"crash-{os.getpid()}"
    yield dev
    kill_module_processes(dev)


# ~65 s on 2 cores, kept in the default run (`slow` is for the long fuzz runs): 30 agent kills +
# ~16 graceful restarts, bad generations wait out their window
def test_sigkill_at_random_points_of_rollouts_always_converges(
    mosquitto: Mosquitto, tmp_path: Path, device_id: str
) -> None:
    seed = int(os.environ.get("EDGEFLEET_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\ncrash test seed: {seed} (replay with EDGEFLEET_CRASH_SEED={seed})")
    rng = random.Random(seed)
    # the whole schedule up front: what the RNG draws never depends on how the run goes
    bad_kills = set(rng.sample(range(KILLS), BAD))
    bad_phases = [BAD_PHASES[i % len(BAD_PHASES)] for i in range(BAD)]  # every phase aimed at, several times
    good_phases = [GOOD_PHASES[i % len(GOOD_PHASES)] for i in range(KILLS - BAD)]
    rng.shuffle(bad_phases)
    rng.shuffle(good_phases)
    schedule: list[tuple[bool, str, float]] = []
    for kill in range(KILLS):
        if kill in bad_kills:
            phase = bad_phases.pop()
            top = {"window": ROLLBACK_WINDOW_S / 2, "rollback": 0.05, "restoring": 0.2, "rolled back": 0.3}[phase]
        else:
            phase = good_phases.pop()
            top = 1.2 if phase == "anytime" else 0.25
        schedule.append((kill in bad_kills, phase, rng.uniform(0.0, top)))
    print(f"bad generations: {sorted(k + 2 for k in bad_kills)}")

    data_dir = tmp_path / "agent"
    blobs = data_dir / "cache" / "blobs"
    partial = data_dir / "cache" / "partial"
    hub = TestHub(mosquitto.port, device_id)
    agents = Agents(device_id, mosquitto, hub, data_dir, tmp_path / "agent.log")
    hit: Counter[str] = Counter()  # phase observed at kill time
    aimed: Counter[str] = Counter()
    again: Counter[str] = Counter()  # extra kills aimed at a phase no kill had landed in
    graceful = 0
    started = time.monotonic()

    def check_device(expect: Expect, where: str) -> None:
        want = expect.serving
        procs = module_processes(device_id)
        assert {name: [h for _, h in found] for name, found in procs.items()} == {
            name: [h] for name, h in want.items()
        }, f"after {where}: module processes {procs}, want one each of {want} ({expect.what})"
        assert corrupt_blobs(blobs) == [], f"after {where}: cache entries that do not match their digest"
        dirs = {p.name: sorted(d.name for d in p.iterdir()) for p in (data_dir / "modules").iterdir()}
        assert dirs == {name: [h] for name, h in want.items()}, f"after {where}: instance directories {dirs}"

    try:
        with ArtifactServer(tmp_path / "artifacts", rate_bps=RATE_BPS) as artifacts:
            shared = artifacts.add("shared.bin", b"shared bytes" * 1000, path="model/shared.bin")

            def rollout(generation: int, bad: bool) -> list[ModuleSpec]:
                data = random.Random(seed * 1000 + generation).randbytes(ARTIFACT_BYTES)
                model = artifacts.add(f"model-{generation}.bin", data, path="model/model.bin")
                modules = generation_modules(generation, model, shared, bad)
                hub.publish(generation, modules)
                return modules

            first = rollout(1, bad=False)
            settled = Expect(1, first, bad=False, lkg_generation=1, lkg_modules=first)
            # generation 1 cannot roll back (nothing is known good yet): start with the next one's window
            agents.start(ROLLBACK_WINDOW_S if 0 in bad_kills else SAFE_WINDOW_S)
            agents.settle(settled, "first generation converged")

            pending = list(schedule)
            kill = -1
            while pending:
                bad, phase, offset = pending.pop(0)
                kill += 1
                generation = kill + 2
                where = (
                    f"kill {kill + 1}/{KILLS}{' (again)' if kill >= KILLS else ''} "
                    f"(seed {seed}, generation {generation}{' bad' if bad else ''}, {phase})"
                )
                window_s = ROLLBACK_WINDOW_S if bad else SAFE_WINDOW_S
                if agents.window_s != window_s:  # the window is a start-up setting: restart gracefully
                    pids = module_processes(device_id)
                    lifetime = agents.end(signal.SIGTERM, f"before {where}")
                    settled.check_reports(lifetime, f"before {where}")
                    agents.start(window_s)
                    agents.settle(settled, f"{settled.what} after a graceful restart before {where}", settled.bad)
                    assert module_processes(device_id) == pids, f"graceful restart before {where}: modules restarted"
                    graceful += 1

                lkg_generation, lkg_modules = settled.known_good
                modules = rollout(generation, bad)
                expect = Expect(generation, modules, bad, lkg_generation, lkg_modules)
                scorer_hash = modules[0].spec_hash()
                old_scorer_hash = lkg_modules[0].spec_hash()
                model_hex = modules[0].artifacts[0].digest.split(":")[1]
                part, blob = partial / f"{model_hex}.part", blobs / model_hex
                aimed[phase] += 1
                if phase == "downloading":
                    _poll(lambda: part.exists() or blob.exists())  # noqa: B023 (called in this iteration)
                elif phase == "switching":
                    _poll(blob.exists)
                elif phase in ("starting", "window"):
                    _poll(lambda: _runs(device_id, "scorer", scorer_hash))  # noqa: B023
                elif phase == "rollback":
                    _poll(lambda: recorded_rollback(data_dir) == generation, timeout=SETTLE_S)  # noqa: B023
                elif phase == "restoring":
                    _poll(lambda: _runs(device_id, "scorer", scorer_hash))  # noqa: B023
                    _poll(lambda: _runs(device_id, "scorer", old_scorer_hash), timeout=SETTLE_S)  # noqa: B023
                elif phase == "rolled back":
                    agents.settle(expect, f"{expect.what} before {where}")
                time.sleep(offset)
                if bad:
                    hit[_observed_rollback_phase(device_id, data_dir, generation, scorer_hash, old_scorer_hash)] += 1
                else:
                    hit[_observed_phase(device_id, data_dir, scorer_hash, part, blob)] += 1

                lifetime = agents.end(signal.SIGKILL, f"after {where}")
                recorded = recorded_rollback(data_dir) == generation
                reported = expect.check_reports(lifetime, f"before {where}")
                agents.start(window_s)
                # a rollback the dead agent reported or recorded is never undone, not even for one report
                agents.settle(expect, f"{expect.what} after {where}", rolled_back_from_start=reported or recorded)
                check_device(expect, where)
                settled = expect
                if not pending:  # aim again, at its very start, at a phase no kill landed in yet
                    for missed in (p for p in OBSERVABLE if not hit[p] and again[p] < AIM_AGAIN):
                        again[missed] += 1
                        pending.append((missed in BAD_PHASES, missed, 0.0))
    finally:
        agents.close()
        hub.close()
    took = time.monotonic() - started
    print(
        f"{KILLS} kills ({BAD} in bad generations), {sum(again.values())} aimed again and {graceful} graceful "
        f"restarts in {took:.1f}s; aimed at {dict(aimed)}; observed at kill time {dict(hit)}"
    )
    assert all(aimed[p] for p in GOOD_PHASES + BAD_PHASES), f"seed {seed}: phases never aimed at: {dict(aimed)}"
    missed = [p for p in OBSERVABLE if not hit[p]]
    assert not missed, (
        f"seed {seed}: no kill landed in {missed} (aimed at {dict(aimed)}, observed at kill time {dict(hit)})"
    )


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


def _observed_phase(device_id: str, data_dir: Path, scorer_hash: str, part: Path, blob: Path) -> str:
    """The phase of a good generation's rollout at this moment (GOOD_PHASES, or before/after them)."""
    if part.exists() and not blob.exists():
        return "downloading"
    if not blob.exists():
        return "before download"
    if not _runs(device_id, "scorer", scorer_hash):
        return "switching"
    return "converged" if _scorer_ready(data_dir) else "starting"


def _observed_rollback_phase(device_id: str, data_dir: Path, generation: int, bad_hash: str, old_hash: str) -> str:
    """The phase of a bad generation's rollout and rollback at this moment (BAD_PHASES, or before them)."""
    if recorded_rollback(data_dir) != generation:
        return "window" if _runs(device_id, "scorer", bad_hash) else "before the window"
    if not _runs(device_id, "scorer", old_hash):
        return "rollback"  # decided and recorded; the last-known-good scorer is not running yet
    return "rolled back" if _scorer_ready(data_dir) else "restoring"


def _scorer_ready(data_dir: Path) -> bool:
    """Whether the scorer answers ready on its port (the one the agent's state names)."""
    ports = agent_state(data_dir).get("ports")
    port = ports.get("scorer") if isinstance(ports, dict) else None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1.0) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False
