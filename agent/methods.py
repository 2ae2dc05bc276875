"""Direct methods from the hub (ping, logs, restart-module), answered with a correlation id.

Every request gets an answer, also a malformed one when its correlation id can be read: 400 for a
bad request, 404 for a module the device does not have, 500 when the agent cannot do it.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from edgefleet.agent import __version__
from edgefleet.agent.context import AgentContext
from edgefleet.agent.errors import AgentError, UnknownModule
from edgefleet.agent.observed import Health
from edgefleet.agent.runtime import instance_id_for
from edgefleet.protocol.models import DirectMethodRequest, DirectMethodResponse

log = logging.getLogger(__name__)


def answer(payload: bytes, ctx: AgentContext) -> DirectMethodResponse | None:
    """The response to one command message (None: malformed without a correlation id to answer)."""
    try:
        request = DirectMethodRequest.model_validate_json(payload)
    except ValueError as exc:
        log.warning("malformed direct method request: %s", exc)
        correlation = _correlation_id(payload)
        if correlation is None:
            return None
        return DirectMethodResponse(correlation_id=correlation, status=400, payload={"error": str(exc)})
    try:
        status, body = run_method(request, ctx)
    except UnknownModule as exc:
        status, body = 404, {"error": str(exc)}
    except AgentError as exc:
        status, body = 500, {"error": str(exc)}
    return DirectMethodResponse(correlation_id=request.correlation_id, status=status, payload=body)


def run_method(request: DirectMethodRequest, ctx: AgentContext) -> tuple[int, dict[str, Any]]:
    if request.method == "ping":
        generation = ctx.saved.current.generation
        return 200, {"deviceId": ctx.device_id, "generation": generation, "agentVersion": __version__}
    module = request.params.get("module")
    if not isinstance(module, str) or not module:
        return 400, {"error": f"direct method {request.method!r} needs params.module (a module name)"}
    if request.method == "logs":
        tail = request.params.get("tail", 100)
        if not isinstance(tail, int) or tail < 0:
            return 400, {"error": f"params.tail must be a non-negative integer, got {tail!r}"}
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


def _correlation_id(payload: bytes) -> str | None:
    try:
        raw = json.loads(payload)
        value = raw.get("correlationId") if isinstance(raw, dict) else None
        return value if isinstance(value, str) else None
    except ValueError:
        return None
