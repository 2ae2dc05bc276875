"""Issue 10: an update of a loaded service loses no request.

The real scoring module (digits sample, 2 worker processes, so its listeners carry SO_REUSEPORT)
serves under continuous load from client threads, half on kept-alive connections and half on a new
connection per request, while the agent updates it to a new generation: the new instance starts on
the same port beside the old one, and the old one is stopped (it drains) only once the new one is
Ready. No request may fail. A new generation that never gets Ready leaves the old one serving
until the rollback.

What remains open: a connection the old instance had queued, or a kept-alive one it closed as idle
while the client was sending, at the moment it stops, is reset (a few in thousands); the update
test xfails on exactly those and fails on anything else.
"""

from __future__ import annotations

import http.client
import json
import select
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edgefleet.agent.settings import AgentSettings
from edgefleet.protocol import ModuleSpec
from tests.integration.test_agent_reconcile import (
    DIGITS_INT8,
    ZERO,
    RunningAgent,
    env,
    fast_settings,
    healthy,
    spec,
)
from tests.integration.test_agent_rollback import rolled_back, spec_of
from tests.support.agent_harness import TestHub, module_pids
from tests.support.artifact_server import ArtifactServer
from tests.support.processes import Mosquitto, wait_for

__all__ = ["env"]  # the fixture, shared with the reconcile tests

pytestmark = pytest.mark.skipif(not DIGITS_INT8.exists(), reason="the digits sample model is not built")
BODY = json.dumps({"data": [ZERO]}).encode()
CLIENTS_PER_KIND = 2
STUCK_SCRIPT = b"import time\n\n\ndef init():\n    time.sleep(3600)\n\n\ndef run(raw):\n    return raw\n"


@dataclass
class Load:
    """Client threads sending /score until stopped; every request that gets no 200 with the right
    prediction is a failure, with its error kept."""

    port: int
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for keep_alive in [True] * CLIENTS_PER_KIND + [False] * CLIENTS_PER_KIND:
            t = threading.Thread(target=self._client, args=(keep_alive,), daemon=True)
            t.start()
            self.threads.append(t)

    def count(self) -> int:
        with self.lock:
            return self.ok

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def _client(self, keep_alive: bool) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self.stop.is_set():
            if conn is not None and (not keep_alive or _closed_by_server(conn)):
                conn.close()
                conn = None
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                conn.request("POST", "/score", BODY, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                body = resp.read()
                if resp.status != 200 or json.loads(body)["predictions"] != [0]:
                    raise RuntimeError(f"HTTP {resp.status}: {body[:200]!r}")
                if resp.will_close:  # Connection: close (a draining instance): open a new one next time
                    conn.close()
                    conn = None
            except Exception as exc:  # every failure counts, whatever it is
                with self.lock:
                    self.failures.append(f"{'kept-alive' if keep_alive else 'new'} connection: {exc!r}")
                conn.close()
                conn = None
                continue
            with self.lock:
                self.ok += 1
        if conn is not None:
            conn.close()


def assert_no_loss(load: Load) -> None:
    """No request failed: no refused or reset connection, no error from the draining instance, and
    no 503 from the new one (it listens only once Ready, so until then the kernel gives every new
    connection to the instance already on the port)."""
    assert load.failures == [], _summary(load) + "; first: " + "; ".join(load.failures[:3])


def _summary(load: Load) -> str:
    kinds = Counter(f.split(":", 1)[0] + ": " + f.split(":", 1)[1].split("(")[0] for f in load.failures)
    return f"{len(load.failures)} failed of {load.ok + len(load.failures)}: {dict(kinds)}"


def _closed_by_server(conn: http.client.HTTPConnection) -> bool:
    """What an HTTP client checks before reusing an idle connection (urllib3's ``is_connection_dropped``):
    the server may have closed it meanwhile (idle timeout, a stopping instance closing idle ones)."""
    if conn.sock is None:
        return True
    readable, _, _ = select.select([conn.sock], [], [], 0)
    return bool(readable)


def scoring_settings(hub: TestHub, mosquitto: Mosquitto, data_dir: Path, **extra: object) -> AgentSettings:
    settings = fast_settings(hub.device_id, mosquitto, data_dir, hub.key.public_key_b64, **extra)
    scoring = [sys.executable, "-m", "edgefleet.modules.scoring"]
    return settings.model_copy(
        update={"modules": settings.modules.model_copy(update={"command": scoring, "stop_grace_s": 30.0})}
    )


def digits(model: object, *more: object, **fields: object) -> ModuleSpec:
    s = spec("digits", [model, *more], models=[{"name": "digits", "version": 1}], resources={"cpu": 2}, **fields)
    return s.model_copy(update={"health": s.health.model_copy(update={"startup_timeout_s": 90})})


@pytest.fixture
def served(env: tuple[TestHub, ArtifactServer]) -> Iterator[object]:
    _, artifacts = env
    yield artifacts.add("digits_int8.onnx", DIGITS_INT8.read_bytes(), path="model/digits_int8.onnx")


def _serve_generation_1(hub: TestHub, model: object) -> tuple[int, int, ModuleSpec]:
    v1 = digits(model, env={"DIGITS_GENERATION": "1"})
    hub.publish(1, [v1])
    report = hub.wait_report(
        lambda r: healthy("digits", 1)(r) and r.last_known_good == 1, timeout=120, what="generation 1 Healthy"
    )
    endpoint = report.modules[0].endpoint
    assert endpoint is not None
    (old_pid,) = module_pids(hub.device_id, "digits")
    return int(endpoint.rsplit(":", 1)[1]), old_pid, v1


def test_an_update_under_load_loses_no_request(
    env: tuple[TestHub, ArtifactServer], mosquitto: Mosquitto, tmp_path: Path, served: object
) -> None:
    hub, _ = env
    running = RunningAgent(scoring_settings(hub, mosquitto, tmp_path / "agent"))
    load: Load | None = None
    try:
        port, old_pid, _ = _serve_generation_1(hub, served)
        load = Load(port)
        load.start()
        wait_for(lambda: load.count() >= 50, 60, what="load running before the update")

        v2 = digits(served, env={"DIGITS_GENERATION": "2"})
        hub.publish(2, [v2])
        report = hub.wait_report(
            lambda r: healthy("digits", 2)(r) and old_pid not in module_pids(hub.device_id, "digits"),
            timeout=120,
            what="generation 2 Healthy and the old instance gone",
        )
        (new_pid,) = module_pids(hub.device_id, "digits")
        assert spec_of(new_pid) == v2.spec_hash()
        assert report.modules[0].endpoint is not None and report.modules[0].endpoint.endswith(f":{port}")
        after = load.count()
        wait_for(lambda: load.count() >= after + 50, 60, what="the new instance serving the load")
        load.finish()
        assert running.agent.serving_gaps["digits"] == 0.0  # the old one stopped after the new one was ready
        # What remains (issue 10, open): a connection the old instance had queued, or a kept-alive one it
        # closed as idle while the client was sending, at the moment it stops (a few in thousands).
        # Anything else (a 503, a refused connection, an HTTP error) fails the test.
        races = [f for f in load.failures if f.split("(", 1)[0].endswith(("ConnectionResetError", "BrokenPipeError"))]
        assert races == load.failures, _summary(load)
        if races:
            pytest.xfail(f"{_summary(load)}: reset at the old instance's close")
        assert_no_loss(load)
    finally:
        if load is not None:
            load.finish()
        running.stop()


def test_a_new_instance_that_never_gets_ready_leaves_the_old_one_serving(
    env: tuple[TestHub, ArtifactServer], mosquitto: Mosquitto, tmp_path: Path, served: object
) -> None:
    hub, artifacts = env
    running = RunningAgent(scoring_settings(hub, mosquitto, tmp_path / "agent", rollback={"window_s": 3.0}))
    load: Load | None = None
    try:
        port, old_pid, v1 = _serve_generation_1(hub, served)
        load = Load(port)
        load.start()
        wait_for(lambda: load.count() >= 50, 60, what="load running before the update")

        # generation 2 binds the port beside the old instance, but its init() never returns
        stuck = artifacts.add("score.py", STUCK_SCRIPT, path="src/score.py")
        v2 = digits(served, stuck, entryScript="score.py", env={"DIGITS_GENERATION": "2"})
        v2 = v2.model_copy(update={"health": v2.health.model_copy(update={"startup_timeout_s": 3.0})})
        hub.publish(2, [v2])
        hub.wait_report(rolled_back(2), timeout=120, what="generation 2 rolled back to 1")
        wait_for(lambda: module_pids(hub.device_id, "digits") == [old_pid], 30, what="only the old instance")
        after = load.count()
        wait_for(lambda: load.count() >= after + 50, 60, what="the old instance still serving")
        load.finish()
        assert spec_of(old_pid) == v1.spec_hash()  # the same process served throughout: never stopped
        assert_no_loss(load)
    finally:
        if load is not None:
            load.finish()
        running.stop()
