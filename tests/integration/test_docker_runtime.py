"""What only the Docker runtime has: container configuration, images, an absent engine, the
composite runtime's dispatch, and exit events across an engine restart (real private dockerd)."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid
from pathlib import Path
from typing import Any

import docker
import pytest

from edgefleet.agent.admission import DeviceOffer, admit
from edgefleet.agent.errors import RuntimeFailure, RuntimeUnavailable, UnknownModule
from edgefleet.agent.runtime import ProcessRuntime, Runtime
from edgefleet.agent.runtime.composite import CompositeRuntime, LazyRuntime, docker_lazy
from edgefleet.agent.runtime.docker import (
    CONTAINER_MODEL_DIR,
    CONTAINER_RUN_DIR,
    CONTAINER_SOURCE_DIR,
    DockerRuntime,
    container_config,
    container_name,
)
from edgefleet.agent.runtime.engine import engine_present
from edgefleet.protocol.models import ModuleSpec, ModuleState
from tests.support.docker_engine import DockerEngine, EngineWithImage, busybox_image, require_busybox
from tests.support.processes import free_port, wait_for

SCRIPT = Path(__file__).resolve().parents[1] / "support" / "lifecycle_module.sh"
COMMAND = ["/bin/sh", f"/edgefleet/src/{SCRIPT.name}"]
WAIT_S = 60.0
ABSENT_ENGINE = "unix:///tmp/efd-absent/docker.sock"


def make_spec(name: str = "boxed", **fields: Any) -> ModuleSpec:
    body: dict[str, Any] = {"name": name, "service": f"{name}-svc", **fields}
    return ModuleSpec.model_validate(body)


def materialize(root: Path, spec: ModuleSpec) -> Path:
    workdir = root / spec.name / spec.spec_hash()
    (workdir / "model").mkdir(parents=True)
    (workdir / "src").mkdir()
    (workdir / "model" / "model.bin").write_text("weights")
    shutil.copy(SCRIPT, workdir / "src" / SCRIPT.name)
    return workdir


def ready(rt: Runtime, module: str) -> bool:
    return any(i.module == module and i.status and i.status.state == "Ready" for i in rt.list_instances())


def cleanup(rt: Runtime) -> None:
    for inst in rt.list_instances():
        rt.stop(inst.instance_id, 10)
        rt.remove(inst.instance_id)
    close = getattr(rt, "close", None)
    if callable(close):
        close()


@pytest.fixture
def device_id() -> str:
    return f"dk-{uuid.uuid4().hex[:8]}"


# --- pure configuration --------------------------------------------------------------------------


def test_container_config_follows_the_module_contract(tmp_path: Path) -> None:
    spec = make_spec(
        runtime="docker",
        image="example/scoring:1",
        models=[{"name": "digits", "version": 2}],
        env={"USER_VAR": "1", "EDGEFLEET_ENTRY_SCRIPT": "sneaky.py", "EDGEFLEET_PORT": "1"},
        resources={"cpu": 1.5, "memoryInGB": 0.5},
        accelerator={"prefer": ["opencl", "cpu"], "required": True},
    )
    config = container_config(spec, "abc123", 20001, tmp_path, device_id="dev-1", generation=4, user="1000:1000")
    assert config["name"] == "edgefleet-dev-1-boxed-abc123"
    assert config["labels"] == {
        "edgefleet.device": "dev-1",
        "edgefleet.module": "boxed",
        "edgefleet.spec": "abc123",
        "edgefleet.generation": "4",
        "edgefleet.port": "20001",
        "edgefleet.workdir": str(tmp_path),
    }
    assert (config["network_mode"], config["restart_policy"], config["user"]) == ("host", {"Name": "no"}, "1000:1000")
    assert (config["nano_cpus"], config["mem_limit"]) == (1_500_000_000, 512 * 1024**2)
    assert config["volumes"] == {
        str(tmp_path / "model"): {"bind": CONTAINER_MODEL_DIR, "mode": "ro"},
        str(tmp_path / "src"): {"bind": CONTAINER_SOURCE_DIR, "mode": "ro"},
        str(tmp_path / "run"): {"bind": CONTAINER_RUN_DIR, "mode": "rw"},
    }
    env = config["environment"]
    assert env["USER_VAR"] == "1"
    assert "EDGEFLEET_ENTRY_SCRIPT" not in env  # no entry script: no-code, whatever spec.env says
    assert env["EDGEFLEET_PORT"] == "20001"  # the contract wins over spec.env
    assert env["EDGEFLEET_MODEL_NAME"] == "digits"
    assert (env["EDGEFLEET_ACCELERATOR_PREFER"], env["EDGEFLEET_ACCELERATOR_REQUIRED"]) == ("opencl,cpu", "true")
    assert env["EDGEFLEET_STATUS_FILE"] == f"{CONTAINER_RUN_DIR}/status.json"
    assert env["AZUREML_MODEL_DIR"] == env["EDGEFLEET_MODEL_DIR"] == CONTAINER_MODEL_DIR
    assert "command" not in config  # the image's CMD runs the scoring module


# --- an absent engine ----------------------------------------------------------------------------


def unschedulable(composite: CompositeRuntime, spec: ModuleSpec) -> str | None:
    """What the daemon makes of the runtime's availability: admission by ``available_kinds()``."""
    refusal = admit([spec], frozenset(composite.available_kinds()), DeviceOffer()).get(spec.name)
    assert refusal is None or refusal.state == ModuleState.UNSCHEDULABLE
    return refusal.reason if refusal else None


def counting(lazy: LazyRuntime, made: list[str]) -> LazyRuntime:
    def make() -> Runtime:
        made.append(lazy.kind)
        return lazy.make()

    return LazyRuntime(lazy.kind, make, lazy.present)


def test_absent_engine_is_unavailable_and_costs_nothing(tmp_path: Path, device_id: str) -> None:
    require_busybox()
    with pytest.raises(RuntimeUnavailable, match="no Docker engine answers at unix:///tmp/efd-absent"):
        DockerRuntime(device_id, ABSENT_ENGINE)
    assert not engine_present(ABSENT_ENGINE)

    process = ProcessRuntime(tmp_path / "modules", device_id, ["/bin/sh", str(SCRIPT)])
    made: list[str] = []
    composite = CompositeRuntime([process], [counting(docker_lazy(device_id, ABSENT_ENGINE), made)])
    assert composite.list_instances() == []
    assert composite.available_kinds() == ["process"]
    assert made == []  # no socket: never even tried

    boxed = make_spec(runtime="docker", image="example/scoring:1")
    assert unschedulable(composite, boxed) == "runtime 'docker' is not available on this device (it has: process)"
    assert made == []
    with pytest.raises(RuntimeUnavailable, match="unix:///tmp/efd-absent"):
        composite.create(boxed, boxed.spec_hash(), free_port(), materialize(tmp_path / "modules", boxed))
    assert made == ["docker"]  # tried because a module needs it

    plain = make_spec("plain")
    assert unschedulable(composite, plain) is None
    iid = composite.create(plain, plain.spec_hash(), free_port(), materialize(tmp_path / "modules", plain))
    composite.start(iid)
    wait_for(lambda: ready(composite, "plain"), WAIT_S, what="the process module next to the absent engine")
    cleanup(composite)


def test_unreachable_engine_is_retried_lazily_and_its_modules_are_unschedulable(tmp_path: Path, device_id: str) -> None:
    socket_dir = Path(tempfile.mkdtemp(prefix="efd-dead-", dir="/tmp"))  # unix socket paths are short
    try:
        with socket.socket(socket.AF_UNIX) as dead:
            dead.bind(str(socket_dir / "docker.sock"))  # the socket exists but nobody accepts on it
            url = f"unix://{socket_dir / 'docker.sock'}"
            assert engine_present(url)
            now = [0.0]
            made: list[str] = []
            composite = CompositeRuntime(
                [ProcessRuntime(tmp_path / "modules", device_id, ["/bin/sh", str(SCRIPT)])],
                [counting(docker_lazy(device_id, url), made)],
                retry_s=30.0,
                clock=lambda: now[0],
            )
            boxed = make_spec(runtime="docker", image="example/scoring:1")
            assert unschedulable(composite, boxed) == (
                "runtime 'docker' is not available on this device (it has: process)"
            )
            assert made == ["docker"]  # the socket is there: tried, and found not answering
            assert composite.list_instances() == [] and composite.available_kinds() == ["process"]
            assert made == ["docker"]  # believed absent for retry_s: no connection per observation
            now[0] = 31.0
            assert composite.available_kinds() == ["process"]
            assert made == ["docker", "docker"]
            with pytest.raises(RuntimeUnavailable, match=f"no Docker engine answers at {url}"):
                composite.create(boxed, boxed.spec_hash(), free_port(), materialize(tmp_path / "modules", boxed))
            assert made == ["docker"] * 3  # a module needs it: tried whatever the last failure said
            cleanup(composite)
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)


# --- against the private engine -----------------------------------------------------------------


@pytest.mark.docker
def test_container_labels_and_host_config(docker_engine: EngineWithImage, tmp_path: Path, device_id: str) -> None:
    rt = DockerRuntime(device_id, docker_engine.url, command=COMMAND, generation_of=lambda: 7)
    try:
        spec = make_spec(runtime="docker", image=docker_engine.image, env={"USER_VAR": "x"})
        workdir = materialize(tmp_path, spec)
        port = free_port()
        rt.create(spec, spec.spec_hash(), port, workdir)
        client = docker.DockerClient(base_url=docker_engine.url)
        try:
            attrs = client.containers.get(container_name(device_id, "boxed", spec.spec_hash())).attrs
        finally:
            client.close()
        assert attrs["Config"]["Labels"] == {
            "edgefleet.device": device_id,
            "edgefleet.module": "boxed",
            "edgefleet.spec": spec.spec_hash(),
            "edgefleet.generation": "7",
            "edgefleet.port": str(port),
            "edgefleet.workdir": str(workdir),
        }
        host = attrs["HostConfig"]
        assert (host["NetworkMode"], host["RestartPolicy"]["Name"], host["Init"]) == ("host", "no", True)
        assert sorted(host["Binds"]) == sorted(
            [
                f"{workdir / 'model'}:{CONTAINER_MODEL_DIR}:ro",
                f"{workdir / 'src'}:{CONTAINER_SOURCE_DIR}:ro",
                f"{workdir / 'run'}:{CONTAINER_RUN_DIR}:rw",
            ]
        )
        assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}}
        assert attrs["Config"]["User"] == f"{os.getuid()}:{os.getgid()}"
        assert {"USER_VAR=x", f"EDGEFLEET_PORT={port}"} <= set(attrs["Config"]["Env"])
    finally:
        cleanup(rt)


@pytest.mark.docker
def test_image_missing_everywhere_is_a_clear_error(
    docker_engine: EngineWithImage, tmp_path: Path, device_id: str
) -> None:
    rt = DockerRuntime(device_id, docker_engine.url)
    try:
        # a registry on a closed loopback port: the pull fails at once, as on a device offline
        spec = make_spec(runtime="docker", image="127.0.0.1:9/edgefleet-test/absent:1")
        with pytest.raises(RuntimeFailure) as caught:
            rt.create(spec, spec.spec_hash(), free_port(), materialize(tmp_path, spec))
        message = str(caught.value)
        assert "image '127.0.0.1:9/edgefleet-test/absent:1' is not on device" in message
        assert "docker load -i IMAGE.tar" in message
        assert rt.list_instances() == []
        with pytest.raises(UnknownModule):
            rt.start(f"boxed@{spec.spec_hash()}")
    finally:
        cleanup(rt)


@pytest.mark.docker
def test_composite_dispatches_by_runtime_and_a_restarted_agent_adopts_both(
    docker_engine: EngineWithImage, tmp_path: Path, device_id: str
) -> None:
    root = tmp_path / "modules"

    def composite() -> CompositeRuntime:
        process = ProcessRuntime(root, device_id, ["/bin/sh", str(SCRIPT)])
        return CompositeRuntime([process], [docker_lazy(device_id, docker_engine.url, command=COMMAND)])

    first = composite()
    boxed = make_spec("boxed", runtime="docker", image=docker_engine.image)
    plain = make_spec("plain")
    ids = {
        spec.name: first.create(spec, spec.spec_hash(), free_port(), materialize(root, spec)) for spec in (boxed, plain)
    }
    for iid in ids.values():
        first.start(iid)
    wait_for(lambda: ready(first, "boxed") and ready(first, "plain"), WAIT_S, what="both modules Ready")
    first.close()

    second = composite()  # the agent restarted
    try:
        running = {i.module: i.instance_id for i in second.list_instances() if i.running}
        assert running == ids
        assert second.available_kinds() == ["docker", "process"]
        assert any("ready on" in line for line in second.logs("boxed", 5))
        second.stop(ids["boxed"], 10)  # dispatched to the engine: the process module keeps running
        states = {i.module: i.running for i in second.list_instances()}
        assert states == {"boxed": False, "plain": True}
    finally:
        cleanup(second)
    assert composite().list_instances() == []


@pytest.mark.docker
def test_exit_events_survive_an_engine_restart(tmp_path: Path, device_id: str) -> None:
    engine = DockerEngine()  # its own engine: restarting the session's would disturb other tests
    engine.start()
    rt: DockerRuntime | None = None
    try:
        image = busybox_image(engine)
        rt = DockerRuntime(device_id, engine.url, command=COMMAND)
        exits: list[str] = []
        rt.set_exit_listener(exits.append)
        spec = make_spec(runtime="docker", image=image)
        workdir = materialize(tmp_path, spec)
        iid = rt.create(spec, spec.spec_hash(), free_port(), workdir)
        rt.start(iid)
        wait_for(lambda: ready(rt, "boxed"), WAIT_S, what="the module Ready")

        engine.restart()  # the engine stops the container on its way down
        wait_for(lambda: iid in exits, WAIT_S, what="the exit of the container the engine stopped")
        assert [i.running for i in rt.list_instances()] == [False]

        exits.clear()
        rt.start(iid)
        wait_for(lambda: ready(rt, "boxed"), WAIT_S, what="the module Ready after the engine restart")
        (workdir / "src" / "control").write_text("exit 5\n")
        wait_for(lambda: iid in exits, WAIT_S, what="an exit heard on the re-established event stream")
        assert [i.exit_code for i in rt.list_instances()] == [5]
    finally:
        if rt is not None:
            rt.close()
        engine.stop()
