"""Process lifecycle: parse the configuration, bind, initialise, report status, serve until SIGTERM.

The port is bound before initialisation so /v2/health/live answers while a slow init() runs and
/v2/health/ready says 503 until it is done. One worker serves in this process: the asyncio
transport (``aio``) on a thread, init() on the main thread. Several (``--workers``, by default one
per whole core the module may use) are forked processes under this one (``workers``). SIGTERM is a
graceful stop: the requests in progress are answered (at most ``DRAIN_S``), then the process exits. The status file and the exit codes are the agent's
contract (``edgefleet.protocol.module``): "Starting" once the port is bound, the outcome before
ready is answered; exit 0 after a graceful stop, 1 Failed (bad configuration, init() raised,
an unreadable TLS certificate or key), 78 Unschedulable (a required accelerator is missing).

The scoring keys are taken out of the process environment once read, so what an entry script
starts does not inherit them; they are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from edgefleet.modules.scoring.admission import admission_for
from edgefleet.modules.scoring.aio import HttpServer, new_event_loop
from edgefleet.modules.scoring.config import ServerConfig, parse_config
from edgefleet.modules.scoring.context import set_cpu_threads
from edgefleet.modules.scoring.errors import ConfigError
from edgefleet.modules.scoring.service import ScoringService
from edgefleet.modules.scoring.workers import (
    Abandoned,
    Supervisor,
    SupervisorLink,
    available_cpus,
    listen_sockets,
    workers_for,
)
from edgefleet.protocol.module import (
    EXIT_FAILED,
    EXIT_OK,
    ModuleOption,
    ModuleRunState,
    ModuleSecret,
    ModuleStatusFile,
    url_host,
    write_status_file,
)

log = logging.getLogger(__name__)

DRAIN_S = 30.0  # the agent's SIGKILL (stop_grace_s) usually comes first
# per worker: entry scripts' run() is serialised anyway, and more threads of one process share its
# GIL with the event loop; parallelism comes from worker processes
INFERENCE_THREADS = 1


def _failed(message: str, port: int) -> ModuleStatusFile:
    return ModuleStatusFile(state=ModuleRunState.FAILED, message=message, pid=os.getpid(), port=port)


def _report(config: ServerConfig, status: ModuleStatusFile) -> None:
    if config.status_file is not None:
        try:
            write_status_file(config.status_file, status)
        except OSError as exc:  # the server can still serve; the agent falls back to probing HTTP
            log.error("cannot write status file %s: %s", config.status_file, exc)


def _status_path_from(argv: Sequence[str]) -> Path | None:
    """Best effort when the configuration itself is invalid: still tell the agent why."""
    option = ModuleOption.STATUS_FILE
    for i, token in enumerate(argv):
        if token == option.flag and i + 1 < len(argv):
            return Path(argv[i + 1])
        if token.startswith(f"{option.flag}="):
            return Path(token.split("=", 1)[1])
    value = os.environ.get(option.env)
    return Path(value) if value else None


def tls_context(config: ServerConfig) -> ssl.SSLContext | None:
    """The server's TLS context (TLS 1.2 or newer) from --tls-cert/--tls-key; None for plain HTTP."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load the TLS certificate {config.tls_cert} with key {config.tls_key}: {exc}; "
            "give PEM files of a certificate and its private key"
        ) from None
    return context


def serve(config: ServerConfig) -> int:
    try:
        tls = tls_context(config)
    except ConfigError as exc:
        log.error("%s", exc)
        _report(config, _failed(str(exc), config.port))
        return EXIT_FAILED
    if config.transport == "threading":
        return _serve_threading(config, tls)
    cpu = config.cpu if config.cpu is not None else available_cpus()
    workers = config.workers or workers_for(cpu)
    try:
        sockets = listen_sockets(config.host, config.port, workers)
    except OSError as exc:
        return _cannot_listen(config, exc)
    port = int(sockets[0].getsockname()[1])
    set_cpu_threads(cpu_threads_per_worker(cpu, workers))  # before the fork: the workers inherit it
    if workers == 1:
        return run_worker(config, sockets[0], tls, port, workers=1)
    supervisor = Supervisor(port, lambda status: _report(config, status), DRAIN_S)
    _report(
        config,
        ModuleStatusFile(
            state=ModuleRunState.STARTING,
            message=f"initialising {workers} worker processes",
            pid=os.getpid(),
            port=port,
        ),
    )
    supervisor_pid = os.getpid()
    supervisor.start(
        sockets,
        lambda sock, link: run_worker(
            config, sock, tls, port, workers=workers, link=link, supervisor_pid=supervisor_pid
        ),
    )
    signal.signal(signal.SIGTERM, supervisor.on_signal)
    signal.signal(signal.SIGINT, supervisor.on_signal)
    _log_listening(config, port, tls, f"{workers} worker processes")
    return supervisor.run()


def cpu_threads_per_worker(cpu: float, workers: int) -> int:
    """onnxruntime's intra-op threads in each worker: its share of the cores, at least one."""
    return max(1, math.floor(cpu / workers + 1e-9))


def run_worker(
    config: ServerConfig,
    sock: socket.socket,
    tls: ssl.SSLContext | None,
    port: int,
    *,
    workers: int,
    link: SupervisorLink | None = None,
    supervisor_pid: int | None = None,
) -> int:
    """One worker's life: serve ``sock`` on an event loop thread, initialise, serve until SIGTERM.

    Alone (``link`` None) it writes the status file itself; under a supervisor it reports to it
    and answers ready only after the supervisor's go.
    """
    service = ScoringService(config, workers=workers)
    if supervisor_pid is not None:
        service.pid = supervisor_pid
    admission = admission_for(
        config.max_concurrent_requests, config.max_queue_wait_ms, config.max_request_bytes, workers
    )
    http = HttpServer(
        service, admission, port=port, threads=INFERENCE_THREADS, tls=tls,
    )  # fmt: skip
    loop = LoopThread(http, sock)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        loop.start()
    except OSError as exc:
        return _cannot_listen(config, exc)

    def tell(status: ModuleStatusFile) -> None:
        if link is None:
            _report(config, status.model_copy(update={"port": port}))
        else:
            link.send(status.model_copy(update={"port": port}))

    def announce(status: ModuleStatusFile) -> None:
        tell(status)
        if link is not None:
            service.published = link.wait_for_go()
        # listening only now: no request meets a Starting instance, and the status file says Ready
        # (with its backend) before a probe can succeed; the agent stops the instance this one
        # replaces only after reading that file, later than this next line runs
        loop.begin()

    if link is None:
        tell(service.status(port))
        _log_listening(config, port, tls, "one worker process")
    try:
        try:
            state = service.initialise(announce=announce)
        except (Abandoned, OSError):  # the supervisor is stopping (or gone) before this worker served
            return EXIT_OK
        if state is not ModuleRunState.READY:
            tell(service.status(port))
            return state.exit_code
        log.info("ready: %s", service.message)
        if link is not None:

            def watch(supervisor: SupervisorLink) -> None:  # the supervisor closing its end stops the worker
                supervisor.wait_closed()
                stop.set()

            threading.Thread(target=watch, args=(link,), name="supervisor", daemon=True).start()
        stop.wait()
        return state.exit_code
    finally:
        loop.stop(DRAIN_S)
        service.close()


class LoopThread:
    """The event loop of one worker, on its own thread (the main thread runs init() and waits)."""

    def __init__(self, http: HttpServer, sock: socket.socket) -> None:
        self.http = http
        self.sock = sock
        self.loop = new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.http.start(self.sock), self.loop).result(30)

    def begin(self) -> None:
        """Start listening (the worker is Ready)."""
        asyncio.run_coroutine_threadsafe(self.http.begin(), self.loop).result(30)

    def stop(self, drain_s: float) -> None:
        """Graceful: what is in progress is answered (at most ``drain_s``), then the loop ends."""
        try:
            asyncio.run_coroutine_threadsafe(self.http.shutdown(drain_s), self.loop).result(drain_s + 5)
        except Exception as exc:  # stopping goes on: the process is ending
            log.warning("stopping the HTTP server: %s", exc)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


def _cannot_listen(config: ServerConfig, exc: OSError) -> int:
    message = f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}; pick another --port"
    log.error(message)
    _report(config, _failed(message, config.port))
    return EXIT_FAILED


def _log_listening(config: ServerConfig, port: int, tls: ssl.SSLContext | None, workers: str) -> None:
    log.info(
        "listening on %s://%s:%d (%s; %s)",
        "https" if tls else "http",
        url_host(config.host),
        port,
        workers,
        "scoring needs a key" if config.auth_keys else "scoring needs no key",
    )


def _serve_threading(config: ServerConfig, tls: ssl.SSLContext | None) -> int:
    """The former transport (``--transport threading``): one process, a thread per connection."""
    from edgefleet.modules.scoring.threads import ScoringHTTPServer

    service = ScoringService(config)
    try:
        httpd = ScoringHTTPServer((config.host, config.port), service, tls)
    except OSError as exc:
        return _cannot_listen(config, exc)
    port = int(httpd.server_address[1])
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    _report(config, service.status(port))
    serving = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="http", daemon=True)
    serving.start()
    _log_listening(config, port, tls, "threading transport")
    try:
        state = service.initialise(announce=lambda status: _report(config, status.model_copy(update={"port": port})))
        if state is not ModuleRunState.READY:
            _report(config, service.status(port))
        if state is ModuleRunState.READY:
            log.info("ready: %s", service.message)
            stop.wait()
        return state.exit_code
    finally:
        httpd.shutdown()
        httpd.server_close()
        service.close()


def _forget_secrets() -> None:
    for secret in ModuleSecret:
        os.environ.pop(secret.env, None)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        config = parse_config(args, os.environ)
    except ConfigError as exc:
        _forget_secrets()
        print(f"error: {exc}", file=sys.stderr)
        status_path = _status_path_from(args)
        if status_path is not None:
            write_status_file(status_path, _failed(str(exc), 0))
        return EXIT_FAILED
    _forget_secrets()
    logging.basicConfig(
        level=getattr(logging, config.log_level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return serve(config)
