"""Sequence numbers for direct-method calls: strictly increasing per device, across hub restarts.

A device runs a call only when its sequence is greater than the last one it ran. The hub derives
the number from its wall clock in milliseconds (never less than one past the last number it gave
that device), so it needs no storage: a restarted hub starts from the clock, which has moved on by
more than the few milliseconds a burst of calls can run ahead of it. Several hub replicas need no
shared counter either. Each does the same. A call from a replica whose clock is behind the
device's last number is refused as a replay until its clock passes that number; NTP keeps
replicas within milliseconds of each other. Milliseconds since 1970 stay below 2**53 (the
protocol's ``MAX_SAFE_INTEGER``) until the year 287396.

Stored alternative, not chosen: a per-device counter in the database costs a write per call and a
schema migration, and is no more ordered across replicas than the clock is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class MethodSequence:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._last: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def draw(self, device_id: str) -> Iterator[int]:
        """The next sequence number for ``device_id``: the clock in ms, or one past the last one given.

        Held until the block ends: publish the call inside it, so two concurrent calls to one device
        reach the broker in the order of their numbers (the later-numbered one first would make the
        device refuse the other as a replay).
        """
        with self._lock:
            sequence = max(int(self._clock() * 1000), self._last.get(device_id, 0) + 1)
            self._last[device_id] = sequence
            yield sequence
