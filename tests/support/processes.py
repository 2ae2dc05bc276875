"""Real helper processes for tests: free ports, a Mosquitto broker (open, or locked down with the
configuration `edgefleet hub broker-config` writes), waiting for conditions."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from edgefleet.hub.broker import find_mosquitto

T = TypeVar("T")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, what: str = "condition") -> T:
    """Poll until ``condition()`` is truthy and return it; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # conditions may probe things that are not up yet
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(
        f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else "")
    )


def wait_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    def open_() -> bool:
        with socket.socket() as s:
            s.settimeout(0.2)
            return s.connect_ex((host, port)) == 0

    wait_for(open_, timeout, what=f"{host}:{port} to accept connections")


# Test-only additions: save retained messages often; the open broker queues as much as the generated
# configuration does (hub/server/broker_config.py MAX_QUEUED_MESSAGES).
_TEST_LINES = ("autosave_interval 1",)
_OPEN_LINES = (*_TEST_LINES, "max_queued_messages 100000")


@dataclass
class Mosquitto:
    """A private Mosquitto broker on a free loopback port; ``restart`` keeps the port.

    Open (anonymous, plain MQTT) by default. With ``hub_data_dir`` it is secure: it runs the
    configuration ``edgefleet hub broker-config`` writes for that hub (its CA, its store), TLS on
    ``mqtts://127.0.0.1:PORT`` with client certificates (or passwords: ``auth="password"``), the
    generated ACL and CRL; a hub with that data dir finds the files and reloads this broker.
    """

    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    hub_data_dir: Path | None = None
    auth: str = "certificate"

    @property
    def secure(self) -> bool:
        return self.hub_data_dir is not None

    @property
    def url(self) -> str:
        return f"mqtts://127.0.0.1:{self.port}" if self.secure else f"mqtt://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.workdir / "mosquitto.log"

    def _secure_config(self) -> Path:
        conf = self.workdir / "mosquitto.conf"
        if not conf.exists():
            from edgefleet.hub.server.broker_config import BrokerOptions, write_for_hub

            assert self.hub_data_dir is not None
            options = BrokerOptions(port=self.port, auth=self.auth, extra=_TEST_LINES)  # type: ignore[arg-type]
            write_for_hub(self.hub_data_dir, None, self.workdir, options)
        return conf

    def start(self) -> None:
        binary = find_mosquitto()
        if binary is None:
            raise RuntimeError(
                "mosquitto is not installed: run `make test` (it installs it) or apt-get install mosquitto"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.secure:
            conf = self._secure_config()
        else:
            conf = self.workdir / "mosquitto.conf"
            # persistence keeps retained messages across restart, as a production broker would
            conf.write_text(
                f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                f"persistence_location {self.workdir}/\n" + "\n".join(_OPEN_LINES) + "\n"
            )
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        wait_port(self.port)

    def reload(self) -> None:
        """SIGHUP: Mosquitto rereads its CRL, password file and ACL."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()
