"""Direct methods from the hub (ping, logs, restart-module), answered with a correlation id.

A call runs only as ``method_gate`` decides: signed by the pinned hub key, for this device, in its
validity window, with a sequence greater than the last call run. Its sequence is saved before it
runs, so neither a crash nor a restart lets the same call run twice. A refused call is never run,
and answered with the reason when it names a correlation id. A call that runs is answered 200, 400
for bad parameters, 404 for a module the device does not have, 500 when the agent cannot do it;
every answer echoes the request digest, so the hub counts it only for the very call it made.
Nothing raises out of ``answer``: it runs in the reconcile loop.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from edgefleet.agent import __version__
from edgefleet.agent.context import AgentContext
from edgefleet.agent.errors import AgentError, StateError, UnknownModule
from edgefleet.agent.method_gate import Refuse, judge_call
from edgefleet.agent.observed import Health
from edgefleet.agent.runtime import instance_id_for
from edgefleet.protocol.models import DirectMethodRequest, DirectMethodResponse, utcnow

log = logging.getLogger(__name__)

MAX_LOG_TAIL = 10_000  # lines: one response stays a reasonable MQTT message


def answer(
    payload: bytes, ctx: AgentContext, hub_key: str | None, now: datetime | None = None
) -> DirectMethodResponse | None:
    """The response to one command message (None: refused, and nothing names whom to answer)."""
    verdict = judge_call(payload, hub_key, ctx.device_id, ctx.saved.current.method_sequence, now or utcnow())
    if isinstance(verdict, Refuse):
        log.warning("refused a direct-method call: %s", verdict.reason)
        return verdict.response
    request = verdict.call.request
    try:
        ctx.saved.update(method_sequence=verdict.call.sequence)  # first: a crash mid-call cannot reopen it
    except StateError as exc:
        status, body = 500, {"error": f"not run: cannot record its sequence number ({exc})"}
    else:
        log.info("direct method %s (sequence %d)", request.method, verdict.call.sequence)
        status, body = _run(request, ctx)
    return DirectMethodResponse(
        correlation_id=request.correlation_id, status=status, payload=body, request_digest=verdict.digest
    )


def _run(request: DirectMethodRequest, ctx: AgentContext) -> tuple[int, dict[str, Any]]:
    try:
        status, body = run_method(request, ctx)
        # what cannot be answered (a log line no JSON holds, say) is a failure to report, not to raise
        DirectMethodResponse(correlation_id=request.correlation_id, status=status, payload=body)
        return status, body
    except UnknownModule as exc:
        return 404, {"error": str(exc)}
    except AgentError as exc:
        return 500, {"error": str(exc)}
    except Exception as exc:  # a bug in one method must not stop the agent's loop
        log.exception("direct method %s failed", request.method)
        return 500, {"error": f"{request.method} failed on the device: {type(exc).__name__}: {exc}"}


def run_method(request: DirectMethodRequest, ctx: AgentContext) -> tuple[int, dict[str, Any]]:
    if request.method == "ping":
        generation = ctx.saved.current.generation
        return 200, {"deviceId": ctx.device_id, "generation": generation, "agentVersion": __version__}
    module = request.params.get("module")
    if not isinstance(module, str) or not module:
        return 400, {"error": f"direct method {request.method!r} needs params.module (a module name)"}
    if request.method == "logs":
        tail = request.params.get("tail", 100)
        if not isinstance(tail, int) or isinstance(tail, bool) or not 0 <= tail <= MAX_LOG_TAIL:
            return 400, {"error": f"params.tail must be an integer from 0 to {MAX_LOG_TAIL}, got {tail!r}"}
        return 200, {"module": module, "lines": ctx.runtime.logs(module, tail)}
    return restart_module(module, ctx)


def restart_module(module: str, ctx: AgentContext) -> tuple[int, dict[str, Any]]:
    """The desired instance, now, regardless of back-off (an operator asked)."""
    target = ctx.target()
    spec = target.module(module) if target else None
    if spec is None:
        raise UnknownModule(f"module {module!r} is not in the desired state of device {ctx.device_id}")
    iid = instance_id_for(module, spec.spec_hash())
    if iid not in {i.instance_id for i in ctx.runtime.list_instances()}:
        raise UnknownModule(f"module {module!r} has no instance yet on device {ctx.device_id}")
    log.info("restarting module %s on request", module)
    ctx.runtime.stop(iid, ctx.settings.stop_grace_s)
    ctx.runtime.start(iid)
    ctx.health[iid] = Health(started_at=time.time())
    ctx.wake()
    return 200, {"module": module, "restarted": True}
