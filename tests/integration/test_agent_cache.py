"""Artifact cache against a real HTTP server: verify before caching, resume with Range; module
directories get copies, inside themselves only, and ``restore`` puts back what a module changed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgefleet.agent.cache import ArtifactCache
from edgefleet.agent.copying import fresh_directory
from edgefleet.agent.errors import ArtifactCorrupt, ArtifactDownloadError, ArtifactPathRefused
from edgefleet.protocol import sha256_bytes
from tests.support.artifact_server import ArtifactServer

DATA = bytes(range(256)) * 400


def test_fetch_verifies_and_materializes_a_copy(tmp_path: Path) -> None:
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
        assert target.read_bytes() == DATA and target.stat().st_ino != blob.stat().st_ino  # its own inode
        assert target.stat().st_mode & 0o222 == 0
        os.chmod(target, 0o644)
        target.write_bytes(b"changed by the module")  # what a module may do to its own copy
        assert blob.read_bytes() == DATA  # the cache's bytes are untouched
        assert list((tmp_path / "cache" / "partial").iterdir()) == []


def test_restore_copies_again_what_a_module_changed_or_lost(tmp_path: Path) -> None:
    with ArtifactServer(tmp_path / "srv") as srv:
        refs = [srv.add("a.bin", DATA, path="model/a.bin"), srv.add("s.py", b"print(1)\n", path="src/s.py")]
        cache = ArtifactCache(tmp_path / "cache")
        for ref in refs:
            cache.fetch(ref.digest, ref.url, ref.size)
        mod = tmp_path / "mod"
        cache.materialize(refs, mod)
        assert cache.restore(refs, mod) == []  # intact: nothing copied
        os.chmod(mod / "model" / "a.bin", 0o644)
        (mod / "model" / "a.bin").write_bytes(DATA[:-1] + b"\x00")  # same size, other bytes
        (mod / "src" / "s.py").unlink()
        assert cache.restore(refs, mod) == ["model/a.bin", "src/s.py"]
        assert (mod / "model" / "a.bin").read_bytes() == DATA and (mod / "src" / "s.py").read_bytes() == b"print(1)\n"


def test_a_symlink_on_the_way_is_refused_and_nothing_is_written_through_it(tmp_path: Path) -> None:
    with ArtifactServer(tmp_path / "srv") as srv:
        ref = srv.add("s.py", b"print(1)\n", path="src/pkg/s.py")
        cache = ArtifactCache(tmp_path / "cache")
        cache.fetch(ref.digest, ref.url, ref.size)
        outside = tmp_path / "outside"
        outside.mkdir()
        mod = tmp_path / "mod"
        mod.mkdir()
        (mod / "src").symlink_to(outside, target_is_directory=True)
        with pytest.raises(ArtifactPathRefused, match="src is a symlink or a file, not a directory"):
            cache.materialize([ref], mod)
        assert list(outside.iterdir()) == []
        (mod / "src").unlink()
        (mod / "src").mkdir()
        (mod / "src" / "pkg").write_text("a file where a directory goes")
        with pytest.raises(ArtifactPathRefused, match="src/pkg is a symlink or a file"):
            cache.materialize([ref], mod)
        (mod / "src" / "pkg").unlink()
        (mod / "src" / "pkg").mkdir()
        victim = outside / "victim.py"
        victim.write_text("not yours")
        (mod / "src" / "pkg" / "s.py").symlink_to(victim)  # at the file's own name: replaced, not followed
        cache.materialize([ref], mod)
        assert victim.read_text() == "not yours"
        target = mod / "src" / "pkg" / "s.py"
        assert not target.is_symlink() and target.read_bytes() == b"print(1)\n"


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


def test_messages_never_show_a_urls_query_the_download_grant(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    with ArtifactServer(tmp_path / "srv") as srv:
        ref = srv.add("a.bin", DATA)
        cache = ArtifactCache(tmp_path / "cache")
        missing = f"http://127.0.0.1:{srv.port}/nope?device=dev-1&grant=SECRETGRANT"
        with pytest.raises(ArtifactDownloadError) as failed:
            cache.fetch(sha256_bytes(b"x"), missing, 1)
        assert str(failed.value) == f"downloading http://127.0.0.1:{srv.port}/nope: HTTP 404 Not Found"
        cache.fetch(ref.digest, ref.url + "?grant=SECRETGRANT", ref.size)  # the query still reaches the server
        assert srv.requests[-1][0] == "/a.bin?grant=SECRETGRANT"
    assert "SECRETGRANT" not in caplog.text and f"from {ref.url}" in caplog.text


def test_a_module_directory_is_made_fresh_and_never_through_a_link(tmp_path: Path) -> None:
    modules, outside = tmp_path / "modules", tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not the agent's")
    modules.mkdir()
    (modules / "m").mkdir()
    (modules / "m" / "abc").symlink_to(outside, target_is_directory=True)  # where the instance goes
    made = fresh_directory(modules, "m", "abc")
    assert made.is_dir() and not made.is_symlink() and list(made.iterdir()) == []
    assert (outside / "keep.txt").read_text() == "not the agent's"  # the link went, its target stayed
    (made / "left-by-a-crash").write_text("x")
    assert list(fresh_directory(modules, "m", "abc").iterdir()) == []  # emptied
    (modules / "n").symlink_to(outside, target_is_directory=True)  # a link where the module's directory goes
    with pytest.raises(ArtifactPathRefused, match="is a symlink or a file, not a directory"):
        fresh_directory(modules, "n", "abc")
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
