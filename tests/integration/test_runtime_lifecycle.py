"""One lifecycle suite, run against both runtimes (process, and docker on a real private engine).

The module is ``tests/support/lifecycle_module.sh`` under busybox: a host process for the process
runtime, a container of the busybox test image for the docker runtime. Only the ``Runtime``
interface is used, so passing here means both runtimes behave the same for the daemon.
"""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edgefleet.agent.errors import UnknownModule
from edgefleet.agent.observed import Instance
from edgefleet.agent.runtime import ProcessRuntime, Runtime
from edgefleet.protocol.models import ModuleSpec
from tests.support.docker_engine import EngineWithImage, require_busybox
from tests.support.limits_probe import kernel_limits
from tests.support.processes import free_port, wait_for

SCRIPT = Path(__file__).resolve().parents[1] / "support" / "lifecycle_module.sh"
MODULE = "lifecycle"
WAIT_S = 60.0  # generous: two cores shared with other test runs
GRACE_S = 10.0


@dataclass
class Harness:
    """Makes runtimes of one kind (a new object = an agent restart) and instances to run in them."""

    kind: str
    root: Path
    device_id: str
    make: Callable[[], Runtime]
    applied_limits: Callable[[Runtime, str], dict[str, Any]]
    image: str | None = None
    runtimes: list[Runtime] = field(default_factory=list)

    def runtime(self) -> Runtime:
        rt = self.make()
        self.runtimes.append(rt)
        return rt

    def spec(self, **fields: Any) -> ModuleSpec:
        body: dict[str, Any] = {"name": MODULE, "service": f"{MODULE}-svc", "runtime": self.kind, **fields}
        if self.kind == "docker":
            body["image"] = self.image
        return ModuleSpec.model_validate(body)

    def create(self, rt: Runtime, spec: ModuleSpec, weights: str = "weights-1") -> tuple[str, int, Path]:
        """Materialize the instance directory as the daemon does (model/, src/), then create it."""
        spec_hash = spec.spec_hash()
        workdir = self.root / spec.name / spec_hash
        (workdir / "model").mkdir(parents=True)
        (workdir / "src").mkdir()
        (workdir / "model" / "model.bin").write_text(weights)
        shutil.copy(SCRIPT, workdir / "src" / SCRIPT.name)  # the container runs it from its src mount
        port = free_port()
        return rt.create(spec, spec_hash, port, workdir), port, workdir


def _process_harness(tmp_path: Path, device_id: str) -> Harness:
    root = tmp_path / "modules"

    def limits(rt: Runtime, iid: str) -> dict[str, Any]:
        (pid,) = [i.pid for i in rt.list_instances() if i.instance_id == iid]
        seen = kernel_limits(pid or 0)
        if not seen.cgroup_dirs:  # affinity can only pin whole cores: test_agent_limits covers that path
            pytest.skip("no writable cgroup on this host: the process runtime limits by CPU affinity and rlimits")
        return {"cpu": seen.cgroup_cpu, "memory_bytes": seen.cgroup_memory}

    return Harness(
        "process", root, device_id, lambda: ProcessRuntime(root, device_id, ["/bin/sh", str(SCRIPT)]), limits
    )


def _docker_harness(tmp_path: Path, device_id: str, engine: EngineWithImage) -> Harness:
    import docker

    from edgefleet.agent.runtime.docker import DockerRuntime, container_name

    def limits(_rt: Runtime, iid: str) -> dict[str, Any]:
        module, _, spec_hash = iid.partition("@")
        client = docker.DockerClient(base_url=engine.url)
        try:
            host = client.containers.get(container_name(device_id, module, spec_hash)).attrs["HostConfig"]
        finally:
            client.close()
        return {"cpu": host["NanoCpus"] / 1e9, "memory_bytes": host["Memory"]}

    return Harness(
        "docker",
        tmp_path / "modules",
        device_id,
        lambda: DockerRuntime(device_id, engine.url, command=["/bin/sh", f"/edgefleet/src/{SCRIPT.name}"]),
        limits,
        image=engine.image,
    )


@pytest.fixture(params=["process", pytest.param("docker", marks=pytest.mark.docker)])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    require_busybox()
    device_id = f"lc-{request.param}-{uuid.uuid4().hex[:8]}"
    if request.param == "docker":
        h = _docker_harness(tmp_path, device_id, request.getfixturevalue("docker_engine"))
    else:
        h = _process_harness(tmp_path, device_id)
    yield h
    cleanup = h.make()  # whatever the test left: stopped and removed through the interface
    for inst in cleanup.list_instances():
        cleanup.stop(inst.instance_id, GRACE_S)
        cleanup.remove(inst.instance_id)
    for rt in [*h.runtimes, cleanup]:
        close = getattr(rt, "close", None)
        if callable(close):
            close()


def http_status(port: int, path: str = "/v2/health/ready") -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def only(rt: Runtime) -> Instance:
    instances = rt.list_instances()
    assert len(instances) == 1, instances
    return instances[0]


def wait_instance(rt: Runtime, accept: Callable[[Instance], bool], what: str) -> Instance:
    """The first listed instance that ``accept``s, waiting for it up to WAIT_S."""

    def find() -> Instance | None:
        return next((i for i in rt.list_instances() if accept(i)), None)

    found = wait_for(find, WAIT_S, what=what)
    assert found is not None
    return found


def wait_state(rt: Runtime, state: str) -> Instance:
    return wait_instance(
        rt, lambda i: i.status is not None and i.status.state == state, f"the module to report {state}"
    )


def wait_exited(rt: Runtime, iid: str) -> Instance:
    return wait_instance(rt, lambda i: i.instance_id == iid and not i.running, f"{iid} to exit")


def test_create_start_ready_and_listed_once(harness: Harness) -> None:
    rt = harness.runtime()
    spec = harness.spec()
    iid, port, _ = harness.create(rt, spec)
    created = only(rt)
    assert (created.instance_id, created.running, created.exit_code) == (iid, False, None)

    rt.start(iid)
    rt.start(iid)  # starting a running instance is a no-op, not a second instance
    ready = wait_state(rt, "Ready")
    assert http_status(port) == 200
    inst = only(rt)
    assert (inst.instance_id, inst.module, inst.spec_hash, inst.port) == (iid, MODULE, spec.spec_hash(), port)
    assert inst.running and inst.pid is not None and inst.exit_code is None
    assert ready.status is not None and ready.status.port == port


def test_new_runtime_adopts_running_instance(harness: Harness) -> None:
    first = harness.runtime()
    iid, port, _ = harness.create(first, harness.spec())
    first.start(iid)
    wait_state(first, "Ready")
    before = only(first)

    restarted = harness.runtime()  # the agent restarted: a fresh runtime object finds the instance
    adopted = only(restarted)
    assert (adopted.instance_id, adopted.running, adopted.pid, adopted.port) == (iid, True, before.pid, port)
    restarted.start(iid)  # already running: still one instance
    assert only(restarted).pid == before.pid
    restarted.stop(iid, GRACE_S)
    assert not wait_exited(restarted, iid).running
    assert http_status_down(port)


def http_status_down(port: int) -> bool:
    try:
        http_status(port)
    except OSError:
        return True
    return False


def test_stop_records_exit_then_start_again_then_remove(harness: Harness) -> None:
    rt = harness.runtime()
    iid, port, workdir = harness.create(rt, harness.spec())
    rt.start(iid)
    wait_state(rt, "Ready")

    rt.stop(iid, GRACE_S)
    stopped = wait_instance(rt, lambda i: not i.running and i.exit_code is not None, "the stopped module's exit code")
    assert stopped.exit_code == 0  # the module exits cleanly on SIGTERM
    rt.stop(iid, GRACE_S)  # stopping a stopped instance is fine

    rt.start(iid)
    wait_state(rt, "Ready")
    assert http_status(port) == 200
    assert only(rt).running

    rt.stop(iid, GRACE_S)
    wait_exited(rt, iid)
    rt.remove(iid)
    assert rt.list_instances() == []
    assert not workdir.exists()
    rt.remove(iid)  # removing what is gone is fine


def test_exit_listener_fires_when_module_exits_by_itself(harness: Harness) -> None:
    rt = harness.runtime()
    exits: list[str] = []
    rt.set_exit_listener(exits.append)
    iid, _, workdir = harness.create(rt, harness.spec())
    rt.start(iid)
    wait_state(rt, "Ready")

    (workdir / "src" / "control").write_text("exit 3\n")
    wait_for(lambda: iid in exits, WAIT_S, what="the exit listener to hear of the exit")
    inst = wait_exited(rt, iid)
    assert inst.exit_code == 3
    assert inst.status is not None and (inst.status.state, inst.status.message) == ("Failed", "told to exit with 3")


def test_unschedulable_exit_code_and_status(harness: Harness) -> None:
    rt = harness.runtime()
    iid, _, _ = harness.create(rt, harness.spec(env={"LIFECYCLE_EXIT_CODE": "78"}))
    rt.start(iid)
    inst = wait_instance(rt, lambda i: i.exit_code is not None, "exit 78")
    assert inst.exit_code == 78
    assert inst.status is not None and inst.status.state == "Unschedulable"


def test_unhealthy_module_keeps_running_but_fails_its_probe(harness: Harness) -> None:
    rt = harness.runtime()
    iid, port, workdir = harness.create(rt, harness.spec())
    rt.start(iid)
    wait_state(rt, "Ready")
    (workdir / "src" / "control").write_text("unhealthy\n")
    wait_for(lambda: http_status(port) == 404, WAIT_S, what="the health path to fail")
    assert only(rt).running


def test_logs_tail_returns_module_output(harness: Harness) -> None:
    rt = harness.runtime()
    iid, port, _ = harness.create(rt, harness.spec(), weights="weights-xyz")
    rt.start(iid)
    wait_state(rt, "Ready")
    expected = f"lifecycle module: ready on 127.0.0.1:{port}, model weights-xyz"

    def logged() -> list[str]:
        got = rt.logs(MODULE, 10)
        return got if expected in got else []

    lines = wait_for(logged, WAIT_S, what="the log line")
    assert lines[-1] == expected
    assert rt.logs(MODULE, 1) == [expected]
    with pytest.raises(UnknownModule):
        rt.logs("no-such-module", 10)


def test_resource_limits_are_applied(harness: Harness) -> None:
    rt = harness.runtime()
    iid, _, _ = harness.create(rt, harness.spec(resources={"cpu": 0.5, "memoryInGB": 0.125}))
    rt.start(iid)
    wait_state(rt, "Ready")
    assert harness.applied_limits(rt, iid) == {"cpu": 0.5, "memory_bytes": 128 * 1024**2}
