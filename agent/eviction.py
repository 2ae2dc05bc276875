"""Pure cache eviction: which cached blobs to delete, least recently used first, to fit a new one,
and which ones a manifest still references."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from edgefleet.protocol.models import DeviceManifest


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    last_used: float  # when a fetch or a module last used it


@dataclass(frozen=True)
class Eviction:
    remove: tuple[str, ...] = ()  # digests to delete, least recently used first
    shortfall: int = 0  # bytes still missing after every unreferenced blob went (>0: it cannot fit)


def plan_eviction(blobs: Iterable[Blob], referenced: frozenset[str], need: int, budget: int) -> Eviction:
    """Which blobs to delete so that ``need`` more bytes fit in ``budget`` (the cap, or the free disk).

    Only unreferenced blobs go, least recently used first (ties by digest, so the order is stable).
    When even removing all of them is not enough, nothing is removed: the blobs may still serve a
    rollback, and the new artifact would not fit anyway.
    """
    blobs = list(blobs)
    used = sum(b.size for b in blobs)
    excess = used + need - budget
    if excess <= 0:
        return Eviction()
    candidates = sorted((b for b in blobs if b.digest not in referenced), key=lambda b: (b.last_used, b.digest))
    chosen: list[str] = []
    for blob in candidates:
        if excess <= 0:
            break
        chosen.append(blob.digest)
        excess -= blob.size
    if excess > 0:
        return Eviction(shortfall=excess)
    return Eviction(remove=tuple(chosen))


def referenced(manifests: Iterable[DeviceManifest | None]) -> frozenset[str]:
    """Digests eviction must keep for these manifests (desired and last-known-good). Running
    instances need no blob: their module directories hold copies."""
    return frozenset(a.digest for m in manifests if m is not None for s in m.modules for a in s.artifacts)
