"""Artifact cache keyed by sha256: ``blobs/<hex>`` holds only bytes whose digest was verified.

A download goes to ``partial/<hex>.part`` (resumed with HTTP Range after an interruption), is
hashed in full, and enters ``blobs/`` by an atomic rename only when digest and size match the
signed manifest. So a crash at any point leaves either no blob or a correct one. Module
directories get *copies* of blobs (a reflink where the file system has them; ``copying``), never
the cache's own inode: what a module does to its files cannot reach the cache or another
deployment. ``restore`` checks a module directory's files against their digests and copies again
what differs (a module that changed its files, a copy cut short by a power loss) before an
instance is started again.

Size: the cache stays under ``max_bytes`` (blobs plus partial downloads). Before a download it
makes room by deleting unreferenced blobs least recently used first (``eviction.plan_eviction``);
referenced are the digests the caller names (desired and last-known-good manifests). Running
instances hold their own copies, so evicting a blob never touches them. A blob's mtime is its
last use. When the artifact cannot fit, under the cap or on the disk (ENOSPC), the fetch fails
with ``CacheFull`` naming the artifact, its size and the cache directory; nothing running is
touched.

``BackgroundFetcher`` runs downloads on a worker thread so the reconcile loop keeps probing and
reporting during a long download. A failed download is retried after a cool-off when its error is
temporary; a permanent one (``ArtifactCorrupt``, ``CacheFull``) is a refusal, not retried until the
generation changes (``retry``).

An https:// URL's certificate is verified against ``trust`` (the hub's CA from the bootstrap bundle
by default, ``hubtls``); a certificate that does not verify fails the download, saying which CA
setting to give, and is retried like any failed download.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import http.client
import logging
import os
import queue
import shutil
import stat
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import urlsplit

from edgefleet.agent.copying import copy_fd, open_inside
from edgefleet.agent.errors import ArtifactCorrupt, ArtifactDownloadError, ArtifactError, CacheFull
from edgefleet.agent.eviction import Blob, plan_eviction
from edgefleet.agent.hubtls import HubTrust
from edgefleet.agent.observed import FetchFailure
from edgefleet.agent.retry import Attempt, RetryTuning, failed_attempt
from edgefleet.protocol.digests import format_digest, parse_digest
from edgefleet.protocol.models import ArtifactRef

log = logging.getLogger(__name__)

_CHUNK = 1 << 16
DEFAULT_MAX_BYTES = 2 << 30


class ArtifactCache:
    """``trust``: the CA an https:// artifact URL's certificate must chain to (``hubtls``)."""

    def __init__(
        self, root: Path, timeout_s: float = 30.0, max_bytes: int = DEFAULT_MAX_BYTES, trust: HubTrust | None = None
    ) -> None:
        self.root = root
        self.trust = trust or HubTrust()
        self.blobs = root / "blobs"
        self.partial = root / "partial"
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        # eviction, the rename into blobs/ and materializing must not interleave (worker vs loop)
        self._lock = threading.Lock()
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.partial.mkdir(parents=True, exist_ok=True)

    def blob_path(self, digest: str) -> Path:
        return self.blobs / parse_digest(digest)

    def has(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def digests(self) -> frozenset[str]:
        return frozenset(format_digest(p.name) for p in self.blobs.iterdir() if p.is_file())

    def fetch(
        self,
        digest: str,
        url: str,
        size: int,
        keep: frozenset[str] = frozenset(),
        cancel: threading.Event | None = None,
    ) -> Path:
        """Make ``digest`` present in the cache, downloading from ``url`` if needed.

        ``keep``: digests that must not be evicted to make room (besides blobs in use by modules).
        """
        shown = shown_url(url)
        final = self.blob_path(digest)
        if final.is_file():
            _touch(final)
            return final
        part = self.partial / f"{final.name}.part"
        self._make_room(digest, url, size, part, keep | {digest})
        resumed = self._download(url, part, size, digest, cancel)
        actual, actual_size = _sha256_of(part), part.stat().st_size
        if (actual != digest or actual_size != size) and resumed:
            # the kept prefix may be what was wrong (e.g. the file changed on the server between
            # attempts): discard it and try once more from zero before calling the artifact corrupt
            log.warning("resumed download of %s does not match %s; downloading it again from zero", shown, digest)
            part.unlink(missing_ok=True)
            self._download(url, part, size, digest, cancel)
            actual, actual_size = _sha256_of(part), part.stat().st_size
        if actual != digest or actual_size != size:
            part.unlink(missing_ok=True)  # never keep bytes that do not match: the next try starts clean
            raise ArtifactCorrupt(
                f"artifact from {shown} does not match the signed manifest: expected {digest} ({size} bytes), "
                f"got {actual} ({actual_size} bytes); refused, not cached and not run — check the hub's "
                "artifact store"
            )
        os.chmod(part, 0o444)
        with open(part, "rb") as f:
            os.fsync(f.fileno())
        with self._lock:
            os.replace(part, final)
            _touch(final)
        log.info("cached artifact %s (%d bytes) from %s", digest, size, shown)
        return final

    # --- size ------------------------------------------------------------------------------------

    def usage(self) -> tuple[list[Blob], int]:
        """(blobs, bytes of partial downloads)."""
        blobs = []
        for path in self.blobs.iterdir():
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            blobs.append(Blob(format_digest(path.name), st.st_size, st.st_mtime))
        partial = 0
        for path in self.partial.iterdir():
            try:
                partial += path.stat().st_size
            except FileNotFoundError:
                pass
        return blobs, partial

    def _make_room(self, digest: str, url: str, size: int, part: Path, keep: frozenset[str]) -> None:
        shown = shown_url(url)
        have = part.stat().st_size if part.is_file() else 0
        with self._lock:
            blobs, partial = self.usage()
            referenced = keep
            where = f"artifact {digest} ({size} bytes) from {shown} in the artifact cache {self.root}"
            # the cap counts blobs and every partial download, this one at its full size
            cap = plan_eviction(blobs, referenced, need=size, budget=self.max_bytes - (partial - have))
            if cap.shortfall:
                held = sum(b.size for b in blobs if b.digest in referenced)
                raise CacheFull(
                    f"no room for {where}: cache.max_bytes is {self.max_bytes} and {held} bytes are held by "
                    f"artifacts in use (desired or last-known-good); {cap.shortfall} bytes short — "
                    "raise the agent setting cache.max_bytes (EDGEFLEET_AGENT_CACHE__MAX_BYTES)"
                )
            self._evict(cap.remove, "cache.max_bytes")
            blobs = [b for b in blobs if b.digest not in cap.remove]
            free = shutil.disk_usage(self.root).free
            # on the disk only the missing bytes count; evicting a blob frees its size
            used = sum(b.size for b in blobs)
            disk = plan_eviction(blobs, referenced, need=size - have, budget=free + used)
            if disk.shortfall:
                raise CacheFull(
                    f"no room for {where}: the disk has {free} bytes free and evicting unused artifacts cannot "
                    f"free the {disk.shortfall} bytes missing — free disk space on the file system of {self.root}"
                )
            self._evict(disk.remove, "disk space")

    def _evict(self, digests: Iterable[str], why: str) -> None:
        for digest in digests:
            log.info("evicting unreferenced artifact %s from the cache (%s)", digest, why)
            self.blob_path(digest).unlink(missing_ok=True)

    # --- download --------------------------------------------------------------------------------

    def _download(self, url: str, part: Path, size: int, digest: str, cancel: threading.Event | None) -> bool:
        """Download into ``part``, resuming what it holds; return whether it resumed (kept a prefix)."""
        shown = shown_url(url)
        have = part.stat().st_size if part.exists() else 0
        if have > size:  # longer than the signed size: cannot be a prefix of the right bytes
            part.unlink()
            have = 0
        if have == size and size > 0:
            return True  # complete from an earlier run that died before verifying
        request = urllib.request.Request(url)
        if have:
            request.add_header("Range", f"bytes={have}-")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s, context=self.trust.context) as resp:
                resumed = have > 0 and resp.status == 206
                if have and not resumed:
                    log.info("server ignored Range for %s; downloading it again from the start", shown)
                with open(part, "ab" if resumed else "wb") as out:
                    written = have if resumed else 0
                    while chunk := resp.read(_CHUNK):
                        if cancel is not None and cancel.is_set():
                            raise ArtifactDownloadError(f"downloading {shown}: cancelled (agent stopping)")
                        written += len(chunk)
                        if written > size:
                            break  # more bytes than signed: stop reading, the digest check refuses it
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                return resumed
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # our partial file is stale; start over next time
                part.unlink(missing_ok=True)
            raise ArtifactDownloadError(f"downloading {shown}: HTTP {exc.code} {exc.reason}") from exc
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                part.unlink(missing_ok=True)  # a partial file on a full disk only keeps it full
                raise CacheFull(
                    f"disk full while downloading artifact {digest} ({size} bytes) from {shown} into the artifact "
                    f"cache {self.root}: {exc.strerror}; the partial download was deleted — free disk space on "
                    "that file system"
                ) from exc
            # the partial file stays: the next attempt resumes with Range
            raise ArtifactDownloadError(f"downloading {shown}: {self.trust.failure(exc) or exc}") from exc
        except http.client.HTTPException as exc:
            raise ArtifactDownloadError(f"downloading {shown}: {exc}") from exc

    def materialize(self, artifacts: Iterable[ArtifactRef], dest: Path) -> None:
        """Copy every artifact to ``dest/<artifact.path>`` (reflink where possible), read-only.

        ``ArtifactPathRefused`` when a path would leave ``dest`` (a symlink or a file where a
        directory belongs): nothing is written through it. ``CacheFull`` when the disk is full.
        """
        dest.mkdir(parents=True, exist_ok=True)
        root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            for art in artifacts:
                self._copy_out(art, root, dest)
        finally:
            os.close(root)

    def restore(self, artifacts: Iterable[ArtifactRef], dest: Path) -> list[str]:
        """Make ``dest``'s artifact files equal to their digests again, copying from the cache what
        differs or is missing; return the paths that were copied again.

        Run before an instance is started again: its files are the module's own (it may have
        changed them), and copies are not fsynced, so a power loss may have cut one short.
        """
        repaired = [a for a in artifacts if not _holds(dest / a.path, a)]
        if repaired:
            self.materialize(repaired, dest)
            log.warning(
                "module directory %s: %s did not match the signed digests; copied again from the cache",
                dest,
                ", ".join(a.path for a in repaired),
            )
        return [a.path for a in repaired]

    def _copy_out(self, art: ArtifactRef, root: int, dest: Path) -> None:
        blob = self.blob_path(art.digest)
        where = f"artifact {art.path} ({art.digest}) in module directory {dest}"
        with self._lock:  # eviction cannot take the blob between the check and the open
            try:
                src = os.open(blob, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise ArtifactDownloadError(
                    f"artifact {art.digest} for {art.path} is not in the cache {self.blobs}"
                ) from None
            _touch(blob)
        try:
            dst = open_inside(root, art.path, where)
            try:
                how = copy_fd(src, dst, os.fstat(src).st_size)
            except OSError as exc:
                (dest / art.path).unlink(missing_ok=True)  # no half copy stays behind
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise CacheFull(
                        f"disk full while copying {where} ({art.size} bytes): {exc.strerror}; free disk space on the "
                        "file system of the agent's data directory"
                    ) from exc
                raise ArtifactError(f"copying {where}: {exc}") from exc
            finally:
                os.close(dst)
        finally:
            os.close(src)
        log.debug("copied %s by %s", where, how)


class BackgroundFetcher:
    """Downloads on one worker thread; the loop asks what is in flight and what failed.

    A failure is remembered (error, cool-off or refusal) until the artifact is fetched or
    ``forget_failures`` is called for a new generation, so the planner keeps reporting the reason
    while a retry runs (or, refused, until the hub publishes a new generation).
    """

    def __init__(
        self,
        cache: ArtifactCache,
        keep: Callable[[], frozenset[str]],
        on_done: Callable[[], None],
        retry_base_s: float = 1.0,
        retry_max_s: float = 60.0,
    ) -> None:
        self.cache = cache
        self._keep = keep
        self._on_done = on_done
        self._tuning = RetryTuning(retry_base_s, retry_max_s)
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[str, str, int] | None] = queue.SimpleQueue()
        self._in_flight: set[str] = set()
        self._failures: dict[str, Attempt] = {}
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None

    def submit(self, digest: str, url: str, size: int) -> None:
        with self._lock:
            if digest in self._in_flight:
                return
            self._in_flight.add(digest)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, daemon=True, name="artifact-fetch")
                self._thread.start()
        self._queue.put((digest, url, size))

    def fetching(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._in_flight)

    def failures(self) -> dict[str, FetchFailure]:
        with self._lock:
            return {d: FetchFailure(a.error, a.retry_at, refused=a.permanent) for d, a in self._failures.items()}

    def forget_failures(self) -> None:
        """A new generation deserves a fresh attempt at once."""
        with self._lock:
            self._failures.clear()

    def close(self, timeout_s: float = 5.0) -> None:
        self._cancel.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            digest, url, size = job
            try:
                self.cache.fetch(digest, url, size, keep=self._keep(), cancel=self._cancel)
            except ArtifactError as exc:
                attempt = self._failed(digest, exc)
                if attempt.retry_at is None:
                    log.warning("fetching %s refused (not retried in this generation): %s", digest, exc)
                else:
                    delay = attempt.retry_at - time.time()
                    log.warning(
                        "fetching %s failed (attempt %d, next try in %.1fs): %s", digest, attempt.failures, delay, exc
                    )
            except Exception as exc:  # a bug must not kill the worker: report it like any failed download
                log.exception("fetching %s crashed", digest)
                self._failed(digest, exc, "internal error, see the agent log")
            else:
                with self._lock:
                    self._failures.pop(digest, None)
            finally:
                with self._lock:
                    self._in_flight.discard(digest)
                if not self._cancel.is_set():
                    self._on_done()

    def _failed(self, digest: str, error: BaseException, message: str | None = None) -> Attempt:
        with self._lock:
            attempt = failed_attempt(error, self._failures.get(digest), time.time(), self._tuning)
            if message is not None:
                attempt = dataclasses.replace(attempt, error=message)
            self._failures[digest] = attempt
        return attempt


def shown_url(url: str) -> str:
    """``url`` as messages show it: without its query, which may hold a download grant (the hub's) or
    a signature (a presigned store URL); messages reach reports, which operators read."""
    return urlsplit(url)._replace(query="", fragment="").geturl()


def _touch(path: Path) -> None:
    """Mark a blob as just used (its mtime is the LRU clock)."""
    try:
        os.utime(path)
    except OSError:
        pass


def _holds(path: Path, art: ArtifactRef) -> bool:
    """Whether ``path`` is a regular file (not a link) with the artifact's size and digest."""
    try:
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == art.size and _sha256_of(path) == art.digest


def _sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return format_digest(h.hexdigest())
