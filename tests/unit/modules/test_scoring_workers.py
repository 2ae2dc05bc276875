"""The supervisor of worker processes with stand-in workers (forked, no model): what it writes to the
status file, when it says go, and its exit code; and the sockets the workers share."""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Callable

import pytest

from edgefleet.modules.scoring.workers import Supervisor, SupervisorLink, listen_sockets
from edgefleet.protocol.module import EXIT_FAILED, EXIT_OK, EXIT_UNSCHEDULABLE, ModuleRunState, ModuleStatusFile


def _ready(message: str) -> ModuleStatusFile:
    return ModuleStatusFile(state=ModuleRunState.READY, message=message, pid=os.getpid(), backend="cpu")


def serving_worker(index: int, link: SupervisorLink) -> int:
    """Announce Ready, wait for go, then serve until the supervisor closes the link."""
    link.send(_ready(f"worker {os.getpid()}"))
    published = link.wait_for_go()
    assert published.state is ModuleRunState.READY
    link.wait_closed()
    return EXIT_OK


def supervise(
    worker: Callable[[int, SupervisorLink], int], count: int = 2, stop_on_ready: bool = True
) -> tuple[int, list[ModuleStatusFile]]:
    """Run ``worker(index, link)`` in ``count`` forked workers under a Supervisor; its exit code and reports."""
    reports: list[ModuleStatusFile] = []
    sockets = listen_sockets("127.0.0.1", 0, count)
    port = sockets[0].getsockname()[1]

    def report(status: ModuleStatusFile) -> None:
        reports.append(status)
        if stop_on_ready and status.state is ModuleRunState.READY:  # as SIGTERM would
            threading.Timer(0.01, supervisor.on_signal, (signal.SIGTERM, None)).start()

    supervisor = Supervisor(port, report, drain_s=5)
    supervisor.start(sockets, lambda sock, link: worker(sockets.index(sock), link))
    code = supervisor.run()
    assert all(w.exit_code is not None for w in supervisor.workers)
    assert all(status.pid == os.getpid() and status.port == port for status in reports)
    return code, reports


def test_ready_is_written_once_when_every_worker_is_ready_and_a_stop_exits_0() -> None:
    code, reports = supervise(serving_worker)
    assert code == EXIT_OK
    assert [r.state for r in reports] == [ModuleRunState.READY]
    assert reports[0].backend == "cpu" and reports[0].message.startswith("worker ")


def test_a_worker_whose_init_fails_fails_the_module_with_its_status() -> None:
    def worker(index: int, link: SupervisorLink) -> int:
        if index == 1:  # the other would be Ready
            link.send(ModuleStatusFile(state=ModuleRunState.UNSCHEDULABLE, message="no fpga"))
            return EXIT_UNSCHEDULABLE
        return serving_worker(index, link)

    code, reports = supervise(worker)
    assert code == EXIT_UNSCHEDULABLE
    assert [(r.state, r.message) for r in reports] == [(ModuleRunState.UNSCHEDULABLE, "no fpga")]


def test_a_worker_that_dies_after_ready_fails_the_module() -> None:
    def worker(index: int, link: SupervisorLink) -> int:
        link.send(_ready("up"))
        link.wait_for_go()
        if index == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        link.wait_closed()
        return EXIT_OK

    code, reports = supervise(worker, stop_on_ready=False)
    assert code == EXIT_FAILED
    assert [r.state for r in reports] == [ModuleRunState.READY, ModuleRunState.FAILED]
    assert "exited with signal SIGKILL" in reports[1].message


def test_listen_sockets_share_one_port_even_when_it_is_picked() -> None:
    sockets = listen_sockets("127.0.0.1", 0, 3)
    try:
        ports = {s.getsockname()[1] for s in sockets}
        assert len(ports) == 1 and ports != {0}
        assert all(s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for s in sockets)
    finally:
        for s in sockets:
            s.close()
    (single,) = listen_sockets("127.0.0.1", 0, 1)
    with single:
        # one worker too: the next instance starts beside it during an update
        assert single.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        # bound, not listening: a connection is refused until the worker is Ready and listens
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", single.getsockname()[1]), timeout=2).close()
