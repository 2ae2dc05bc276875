"""Artifact cache keyed by sha256: ``blobs/<hex>`` holds only bytes whose digest was verified.

A download goes to ``partial/<hex>.part`` (resumed with HTTP Range after an interruption), is
hashed in full, and enters ``blobs/`` by an atomic rename only when digest and size match the
signed manifest. So a crash at any point leaves either no blob or a correct one. Module
directories are materialized by hard-linking blobs (copying across file systems); blobs are
read-only so a module cannot alter the cached bytes through its link.

Size: the cache stays under ``max_bytes`` (blobs plus partial downloads). Before a download it
makes room by deleting unreferenced blobs least recently used first (``plan.plan_eviction``);
referenced are the digests the caller names (desired and last-known-good manifests) and any blob
hard-linked into a module directory (a running instance uses it). A blob's mtime is its last use.
When the artifact cannot fit, under the cap or on the disk (ENOSPC), the fetch fails with
``CacheFull`` naming the artifact, its size and the cache directory; nothing running is touched.

``BackgroundFetcher`` runs downloads on a worker thread so the reconcile loop keeps probing and
reporting during a long download.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from agent.errors import ArtifactCorrupt, ArtifactDownloadError
from protocol.digests import format_digest, parse_digest
from protocol.models import ArtifactRef

log = logging.getLogger(__name__)

_CHUNK = 1 << 16


class ArtifactCache:
    def __init__(self, root: Path, timeout_s: float = 30.0) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.partial = root / "partial"
        self.timeout_s = timeout_s
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.partial.mkdir(parents=True, exist_ok=True)

    def blob_path(self, digest: str) -> Path:
        return self.blobs / parse_digest(digest)

    def has(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def digests(self) -> frozenset[str]:
        return frozenset(format_digest(p.name) for p in self.blobs.iterdir() if p.is_file())

    def fetch(self, digest: str, url: str, size: int) -> Path:
        """Make ``digest`` present in the cache, downloading from ``url`` if needed."""
        final = self.blob_path(digest)
        if final.is_file():
            return final
        part = self.partial / f"{final.name}.part"
        self._download(url, part, size)
        actual_size = part.stat().st_size
        actual = _sha256_of(part)
        if actual != digest or actual_size != size:
            part.unlink(missing_ok=True)  # never keep bytes that do not match: the next try starts clean
            raise ArtifactCorrupt(
                f"artifact from {url} does not match the signed manifest: expected {digest} ({size} bytes), "
                f"got {actual} ({actual_size} bytes); refused, not cached and not run — check the hub's "
                "artifact store"
            )
        os.chmod(part, 0o444)
        with open(part, "rb") as f:
            os.fsync(f.fileno())
        os.replace(part, final)
        log.info("cached artifact %s (%d bytes) from %s", digest, size, url)
        return final

    def _download(self, url: str, part: Path, size: int) -> None:
        have = part.stat().st_size if part.exists() else 0
        if have > size:  # longer than the signed size: cannot be a prefix of the right bytes
            part.unlink()
            have = 0
        if have == size and size > 0:
            return  # complete from an earlier run that died before verifying
        request = urllib.request.Request(url)
        if have:
            request.add_header("Range", f"bytes={have}-")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:
                resumed = have > 0 and resp.status == 206
                if have and not resumed:
                    log.info("server ignored Range for %s; downloading it again from the start", url)
                with open(part, "ab" if resumed else "wb") as out:
                    written = have if resumed else 0
                    while chunk := resp.read(_CHUNK):
                        written += len(chunk)
                        if written > size:
                            break  # more bytes than signed: stop reading, the digest check refuses it
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # our partial file is stale; start over next time
                part.unlink(missing_ok=True)
            raise ArtifactDownloadError(f"downloading {url}: HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            # the partial file stays: the next attempt resumes with Range
            raise ArtifactDownloadError(f"downloading {url}: {exc}") from exc

    def materialize(self, artifacts: Iterable[ArtifactRef], dest: Path) -> None:
        """Place every artifact at ``dest/<artifact.path>`` (hard link, or copy across file systems)."""
        dest.mkdir(parents=True, exist_ok=True)
        for art in artifacts:
            target = dest / art.path
            target.parent.mkdir(parents=True, exist_ok=True)
            blob = self.blob_path(art.digest)
            if not blob.is_file():
                raise ArtifactDownloadError(f"artifact {art.digest} for {art.path} is not in the cache {self.blobs}")
            target.unlink(missing_ok=True)
            try:
                os.link(blob, target)
            except OSError:
                shutil.copyfile(blob, target)


def _sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return format_digest(h.hexdigest())
