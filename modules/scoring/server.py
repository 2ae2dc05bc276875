"""Process lifecycle: parse the configuration, bind, initialise, report status, serve until SIGTERM.

The port is bound before initialisation so /v2/health/live answers while a slow init() runs and
/v2/health/ready says 503 until it is done. The status file and the exit codes are the agent's
contract (``edgefleet.protocol.module``): "Starting" once the port is bound, the outcome before
ready is answered; exit 0 after a graceful stop, 1 Failed (bad configuration, init() raised,
an unreadable TLS certificate or key), 78 Unschedulable (a required accelerator is missing).

The scoring keys are taken out of the process environment once read, so what an entry script
starts does not inherit them; they are never logged.
"""

from __future__ import annotations

import logging
import os
import signal
import ssl
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from edgefleet.modules.scoring.config import ServerConfig, parse_config
from edgefleet.modules.scoring.errors import ConfigError
from edgefleet.modules.scoring.http import ScoringHTTPServer
from edgefleet.modules.scoring.service import ScoringService
from edgefleet.protocol.module import (
    EXIT_FAILED,
    ModuleOption,
    ModuleRunState,
    ModuleSecret,
    ModuleStatusFile,
    url_host,
    write_status_file,
)

log = logging.getLogger(__name__)


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
    service = ScoringService(config)
    try:
        tls = tls_context(config)
    except ConfigError as exc:
        log.error("%s", exc)
        _report(config, _failed(str(exc), config.port))
        return EXIT_FAILED
    try:
        httpd = ScoringHTTPServer((config.host, config.port), service, tls)
    except OSError as exc:
        message = f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}; pick another --port"
        log.error(message)
        _report(config, _failed(message, config.port))
        return EXIT_FAILED
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
    log.info(
        "listening on %s://%s:%d (%s)",
        "https" if tls else "http",
        url_host(config.host),
        port,
        "scoring needs a key" if config.auth_keys else "scoring needs no key",
    )
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
