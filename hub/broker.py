"""A private MQTT broker for the demo and local development.

Mosquitto when its binary exists (what users run in production), with the locked-down configuration
``edgefleet hub broker-config`` wrote when one is given (TLS, client certificates, ACL, CRL);
otherwise the pure-Python amqtt broker, so `edgefleet demo` works on a machine with nothing but pip
— plain MQTT, anonymous, no ACL. Either way it listens on a loopback port only and is stopped with
the demo.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or next((p for p in _MOSQUITTO_PATHS if Path(p).exists()), None)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], log_file: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"MQTT broker exited with code {proc.returncode}; see {log_file}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"MQTT broker did not listen on 127.0.0.1:{port} within {timeout:.0f}s; see {log_file}")


@dataclass
class LocalBroker:
    kind: str  # "mosquitto" | "amqtt"
    port: int
    proc: subprocess.Popen[bytes]
    tls: bool = False  # the locked-down configuration: TLS and identities

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_local_broker(
    workdir: Path, port: int | None = None, prefer: str = "auto", config: Path | None = None
) -> LocalBroker:
    """Start a broker on 127.0.0.1; ``prefer`` is "auto", "mosquitto" or "amqtt". ``config``: a
    mosquitto.conf from ``edgefleet hub broker-config`` (listening on ``port``), run as it is."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    mosquitto = find_mosquitto() if prefer in ("auto", "mosquitto") else None
    if prefer == "mosquitto" and mosquitto is None:
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto), or use the embedded broker")
    log_file = workdir / "broker.log"
    if mosquitto and config is not None:
        cmd, kind = [mosquitto, "-c", str(config)], "mosquitto"
    elif mosquitto:
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest file {log_file}\n"
        )
        cmd, kind = [mosquitto, "-c", str(conf)], "mosquitto"
    else:
        conf = workdir / "amqtt.yaml"
        conf.write_text(
            "listeners:\n  default:\n    type: tcp\n"
            f"    bind: 127.0.0.1:{port}\n"
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n"
        )
        amqtt = Path(sys.executable).with_name("amqtt")
        if not amqtt.exists():
            raise RuntimeError("no MQTT broker: install mosquitto, or pip install 'edgefleet[embedded]' for amqtt")
        cmd, kind = [str(amqtt), "-c", str(conf)], "amqtt"
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    _wait_port(port, proc, log_file)
    log.info("started %s broker on 127.0.0.1:%d", kind, port)
    return LocalBroker(kind, port, proc, tls=kind == "mosquitto" and config is not None)
