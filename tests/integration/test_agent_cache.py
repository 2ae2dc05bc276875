"""Artifact cache against a real HTTP server: verify before caching, resume with Range, hard links."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgefleet.agent.cache import ArtifactCache
from edgefleet.agent.errors import ArtifactCorrupt, ArtifactDownloadError
from edgefleet.protocol import sha256_bytes
from tests.support.artifact_server import ArtifactServer

DATA = bytes(range(256)) * 400


def test_fetch_verifies_and_materializes_by_hard_link(tmp_path: Path) -> None:
    with ArtifactServer(tmp_path / "srv") as srv:
        ref = srv.add("a.bin", DATA, path="model/sub/a.bin")
        cache = ArtifactCache(tmp_path / "cache")
        blob = cache.fetch(ref.digest, ref.url, ref.size)
        assert blob.read_bytes() == DATA and cache.has(ref.digest) and cache.digests() == {ref.digest}
        assert not os.access(blob, os.W_OK) or os.geteuid() == 0  # read-only (root may still write)
        assert blob.stat().st_mode & 0o222 == 0
        cache.fetch(ref.digest, ref.url, ref.size)  # already cached: no second request
        assert len(srv.requests) == 1
        cache.materialize([ref], tmp_path / "mod")
        target = tmp_path / "mod" / "model" / "sub" / "a.bin"
        assert target.read_bytes() == DATA and target.stat().st_ino == blob.stat().st_ino
        assert list((tmp_path / "cache" / "partial").iterdir()) == []


def test_corrupt_download_is_refused_and_not_kept(tmp_path: Path) -> None:
    with ArtifactServer(tmp_path / "srv") as srv:
        ref = srv.add("a.bin", DATA, serve=DATA[:-1] + b"\x00")
        cache = ArtifactCache(tmp_path / "cache")
        with pytest.raises(ArtifactCorrupt, match=f"expected {ref.digest}"):
            cache.fetch(ref.digest, ref.url, ref.size)
        assert cache.digests() == frozenset()
        assert list((tmp_path / "cache" / "partial").iterdir()) == []


def test_oversized_download_is_refused(tmp_path: Path) -> None:
    with ArtifactServer(tmp_path / "srv") as srv:
        ref = srv.add("a.bin", DATA, serve=DATA + b"extra")
        with pytest.raises(ArtifactCorrupt):
            ArtifactCache(tmp_path / "cache").fetch(ref.digest, ref.url, ref.size)


def test_interrupted_download_resumes_with_range(tmp_path: Path) -> None:
    with ArtifactServer(tmp_path / "srv") as srv:
        ref = srv.add("a.bin", DATA)
        cache = ArtifactCache(tmp_path / "cache")
        part = tmp_path / "cache" / "partial" / (ref.digest.split(":")[1] + ".part")
        part.write_bytes(DATA[:1000])  # what an interrupted earlier attempt left
        cache.fetch(ref.digest, ref.url, ref.size)
        assert srv.requests == [("/a.bin", "bytes=1000-")]
        assert cache.blob_path(ref.digest).read_bytes() == DATA


def test_missing_artifact_is_a_download_error_naming_the_url(tmp_path: Path) -> None:
    with ArtifactServer(tmp_path / "srv") as srv:
        url = f"http://127.0.0.1:{srv.port}/nope"
        with pytest.raises(ArtifactDownloadError, match="nope: HTTP 404"):
            ArtifactCache(tmp_path / "cache").fetch(sha256_bytes(b"x"), url, 1)
