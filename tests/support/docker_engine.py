"""A private Docker Engine for the test session, and a busybox image made without a registry.

``DockerEngine`` runs its own ``dockerd`` (vfs storage, no bridge, no iptables) with its socket,
data root and exec root under a short temporary directory (unix socket paths are limited to about
100 characters), so tests never touch the machine's engine. ``stop()`` ends the engine, the
containerd it started and every container, unmounts what they left mounted and deletes the
directory. ``busybox_image`` imports a root filesystem of the host's static busybox as an image.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

log = logging.getLogger(__name__)

BUSYBOX = Path("/bin/busybox")
TEST_IMAGE = "edgefleet-test/busybox:1"
APPLETS = (
    "sh", "httpd", "sleep", "cat", "echo", "mkdir", "kill", "rm", "mv", "ls", "printf", "wget",
    "dirname", "test", "true", "false", "env", "ps", "id",
)  # fmt: skip
START_TIMEOUT_S = 60.0  # generous: two busy cores shared with other test runs


def dockerd_binary() -> str | None:
    return shutil.which("dockerd") or next(
        (p for p in ("/usr/sbin/dockerd", "/usr/bin/dockerd") if Path(p).exists()), None
    )


@dataclass
class DockerEngine:
    """A private dockerd; ``url`` is its unix socket as the docker SDK wants it."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="efd-", dir="/tmp")))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def log_path(self) -> Path:
        return self.root / "dockerd.log"

    def start(self) -> None:
        binary = dockerd_binary()
        if binary is None:
            raise RuntimeError("dockerd is not installed: run `make test` (it installs docker.io)")
        cmd = [
            binary,
            "--iptables=false", "--ip-masq=false", "--bridge=none", "--storage-driver=vfs",
            "-H", self.url,
            "--data-root", str(self.root / "data"),
            "--exec-root", str(self.root / "exec"),
            "--pidfile", str(self.root / "docker.pid"),
        ]  # fmt: skip
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready()

    def _wait_ready(self) -> None:
        import docker

        deadline = time.monotonic() + START_TIMEOUT_S
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"dockerd exited with {self.proc.returncode}; see {self.log_path}:\n{self._log_tail()}"
                )
            if self.socket.exists():
                try:
                    client = docker.DockerClient(base_url=self.url, timeout=10)
                    try:
                        client.ping()
                        return
                    finally:
                        client.close()
                except Exception as exc:  # not answering yet
                    last = exc
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"dockerd did not answer within {START_TIMEOUT_S}s (last error: {last}):\n{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return ""

    def docker(self, *args: str, stdin: bytes | None = None) -> str:
        """Run the docker CLI against this engine (for setup only; tests use the SDK)."""
        done = subprocess.run(
            ["docker", "-H", self.url, *args], input=stdin, capture_output=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
        return done.stdout.decode()

    def restart(self) -> None:
        """Stop dockerd as a service manager would (it stops its containers) and start it again."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        self.start()

    def stop(self) -> None:
        """Kill its containers, stop dockerd, then anything left: containerd, shims, mounts."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            self._kill_containers()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                log.warning("dockerd ignored SIGTERM for 60s; killing its process group")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        self._kill_leftovers()
        self._unmount_all()
        shutil.rmtree(self.root, ignore_errors=True)

    def _kill_containers(self) -> None:
        import docker

        try:
            client = docker.DockerClient(base_url=self.url, timeout=30)
            try:
                for container in client.containers.list():
                    container.kill()
            finally:
                client.close()
        except Exception as exc:  # the engine may already be gone; dockerd's own shutdown stops them too
            log.warning("could not kill the test engine's containers: %s", exc)

    def _kill_leftovers(self) -> None:
        """containerd and shims of this engine name its directory on their command line."""
        for proc in psutil.process_iter(["pid", "cmdline"]):
            cmdline = " ".join(proc.info.get("cmdline") or [])
            if str(self.root) in cmdline and proc.pid != os.getpid():
                try:
                    proc.kill()
                    proc.wait(timeout=10)
                except (psutil.NoSuchProcess, psutil.TimeoutExpired):
                    pass

    def _unmount_all(self) -> None:
        """dockerd leaves nsfs mounts (exec/netns) behind; deepest first so parents come free."""
        prefix = str(self.root) + "/"
        try:
            mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        except OSError:
            return
        for target in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
            subprocess.run(["umount", "-l", target], capture_output=True, check=False)


def busybox_rootfs_tar() -> bytes:
    """A root filesystem with the host's static busybox and its applets, as a tar archive."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("bin", "tmp", "etc", "proc", "sys", "dev"):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        tar.add(str(BUSYBOX), arcname="bin/busybox")
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            link.mode = 0o777
            tar.addfile(link)
    return buf.getvalue()


def busybox_image(engine: DockerEngine, tag: str = TEST_IMAGE) -> str:
    """Import the busybox root filesystem as ``tag`` (``docker import``: no registry needed)."""
    engine.docker("import", "-", tag, stdin=busybox_rootfs_tar())
    return tag


@dataclass(frozen=True)
class EngineWithImage:
    engine: DockerEngine
    image: str

    @property
    def url(self) -> str:
        return self.engine.url


def require_busybox() -> None:
    """The lifecycle module runs under busybox (host and image): fail clearly without it."""
    if not BUSYBOX.exists():
        pytest.fail(f"{BUSYBOX} is missing: apt-get install busybox-static (the lifecycle tests run under busybox)")


def docker_engine_fixture() -> Iterator[EngineWithImage]:
    """Body of a session-scoped fixture: skip without dockerd, else a private engine with the image."""
    if dockerd_binary() is None:
        pytest.skip("dockerd is not installed (apt-get install docker.io; `make test` does it)")
    require_busybox()
    engine = DockerEngine()
    engine.start()
    try:
        yield EngineWithImage(engine, busybox_image(engine))
    finally:
        engine.stop()
