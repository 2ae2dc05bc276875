"""Which ports start-beside may share: only outdated running instances are tested, and a port is
shared when a SO_REUSEPORT socket may bind it (the real kernel decides, on loopback)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from edgefleet.agent.observe import outdated_ports, port_shared
from edgefleet.agent.observed import Instance
from edgefleet.protocol import DeviceManifest, ModuleSpec

A = ModuleSpec.model_validate({"name": "a", "service": "svc"})


def inst(spec_hash: str, running: bool = True, port: int = 20001, module: str = "a") -> Instance:
    return Instance(f"{module}@{spec_hash}", module, spec_hash, running=running, port=port)


def test_only_running_instances_of_a_module_with_another_spec_are_tested() -> None:
    target = DeviceManifest(device_id="d", generation=1, modules=[A])
    instances = [
        inst("old", port=1),
        inst(A.spec_hash(), port=2),  # current: no update pending
        inst("older", running=False, port=3),
        inst("x", port=4, module="removed"),  # removed modules are stopped, not replaced
    ]
    assert outdated_ports(instances, target) == {1}
    assert outdated_ports(instances, None) == set()


def _listener(reuse_port: bool) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if reuse_port:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    return s


@pytest.fixture(params=[True, False], ids=["reuseport", "alone"])
def listener(request: pytest.FixtureRequest) -> Iterator[tuple[socket.socket, bool]]:
    s = _listener(request.param)
    yield s, request.param
    s.close()


def test_a_port_is_shared_only_when_its_listener_set_so_reuseport(listener: tuple[socket.socket, bool]) -> None:
    sock, reuse_port = listener
    assert port_shared(sock.getsockname()[1]) is reuse_port
