"""Which direct-method calls the agent runs, decided without I/O (``methods`` acts on the verdict).

A call runs only when it verifies against the pinned hub key, names this device, is inside its
validity window (give or take the protocol's clock skew) and its sequence is greater than the last
call run (``AgentState.method_sequence``, persisted before the call runs). Anything else is
refused and never run; the refusal is answered (401 not signed by the hub, 403 not for this
device, expired or replayed, 400 signed but invalid, 503 no hub key yet) only when the message
names a correlation id to answer to, and the answer echoes the digest of the message refused, so
the hub can tell a refusal of its own call from one provoked with a copy or a forgery.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edgefleet.protocol.errors import MethodRejected
from edgefleet.protocol.models import CORRELATION_ID_PATTERN, DirectMethodResponse, MethodCall
from edgefleet.protocol.signing import request_digest, verify_method

_CORRELATION_ID_RE = re.compile(CORRELATION_ID_PATTERN)
NO_HUB_KEY = 503


@dataclass(frozen=True)
class Run:
    """Run ``call`` (after recording its sequence) and answer with ``digest``."""

    call: MethodCall
    digest: str | None


@dataclass(frozen=True)
class Refuse:
    """Do not run; publish ``response`` if there is one (None: nothing names whom to answer)."""

    reason: str
    response: DirectMethodResponse | None


def judge_call(payload: bytes, hub_key: str | None, device_id: str, last_sequence: int, now: datetime) -> Run | Refuse:
    """The verdict on one message from this device's ``commands`` topic."""
    if hub_key is None:
        return _refuse(
            payload,
            NO_HUB_KEY,
            f"device {device_id} has no hub key yet to check direct-method calls with (configure hub_public_key, "
            "or let the agent fetch and pin it); not run",
        )
    try:
        call = verify_method(payload, hub_key, device_id=device_id, last_sequence=last_sequence, now=now)
    except MethodRejected as exc:
        return _refuse(payload, exc.status, str(exc))
    return Run(call, request_digest(payload))


def _refuse(payload: bytes, status: int, reason: str) -> Refuse:
    # the reason may quote what the sender wrote (a key id, say), lone surrogates included, which no
    # JSON answer can carry: escape them, so a refusal is always an answer and never a crash
    reason = reason.encode("utf-8", "backslashreplace").decode("utf-8")
    correlation_id = claimed_correlation_id(payload)
    if correlation_id is None:
        return Refuse(reason, None)
    response = DirectMethodResponse(
        correlation_id=correlation_id, status=status, payload={"error": reason}, request_digest=request_digest(payload)
    )
    return Refuse(reason, response)


def claimed_correlation_id(payload: bytes) -> str | None:
    """The correlation id a message claims (unverified: used only to address a refusal), if it names one.

    Looked for where a signed call carries it and where a bare, unsigned request did.
    """
    try:
        raw: Any = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if not isinstance(raw, dict):
        return None
    call = raw.get("call")
    request = call.get("request") if isinstance(call, dict) else None
    for holder in (request, raw):
        value = holder.get("correlationId") if isinstance(holder, dict) else None
        if isinstance(value, str) and _CORRELATION_ID_RE.fullmatch(value):  # re.match lets "$" pass a final \n
            return value
    return None
