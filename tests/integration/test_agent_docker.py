"""The agent daemon deploys a module with `runtime: docker` to a real (private) Docker Engine,
and reports one Unschedulable, with the reason, on a device whose engine does not answer.

The image is made the way a user without a registry would: `docker import` of a root filesystem
(busybox plus the lifecycle module script) with its CMD set, so the agent starts it with the
image's own command, configured by environment alone.
"""

from __future__ import annotations

import io
import shutil
import socket
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import docker
import pytest

from tests.integration.test_agent_reconcile import RunningAgent, fast_settings, healthy, spec
from tests.support.agent_harness import TestHub, kill_module_processes, module_state
from tests.support.artifact_server import ArtifactServer
from tests.support.docker_engine import EngineWithImage, busybox_rootfs_tar
from tests.support.processes import Mosquitto, wait_for

SCRIPT = Path(__file__).resolve().parents[1] / "support" / "lifecycle_module.sh"
IMAGE = "edgefleet-test/lifecycle-module:1"


def _module_image(engine: EngineWithImage) -> str:
    buf = io.BytesIO(busybox_rootfs_tar())
    with tarfile.open(fileobj=buf, mode="a") as tar:
        tar.add(str(SCRIPT), arcname="opt/module.sh")
    engine.engine.docker("import", "--change", 'CMD ["/bin/sh", "/opt/module.sh"]', "-", IMAGE, stdin=buf.getvalue())
    return IMAGE


@pytest.mark.docker
def test_agent_runs_a_docker_module_adopts_it_and_removes_it(
    docker_engine: EngineWithImage, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    image = _module_image(docker_engine)
    hub = TestHub(mosquitto.port, "dev-docker")
    client = docker.DockerClient(base_url=docker_engine.url)
    try:
        with ArtifactServer(tmp_path / "artifacts") as artifacts:
            model = artifacts.add("model.bin", b"weights" * 100)
            settings = fast_settings(
                hub.device_id,
                mosquitto,
                tmp_path / "agent",
                hub.key.public_key_b64,
                modules={"docker_url": docker_engine.url},
            )
            boxed = spec("boxed", [model], runtime="docker", image=image, resources={"cpu": 0.5, "memoryInGB": 0.25})

            agent = RunningAgent(settings)
            hub.publish(1, [boxed])
            report = hub.wait_report(healthy("boxed", 1), what="docker module Healthy")
            status = next(m for m in report.modules if m.name == "boxed")
            with urllib.request.urlopen(status.endpoint + "/v2/health/ready", timeout=5) as resp:
                assert resp.status == 200
            assert "docker" in report.capabilities.runtimes
            (container,) = client.containers.list(filters={"label": "edgefleet.device=dev-docker"})
            assert container.labels["edgefleet.module"] == "boxed"
            assert container.attrs["HostConfig"]["NetworkMode"] == "host"
            assert container.attrs["HostConfig"]["NanoCpus"] == 500_000_000
            agent.stop()  # modules keep running across an agent restart...

            before = hub.latest()
            agent = RunningAgent(settings)  # ...and the new agent adopts the container instead of starting another
            hub.wait_report(lambda r: r is not before and module_state(r, "boxed") == "Healthy", what="adopted")
            assert [c.id for c in client.containers.list(filters={"label": "edgefleet.device=dev-docker"})] == [
                container.id
            ]

            hub.publish(2, [])
            hub.wait_report(lambda r: r.generation == 2 and not r.modules, what="module removed")
            wait_for(
                lambda: not client.containers.list(all=True, filters={"label": "edgefleet.device=dev-docker"}),
                30,
                what="container removed",
            )
            agent.stop()
    finally:
        hub.close()
        for c in client.containers.list(all=True, filters={"label": "edgefleet.device=dev-docker"}):
            c.remove(force=True)
        client.close()


def test_a_docker_module_on_a_device_whose_engine_does_not_answer_is_unschedulable(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """What production does without an engine: the composite runtime's lazy connection fails
    (RuntimeUnavailable), docker is not among the device's runtimes, and admission reports the
    module Unschedulable with the reason while the process module beside it serves."""
    socket_dir = Path(tempfile.mkdtemp(prefix="efd-dead-", dir="/tmp"))  # unix socket paths are short
    hub = TestHub(mosquitto.port, "dev-no-engine")
    try:
        with socket.socket(socket.AF_UNIX) as dead, ArtifactServer(tmp_path / "artifacts") as artifacts:
            dead.bind(str(socket_dir / "docker.sock"))  # there, but nobody accepts on it
            model = artifacts.add("model.bin", b"weights" * 100)
            settings = fast_settings(
                hub.device_id,
                mosquitto,
                tmp_path / "agent",
                hub.key.public_key_b64,
                docker_url=f"unix://{socket_dir / 'docker.sock'}",
            )
            agent = RunningAgent(settings)
            try:
                hub.publish(1, [spec("boxed", [model], runtime="docker", image=IMAGE), spec("plain", [model])])
                report = hub.wait_report(
                    lambda r: healthy("plain", 1)(r) and module_state(r, "boxed") == "Unschedulable",
                    what="plain Healthy, boxed Unschedulable",
                )
            finally:
                agent.stop()
        boxed = next(m for m in report.modules if m.name == "boxed")
        assert boxed.message == "runtime 'docker' is not available on this device (it has: process)"
        assert boxed.endpoint is None and boxed.instance is None
        assert report.capabilities.runtimes == ["process"]
    finally:
        hub.close()
        kill_module_processes("dev-no-engine")
        shutil.rmtree(socket_dir, ignore_errors=True)
