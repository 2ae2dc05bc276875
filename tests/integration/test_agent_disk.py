"""Downloads and disk: background fetch keeps the loop alive, resumed partials that turn out wrong
are fetched again from zero, the cache cap evicts least-recently-used unreferenced blobs, and a full
cache or disk (real ENOSPC) is a clear error while the running version keeps serving."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from edgefleet.agent.cache import ArtifactCache
from edgefleet.agent.errors import ArtifactCorrupt, CacheFull
from edgefleet.protocol import ArtifactRef, sha256_bytes
from tests.integration.test_agent_reconcile import RunningAgent, env, fast_settings, get_json, healthy, spec
from tests.support.agent_harness import TestHub, module_pids, module_state
from tests.support.artifact_server import ArtifactServer
from tests.support.processes import Mosquitto, free_port, wait_for

__all__ = ["env"]  # the fixture, shared with the reconcile tests

DATA = bytes(range(256)) * 400  # 100 KiB


def part_of(cache_dir: Path, digest: str) -> Path:
    return cache_dir / "partial" / (digest.split(":")[1] + ".part")


# --- cache against a real HTTP server ------------------------------------------------------------


def test_resumed_partial_that_does_not_match_is_fetched_again_from_zero(tmp_path: Path) -> None:
    with ArtifactServer(tmp_path / "srv") as srv:
        ref = srv.add("a.bin", DATA)
        cache = ArtifactCache(tmp_path / "cache")
        part_of(tmp_path / "cache", ref.digest).write_bytes(b"\xff" * 1000)  # a wrong prefix from an earlier attempt
        cache.fetch(ref.digest, ref.url, ref.size)
        assert srv.requests == [("/a.bin", "bytes=1000-"), ("/a.bin", None)]
        assert cache.blob_path(ref.digest).read_bytes() == DATA


def test_resumed_partial_refetched_once_then_refused_when_the_server_is_wrong(tmp_path: Path) -> None:
    with ArtifactServer(tmp_path / "srv") as srv:
        ref = srv.add("a.bin", DATA, serve=DATA[:-1] + b"\x00")
        cache = ArtifactCache(tmp_path / "cache")
        part_of(tmp_path / "cache", ref.digest).write_bytes(DATA[:1000])
        with pytest.raises(ArtifactCorrupt, match=f"expected {ref.digest}"):
            cache.fetch(ref.digest, ref.url, ref.size)
        assert len(srv.requests) == 2  # once resumed, once from zero; not a loop
        assert cache.digests() == frozenset() and list((tmp_path / "cache" / "partial").iterdir()) == []


def test_cap_evicts_lru_unreferenced_and_modules_keep_their_copies(tmp_path: Path) -> None:
    with ArtifactServer(tmp_path / "srv") as srv:
        refs = [srv.add(f"{n}.bin", bytes([n]) * 1000) for n in range(5)]
        cache = ArtifactCache(tmp_path / "cache", max_bytes=3000)
        for ref in refs[:3]:
            cache.fetch(ref.digest, ref.url, ref.size)
        blob = [cache.blob_path(r.digest) for r in refs]
        for i, path in enumerate(blob[:3]):
            os.utime(path, (1000 + i, 1000 + i))  # last use: 0 oldest, 2 newest
        cache.materialize([refs[0]], tmp_path / "module")  # a module now has a copy of 0 (and 0 was just used)
        os.utime(blob[0], (900, 900))  # now 0 looks least recently used
        cache.fetch(refs[3].digest, refs[3].url, refs[3].size, keep=frozenset({refs[1].digest}))
        assert cache.digests() == {refs[1].digest, refs[2].digest, refs[3].digest}  # 0 was the LRU candidate
        assert (tmp_path / "module" / refs[0].path).read_bytes() == bytes([0]) * 1000  # the module's copy stays
        cache.fetch(refs[4].digest, refs[4].url, refs[4].size, keep=frozenset({refs[3].digest}))
        assert cache.digests() == {refs[2].digest, refs[3].digest, refs[4].digest}


def test_cap_that_referenced_blobs_fill_is_a_clear_error_and_evicts_nothing(tmp_path: Path) -> None:
    with ArtifactServer(tmp_path / "srv") as srv:
        small, big = srv.add("s.bin", b"s" * 1000), srv.add("b.bin", b"b" * 2500)
        cache = ArtifactCache(tmp_path / "cache", max_bytes=3000)
        cache.fetch(small.digest, small.url, small.size)
        with pytest.raises(CacheFull) as err:
            cache.fetch(big.digest, big.url, big.size, keep=frozenset({small.digest}))
        message = str(err.value)
        assert big.digest in message and "(2500 bytes)" in message and str(tmp_path / "cache") in message
        assert "cache.max_bytes is 3000" in message and "500 bytes short" in message
        assert cache.digests() == {small.digest} and srv.requests == [("/s.bin", None)]  # nothing downloaded


def test_enospc_while_writing_is_a_clear_error_and_leaves_no_partial(tmp_path: Path) -> None:
    with ArtifactServer(tmp_path / "srv") as srv:
        ref = srv.add("a.bin", DATA)
        cache = ArtifactCache(tmp_path / "cache")
        part = part_of(tmp_path / "cache", ref.digest)
        part.symlink_to("/dev/full")  # the kernel answers every write with ENOSPC
        with pytest.raises(CacheFull, match=r"disk full while downloading artifact sha256:\w+ \(102400 bytes\)"):
            cache.fetch(ref.digest, ref.url, ref.size)
        assert not part.is_symlink() and cache.digests() == frozenset()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a real file system that really fills up (needs root and mount)."""
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mountpoint)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def test_full_disk_is_refused_before_downloading(tmp_path: Path, tiny_disk: Path) -> None:
    with ArtifactServer(tmp_path / "srv") as srv:
        ref = srv.add("big.bin", b"x" * (2 << 20))
        cache = ArtifactCache(tiny_disk / "cache")  # the 2 GiB default cap is not what stops it: the disk is
        with pytest.raises(CacheFull, match="free disk space on the file system of") as err:
            cache.fetch(ref.digest, ref.url, ref.size)
        assert ref.digest in str(err.value) and str(tiny_disk / "cache") in str(err.value)
        assert srv.requests == []


# --- the agent -----------------------------------------------------------------------------------


class GatedServer:
    """Serves one file, but holds every response until ``release`` (a download that takes as long
    as the test wants, without timing anything)."""

    def __init__(self, data: bytes) -> None:
        self.gate = threading.Event()
        self.asked = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.asked.set()
                outer.gate.wait(60)
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.ref = ArtifactRef(
            path="model/model.onnx", digest=sha256_bytes(data), size=len(data), url=f"http://127.0.0.1:{self.port}/m"
        )

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


def test_long_download_does_not_block_probes_reports_or_direct_methods(
    env: tuple[TestHub, ArtifactServer], mosquitto: Mosquitto, tmp_path: Path
) -> None:
    hub, artifacts = env
    v1 = artifacts.add("v1.onnx", b"one" * 100, path="model/model.onnx")
    gated = GatedServer(b"two" * 100)
    running = RunningAgent(fast_settings(hub.device_id, mosquitto, tmp_path / "agent", hub.key.public_key_b64))
    try:
        hub.publish(1, [spec("web", [v1])])
        first = hub.wait_report(healthy("web", 1), what="web Healthy on generation 1")
        endpoint = first.modules[0].endpoint
        (pid,) = module_pids(hub.device_id, "web")
        hub.publish(2, [spec("web", [gated.ref])])
        assert gated.asked.wait(30), "the agent never asked for the new artifact"
        # the download hangs; the loop still answers, reports and probes, and v1 serves
        assert hub.call("ping", {}).payload["generation"] == 2
        report = hub.wait_report(
            lambda r: r.generation == 2 and "downloading 1 artifact(s)" in r.modules[0].message,
            what="downloading reported while the fetch runs",
        )
        assert (
            module_state(report, "web") == "Transitioning"
            and "previous version keeps serving" in report.modules[0].message
        )
        assert get_json(f"{endpoint}/info")["pid"] == pid and module_pids(hub.device_id, "web") == [pid]
        gated.gate.set()
        hub.wait_report(healthy("web", 2), what="web Healthy on generation 2 once the download ends")
        assert module_pids(hub.device_id, "web") != [pid]
        gap = running.agent.serving_gaps["web"]
        assert gap > 0  # measured: old instance stopped -> new instance ready
        sent = wait_for(
            lambda: [t for t in hub.telemetry if "servingGapS" in t.modules.get("web", {})], 20, what="gap telemetry"
        )
        assert sent[-1].modules["web"]["servingGapS"] == gap
    finally:
        running.stop()
        gated.close()


def test_cap_smaller_than_the_new_artifact_fails_the_module_and_the_old_keeps_serving(
    env: tuple[TestHub, ArtifactServer], mosquitto: Mosquitto, tmp_path: Path
) -> None:
    hub, artifacts = env
    v1 = artifacts.add("v1.onnx", b"1" * 10_000, path="model/model.onnx")
    v2 = artifacts.add("v2.onnx", b"2" * 50_000, path="model/model.onnx")
    settings = fast_settings(
        hub.device_id, mosquitto, tmp_path / "agent", hub.key.public_key_b64, cache={"max_bytes": 40_000}
    )
    running = RunningAgent(settings)
    try:
        hub.publish(1, [spec("web", [v1])])
        first = hub.wait_report(healthy("web", 1))
        (pid,) = module_pids(hub.device_id, "web")
        hub.publish(2, [spec("web", [v2])])
        report = hub.wait_report(
            lambda r: r.generation == 2 and module_state(r, "web") == "Failed", what="web Failed: no room for v2"
        )
        web = report.modules[0]
        assert v2.digest in web.message and "(50000 bytes)" in web.message and "cache.max_bytes is 40000" in web.message
        assert str(tmp_path / "agent" / "cache") in web.message and "previous version keeps serving" in web.message
        assert not report.converged
        assert module_pids(hub.device_id, "web") == [pid]
        assert get_json(f"{first.modules[0].endpoint}/info")["pid"] == pid
    finally:
        running.stop()


def test_full_disk_fails_the_module_and_the_old_keeps_serving(
    env: tuple[TestHub, ArtifactServer], mosquitto: Mosquitto, tmp_path: Path, tiny_disk: Path
) -> None:
    hub, artifacts = env
    v1 = artifacts.add("v1.onnx", b"1" * 10_000, path="model/model.onnx")
    v2 = artifacts.add("v2.onnx", b"2" * (2 << 20), path="model/model.onnx")
    running = RunningAgent(fast_settings(hub.device_id, mosquitto, tiny_disk / "agent", hub.key.public_key_b64))
    try:
        hub.publish(1, [spec("web", [v1])])
        hub.wait_report(healthy("web", 1))
        (pid,) = module_pids(hub.device_id, "web")
        hub.publish(2, [spec("web", [v2])])
        report = hub.wait_report(
            lambda r: r.generation == 2 and module_state(r, "web") == "Failed", what="web Failed: disk full"
        )
        message = report.modules[0].message
        assert v2.digest in message and f"({2 << 20} bytes)" in message and "free disk space" in message
        assert module_pids(hub.device_id, "web") == [pid]
    finally:
        running.stop()
