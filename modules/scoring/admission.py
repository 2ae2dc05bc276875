"""Back-pressure: which scoring requests a worker takes on, decided without I/O.

Azure ML's names: ``maxConcurrentRequestsPerContainer`` (``--max-concurrent-requests``) bounds the
requests admitted at once, running or waiting for an inference thread; ``maxQueueWaitMs``
(``--max-queue-wait-ms``) bounds how long an admitted request may wait for a thread. Past either,
the answer is 503 with Retry-After and the model never sees the request.

The admitted requests' bodies are bounded too (``byte_budget``, a few ``--max-request-bytes``, which
follow the memory limit), so many large requests queue in the clients, not in the module's memory.
A request the limits allow alone is always admitted when nothing else is: one request of the
largest size must still be served.

The limits are the container's; with several worker processes each one gets its share
(``share``). Only the event loop's thread calls ``admit``/``release``, so there is no lock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# the admitted requests' bodies together may take this many --max-request-bytes: protocol.module sizes
# that limit (1/16 of the memory limit) so that "a few concurrent requests" fit beside the model
BODY_BUDGET_REQUESTS = 4


@dataclass
class Admission:
    limit: int  # requests admitted at once
    byte_budget: int  # their announced body bytes together
    max_wait_s: float  # longest wait for an inference thread
    active: int = 0
    active_bytes: int = 0

    def admit(self, length: int) -> str | None:
        """Take on a request with a body of ``length`` bytes: None, or why not (the 503's reason)."""
        if self.active >= self.limit:
            return f"{self.active} scoring requests are in progress, the most this worker takes on"
        if self.active and self.active_bytes + length > self.byte_budget:
            return f"the requests in progress hold {self.active_bytes} bytes of {self.byte_budget}"
        self.active += 1
        self.active_bytes += length
        return None

    def release(self, length: int) -> None:
        self.active -= 1
        self.active_bytes -= length

    def expired(self, queued_at: float, now: float) -> bool:
        """Did the request wait for a thread longer than maxQueueWaitMs (then it does not run)?"""
        return now - queued_at > self.max_wait_s


def share(total: int, workers: int) -> int:
    """One worker's part of a container-wide limit (at least 1)."""
    return max(1, math.ceil(total / workers))


def admission_for(
    max_concurrent_requests: int, max_queue_wait_ms: int, max_request_bytes: int, workers: int
) -> Admission:
    return Admission(
        limit=share(max_concurrent_requests, workers),
        byte_budget=share(BODY_BUDGET_REQUESTS * max_request_bytes, workers),
        max_wait_s=max_queue_wait_ms / 1000,
    )
