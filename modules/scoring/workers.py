"""Worker processes sharing the module's port, and how many of them.

With ``--workers N`` > 1 the module's process binds N listening sockets to one port with
SO_REUSEPORT (the first picks it when ``--port 0``), so the kernel spreads connections over them,
then forks one worker per socket after the heavy imports (their pages are shared until written).
Every worker loads the model itself: a loaded onnxruntime session owns threads, which do not
survive a fork.

The module's process stays as the supervisor, the only one carrying the agent's marks on its
command line (``hide_marks``) and the only writer of the status file: each worker
reports its initialisation outcome over a socket pair (a status JSON line) and, when that is Ready,
waits for the supervisor's go, which comes once every worker is Ready and the status file says so
(the agent reads Ready there before any worker answers ready). A worker that fails its
initialisation fails the module with its status; one that dies later fails it too (the agent
restarts the module; a half-served port is worse than a restart). SIGTERM (to the group, as the
agent sends it, or to the supervisor alone, as ``docker stop`` does) stops every worker
gracefully; the supervisor exits 0 when they have.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from edgefleet.protocol.module import EXIT_FAILED, EXIT_OK, MARK_PREFIX, ModuleRunState, ModuleStatusFile

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
GO = b"g"
KILL_AFTER_S = 5.0  # past a worker's own drain time: then it is killed


# ---- how many ---------------------------------------------------------------------------------------------


def workers_for(cpu: float) -> int:
    """Worker processes for ``cpu`` cores: one per whole core, at least one.

    Within a process the event loop and run() share one GIL (and an entry script's run() is
    serialised), so processes are what uses a second core: on 2 cores the digits /score doubles
    at 32 connections for ~25 MB more PSS. A fraction of a core gains nothing from another process
    (the quota is shared) and would cost its memory.
    """
    return max(1, math.floor(cpu + 1e-9))


def cpu_quota(cgroup_line: str, read: Callable[[Path], str]) -> float | None:
    """The cgroup v2 cpu.max quota (cores) of the process's group and its ancestors, lowest; None: none."""
    if not cgroup_line.startswith("0::"):
        return None
    relative = cgroup_line[3:].strip().lstrip("/")
    group = CGROUP_ROOT / relative if relative else CGROUP_ROOT
    lowest: float | None = None
    while True:
        with contextlib.suppress(OSError, ValueError):
            quota, period = read(group / "cpu.max").split()[:2]
            if quota != "max":
                cores = int(quota) / int(period)
                lowest = cores if lowest is None else min(lowest, cores)
        if group == CGROUP_ROOT or group.parent == group:
            return lowest
        group = group.parent


def available_cpus() -> float:
    """The cores this process may use: its cpu affinity, or its cgroup v2 quota when that is lower
    (the agent's limits set one or the other; a container's --cpus sets the quota)."""
    cores = float(len(os.sched_getaffinity(0)))
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return cores
    quota = next((q for line in lines if (q := cpu_quota(line, Path.read_text)) is not None), None)
    return min(cores, quota) if quota is not None else cores


# ---- sockets ----------------------------------------------------------------------------------------------


def listen_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` sockets bound to one port, not yet listening.

    SO_REUSEPORT always: the workers share the port, and so does the next instance the agent starts
    beside this one during an update (the hub keeps two modules of a device off one port). Each
    worker listens only once it is Ready (aio.HttpServer.begin): a bound socket that does not listen
    gets no connections, so until then the kernel gives every new one to the running instance."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]  # port 0: the others join the one the first got
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


# ---- worker side ------------------------------------------------------------------------------------------

WORKER_MARK = b"--ef-worker-"  # what a worker shows instead of MARK_PREFIX (the same length)


def hide_marks() -> bool:
    """Make this forked worker's command line (/proc/PID/cmdline, ``ps``) carry none of the agent's
    identification marks: a restarted agent adopts a module by them and stops every other process
    that carries them, so only the supervisor may. A fork shares its parent's command line; this
    rewrites it in place, as setproctitle does (the argv area's bounds are fields 48-49 of
    /proc/self/stat; CPython keeps its own copy of argv). False where that is not possible."""
    import ctypes

    mark = MARK_PREFIX.encode()
    assert len(WORKER_MARK) == len(mark)
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # fields[0] is field 3 (state)
        area = ctypes.string_at(start, end - start)
        if mark in area:
            ctypes.memmove(start, area.replace(mark, WORKER_MARK), len(area))
    except (OSError, ValueError, IndexError) as exc:
        log.warning("cannot rewrite the worker's command line: %s", exc)
        return False
    return True


class Abandoned(Exception):
    """The supervisor is gone or stopping: a worker that has not started serving just exits."""


class SupervisorLink:
    """A worker's end of its socket pair."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def send(self, status: ModuleStatusFile) -> None:
        self._sock.sendall(json.dumps(status.to_wire()).encode() + b"\n")

    def wait_for_go(self) -> ModuleStatusFile:
        """The status the supervisor wrote, once it has: the worker may answer ready."""
        data = b""
        while not data.endswith(b"\n"):
            chunk = self._sock.recv(65536)
            if not chunk:
                raise Abandoned("the supervisor closed the link before go")
            data += chunk
        if not data.startswith(GO):
            raise Abandoned("the supervisor did not say go")
        return ModuleStatusFile.model_validate(json.loads(data[len(GO) :]))

    def wait_closed(self) -> None:
        """Block until the supervisor closes its end (or exits): the worker then stops."""
        with contextlib.suppress(OSError):
            while self._sock.recv(64):
                pass


# ---- supervisor side --------------------------------------------------------------------------------------


@dataclass
class _Worker:
    pid: int
    link: socket.socket
    buffer: bytes = b""
    ready: ModuleStatusFile | None = None
    exit_code: int | None = None


class Supervisor:
    """Forks the workers and turns their reports into the module's status and exit code."""

    def __init__(self, port: int, report: Callable[[ModuleStatusFile], None], drain_s: float) -> None:
        self.port = port
        self.report = report
        self.drain_s = drain_s
        self.workers: list[_Worker] = []
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = False
        self._outcome: int | None = None

    def start(self, sockets: list[socket.socket], run: Callable[[socket.socket, SupervisorLink], int]) -> None:
        """Fork one worker per socket; ``run`` is the worker's life, its result the worker's exit code."""
        for sock in sockets:
            ours, theirs = socket.socketpair()
            pid = os.fork()
            if pid == 0:  # the worker
                code = EXIT_FAILED
                try:
                    for signum in (signal.SIGTERM, signal.SIGINT):  # until the worker sets its own
                        signal.signal(signum, signal.SIG_DFL)
                    hide_marks()
                    ours.close()
                    for other in self.workers:
                        other.link.close()
                    for other_sock in sockets:
                        if other_sock is not sock:
                            other_sock.close()
                    self._wake_r.close()
                    self._wake_w.close()
                    code = run(sock, SupervisorLink(theirs))
                except BaseException:
                    log.exception("worker %d failed", os.getpid())
                finally:
                    os._exit(code)
            theirs.close()
            sock.close()  # the worker holds the listening socket now
            self.workers.append(_Worker(pid, ours))
            self._selector.register(ours, selectors.EVENT_READ, self.workers[-1])
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(bytes([signum]))

    def run(self) -> int:
        """Until every worker has exited: the module's exit code."""
        kill_at: float | None = None
        while any(w.exit_code is None for w in self.workers):
            timeout = None if kill_at is None else max(0.0, kill_at - time.monotonic())
            events = self._selector.select(timeout)
            if not events and kill_at is not None and time.monotonic() >= kill_at:
                self._signal_all(signal.SIGKILL)
                kill_at = None
            for key, _ in events:
                if key.data is None:
                    self._wake_r.recv(64)
                    log.info("stopping %d workers", len(self.workers))
                    self._stop(EXIT_OK)
                else:
                    self._read(key.data)
            if self._stopping and kill_at is None and any(w.exit_code is None for w in self.workers):
                kill_at = time.monotonic() + self.drain_s + KILL_AFTER_S
        return EXIT_OK if self._outcome is None else self._outcome

    def _read(self, worker: _Worker) -> None:
        try:
            data = worker.link.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._selector.unregister(worker.link)
            worker.link.close()
            _, status = os.waitpid(worker.pid, 0)
            worker.exit_code = os.waitstatus_to_exitcode(status)
            if not self._stopping:
                message = f"worker process {worker.pid} exited with {_describe(worker.exit_code)}"
                log.error("%s; stopping the module", message)
                self.report(
                    ModuleStatusFile(state=ModuleRunState.FAILED, message=message, pid=os.getpid(), port=self.port)
                )
                self._stop(EXIT_FAILED)
            return
        worker.buffer += data
        while b"\n" in worker.buffer:
            line, worker.buffer = worker.buffer.split(b"\n", 1)
            self._on_status(worker, ModuleStatusFile.model_validate(json.loads(line)))

    def _on_status(self, worker: _Worker, status: ModuleStatusFile) -> None:
        status = status.model_copy(update={"pid": os.getpid(), "port": self.port})
        if self._stopping:
            return
        if status.state is not ModuleRunState.READY:  # init failed in this worker: the module has
            self.report(status)
            self._stop(status.state.exit_code)
            return
        worker.ready = status
        if all(w.ready is not None for w in self.workers):
            published = self.workers[0].ready or status
            self.report(published)
            go = GO + json.dumps(published.to_wire()).encode() + b"\n"
            for w in self.workers:
                w.link.sendall(go)

    def _stop(self, outcome: int) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._outcome = outcome
        self._signal_all(signal.SIGTERM)
        for w in self.workers:  # a worker still initialising learns it this way too
            if w.exit_code is None:
                with contextlib.suppress(OSError):
                    w.link.shutdown(socket.SHUT_WR)

    def _signal_all(self, signum: int) -> None:
        for w in self.workers:
            if w.exit_code is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.pid, signum)


def _describe(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"code {code}"
