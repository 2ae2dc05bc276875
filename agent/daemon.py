"""The agent daemon: observe -> plan -> execute -> report, until told to stop.

One thread owns all state: the reconcile loop. MQTT callbacks and module-exit watchers only put
messages in the inbox and wake the loop. The loop runs when woken (new manifest, direct method,
module exit) or when the plan's own ``wake_at`` (next probe, end of a back-off), a step's
cool-off, the report heartbeat or telemetry is due.

Downloads run on the background fetcher's thread (the loop only submits them and sees them as
"in flight"), so probes and reports go on during a long download. The rollout's clock, the
rollback and the health records are pure state transitions (``rollout``, ``health_memory``): the
loop hands them the state and the plan and keeps what they return. The serving gap of each
replacement (old instance stopped -> new one ready) is measured here, logged and sent as telemetry.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import shutil
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from edgefleet.agent import __version__
from edgefleet.agent.admission import DeviceOffer
from edgefleet.agent.cache import ArtifactCache, BackgroundFetcher
from edgefleet.agent.capabilities import device_capabilities, discover_accelerators
from edgefleet.agent.errors import AgentError, HubKeyUnavailable, RuntimeFailure, UnknownModule
from edgefleet.agent.health import probe_http
from edgefleet.agent.health_memory import after_probe, remember_health, restarted, track_instances
from edgefleet.agent.hubkey import resolve_hub_key
from edgefleet.agent.link import MqttLink
from edgefleet.agent.observed import Health, Instance, Observed
from edgefleet.agent.plan import (
    CreateModule,
    FetchArtifact,
    Plan,
    PlanContext,
    ProbeHealth,
    RemoveModule,
    RestartTuning,
    StartModule,
    Step,
    StopModule,
    plan_steps,
)
from edgefleet.agent.report import failed_steps, module_statuses, report_fingerprint
from edgefleet.agent.rollout import check_rollout, rolled_back
from edgefleet.agent.rollout import target as rollout_target
from edgefleet.agent.runner import PlanRunner
from edgefleet.agent.runtime import ProcessRuntime, Runtime, instance_id_for
from edgefleet.agent.runtime.composite import CompositeRuntime, docker_lazy
from edgefleet.agent.runtime.limits import ProcessLimits
from edgefleet.agent.settings import AgentSettings
from edgefleet.agent.state import AgentState, RollbackRecord, StateStore
from edgefleet.agent.telemetry import TelemetrySampler
from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.errors import ManifestRejected, StaleGeneration
from edgefleet.protocol.models import (
    DeviceCapabilities,
    DeviceManifest,
    DirectMethodRequest,
    DirectMethodResponse,
    ModuleState,
    ModuleStatus,
    ReportedState,
    utcnow,
)
from edgefleet.protocol.signing import verify_manifest
from edgefleet.protocol.topics import TopicKind

log = logging.getLogger(__name__)

MAX_PASSES = 8  # plan/execute passes per wake-up before reporting (bounded even if a step flaps)
MAX_IDLE_S = 2.0  # adopted processes are not our children: notice their exit by polling


class Agent:
    def __init__(self, settings: AgentSettings, runtime: Runtime | None = None) -> None:
        self.settings = settings
        self.device_id = settings.device_id
        self.data_dir = settings.resolved_data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.modules_dir = self.data_dir / "modules"
        if settings.fpga_sim:
            # the driver plugin reads the environment, and discovery and modules inherit ours; one
            # state dir lets discovery see which binary a module loaded
            os.environ["EDGEFLEET_FPGA_SIM"] = settings.fpga_sim
            os.environ.setdefault("EDGEFLEET_FPGA_SIM_STATE_DIR", str(self.data_dir / "fpga-sim"))
        self.store = StateStore(self.data_dir / "state.json")
        self.state: AgentState = self.store.load()
        self.cache = ArtifactCache(
            self.data_dir / "cache", timeout_s=settings.http_timeout_s, max_bytes=settings.cache_max_bytes
        )
        self._keep: frozenset[str] = frozenset()  # digests eviction must spare; rebound by the loop
        self.fetcher = BackgroundFetcher(
            self.cache,
            keep=lambda: self._keep,
            on_done=self.wake,
            retry_base_s=settings.step_retry_base_s,
            retry_max_s=settings.step_retry_max_s,
        )
        self.runtime: Runtime = runtime or CompositeRuntime(
            [
                ProcessRuntime(
                    self.modules_dir,
                    self.device_id,
                    settings.module_command,
                    ProcessLimits(self.device_id, settings.resource_limits, settings.limits_cgroup_parent),
                )
            ],
            # Docker is connected only when a module needs it or an engine socket exists (adoption)
            [docker_lazy(self.device_id, settings.docker_url, generation_of=lambda: self.state.generation)],
        )
        self.runtime.set_exit_listener(lambda _iid: self.wake())
        self.tuning = RestartTuning(
            backoff_base_s=settings.restart_backoff_base_s,
            backoff_max_s=settings.restart_backoff_max_s,
            max_restarts=settings.max_restarts,
            reset_after_s=settings.restart_reset_after_s,
        )
        self.runner = PlanRunner(self._execute, settings.step_retry_base_s, settings.step_retry_max_s)
        self.link = MqttLink(
            self.device_id,
            settings.broker_host,
            settings.broker_port,
            self._on_message,
            agent_version=__version__,
            keepalive_s=settings.mqtt_keepalive_s,
            reconnect_min_s=settings.reconnect_min_s,
            reconnect_max_s=settings.reconnect_max_s,
        )
        self.desired: DeviceManifest | None = (
            DeviceManifest.model_validate(self.state.signed_manifest["manifest"])
            if self.state.signed_manifest
            else None
        )
        self.rejected: str | None = None
        self.hub_key: str | None = None
        self.capabilities = DeviceCapabilities(labels=dict(settings.labels))
        self.discovered = False  # accelerator discovery finished: admission may judge required accelerators
        self.health: dict[str, Health] = {}
        self.instances: list[Instance] = []
        self.last_plan = Plan()

        self._inbox: queue.SimpleQueue[tuple[TopicKind, bytes]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._pending_manifest: bytes | None = None
        self._key_retry_at = 0.0
        self._key_failures = 0
        self._seq = 0
        self._last_fingerprint: str | None = None
        self._last_report_at = 0.0
        self.telemetry = TelemetrySampler(self.device_id, settings.telemetry_interval_s)
        self._since: dict[str, tuple[ModuleState, datetime]] = {}
        self._rollback_wake_at: float | None = None
        self._lkg_parsed: tuple[dict[str, Any], DeviceManifest] | None = None
        self._gap_started: dict[str, float] = {}  # module -> when its old instance stopped serving
        self.serving_gaps: dict[str, float] = {}  # module -> seconds without a ready instance, last update

    # --- lifecycle -------------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def request_stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def run(self) -> None:
        """Run until ``request_stop``. Modules keep running afterwards unless stop_modules_on_exit."""
        log.info("agent %s starting (data dir %s)", self.device_id, self.data_dir)
        self.capabilities = device_capabilities(self.settings.labels, [], self.runtime.available_kinds())
        # discovery may take seconds (OpenCL platforms): do not hold up the link and the modules
        threading.Thread(target=self._discover, daemon=True, name="discovery").start()
        self._try_hub_key()
        self.link.start()
        try:
            while not self._stopping.is_set():
                self.step()
                self._wake.wait(self._idle_timeout())
                self._wake.clear()
        finally:
            self._shutdown()

    def _discover(self) -> None:
        accelerators = discover_accelerators(self.settings.discovery_command, self.settings.discovery_timeout_s)
        self.capabilities = device_capabilities(
            self.settings.labels, accelerators, self.runtime.available_kinds()
        )  # one atomic rebind
        self.discovered = True  # after the rebind: whoever sees True also sees the discovered list
        self.wake()

    def step(self) -> Plan:
        """One wake-up: take in messages, reconcile, report. Public so tests can drive it."""
        if self.hub_key is None and time.time() >= self._key_retry_at:
            self._try_hub_key()
        self._drain_inbox()
        plan = self.reconcile()
        self._report(plan)
        self._telemetry()
        return plan

    def _shutdown(self) -> None:
        if self.settings.stop_modules_on_exit:
            log.info("stopping all modules (stop_modules_on_exit)")
            self.runtime.stop_all(self.settings.stop_grace_s)
        else:
            log.info("leaving modules running; the next agent start adopts them")
        self.fetcher.close()  # a cut download resumes with Range next time
        self.runtime.close()
        self.link.stop()

    def _idle_timeout(self) -> float:
        now = time.time()
        candidates = [
            self.last_plan.wake_at,
            self._rollback_wake_at,
            self.runner.next_retry_at(),
            self._last_report_at + self.settings.report_heartbeat_s,
            self.telemetry.next_at,
            self._key_retry_at if self.hub_key is None else None,
        ]
        due = min((c for c in candidates if c is not None), default=now + MAX_IDLE_S)
        return min(max(due - now, 0.01), MAX_IDLE_S)

    # --- reconcile -------------------------------------------------------------------------------

    @property
    def target(self) -> DeviceManifest | None:
        """What the loop converges to: the desired manifest, or last-known-good after a rollback."""
        return rollout_target(self.state, self.desired, self._last_known_good())

    def _last_known_good(self) -> DeviceManifest | None:
        raw = self.state.last_known_good_manifest
        if raw is None:
            return None
        if self._lkg_parsed is None or self._lkg_parsed[0] is not raw:  # parse once per stored manifest
            self._lkg_parsed = (raw, DeviceManifest.model_validate(raw["manifest"]))
        return self._lkg_parsed[1]

    def reconcile(self) -> Plan:
        plan = self._converge()
        check = check_rollout(self.state, self.desired, plan, self.settings.rollback_window_s, time.time())
        self._rollback_wake_at = check.wake_at
        if check.state != self.state:
            self._save(check.state)
        if check.rollback is not None:
            log.warning("%s", check.rollback.reason)
            plan = self._converge()  # toward last-known-good at once
        self.last_plan = plan
        remembered = remember_health(self.state, plan, time.time(), self.tuning)
        if remembered.last_known_good != self.state.last_known_good:
            log.info("generation %d is fully healthy: now last-known-good", remembered.last_known_good)
        if remembered != self.state:
            self._save(remembered)
        return plan

    def _converge(self) -> Plan:
        plan = Plan()
        self._keep = self._referenced()
        for _ in range(MAX_PASSES):
            now = time.time()
            plan = plan_steps(self.target, self._observe(now), self._context(now))
            if not plan.steps:
                break
            result = self.runner.run(plan, self.state.generation, now)
            if not result.executed:
                break
        return plan

    def _referenced(self) -> frozenset[str]:
        """Blobs eviction must keep: the desired and last-known-good manifests' (running instances'
        blobs are kept by the cache itself: they are hard-linked into module directories)."""
        manifests = [self.desired, self._last_known_good()]
        return frozenset(a.digest for m in manifests if m is not None for s in m.modules for a in s.artifacts)

    def _context(self, now: float) -> PlanContext:
        discovered = self.discovered  # read before the capabilities it vouches for
        device = DeviceOffer.from_capabilities(self.capabilities, discovered=discovered)
        return PlanContext(
            device=device,
            now=now,
            startup_probe_interval_s=self.settings.startup_probe_interval_s,
            restart=self.tuning,
            runtimes=frozenset(self.runtime.available_kinds()),
        )

    def _observe(self, now: float) -> Observed:
        self.instances = self.runtime.list_instances()
        self.health = track_instances(self.health, self.instances, now)
        fetching = self.fetcher.fetching()  # before the cache listing: a finished fetch is then seen cached
        return Observed(
            instances=tuple(self.instances),
            cached=self.cache.digests(),
            health=dict(self.health),
            restarts=self.state.restarts,
            fetching=fetching,
            fetch_failures=self.fetcher.failures(),
        )

    def _save(self, state: AgentState) -> None:
        self.state = state
        self.store.save(state)

    # --- step executors --------------------------------------------------------------------------

    def _execute(self, step: Step) -> None:
        if isinstance(step, FetchArtifact):
            self._fetch(step)
        elif isinstance(step, CreateModule):
            self._create(step)
        elif isinstance(step, StartModule):
            self._start(step)
        elif isinstance(step, StopModule):
            self._stop(step)
        elif isinstance(step, RemoveModule):
            self._remove(step)
        elif isinstance(step, ProbeHealth):
            self._probe(step)
        else:
            raise TypeError(f"no executor for step type {type(step).__name__}")

    def _fetch(self, step: FetchArtifact) -> None:
        self.fetcher.submit(step.digest, step.url, step.size)  # returns at once; wakes the loop when done

    def _create(self, step: CreateModule) -> None:
        port = self._port_for(step.module, step.spec.port)
        workdir = self.modules_dir / step.module / step.spec_hash
        if workdir.exists():  # left by a crash between materializing and recording: start clean
            shutil.rmtree(workdir)
        self.cache.materialize(step.spec.artifacts, workdir)
        for sub in ("model", "src"):  # the module is always given both, even when one is empty
            (workdir / sub).mkdir(exist_ok=True)
        self.runtime.create(step.spec, step.spec_hash, port, workdir)
        restarts = {k: v for k, v in self.state.restarts.items() if k != step.module}  # new spec, fresh count
        self._save(
            self.state.model_copy(update={"ports": {**self.state.ports, step.module: port}, "restarts": restarts})
        )

    def _start(self, step: StartModule) -> None:
        iid = instance_id_for(step.module, step.spec_hash)
        self.runtime.start(iid)
        now = time.time()
        self.health[iid] = Health(started_at=now)
        if step.restart:
            record = restarted(self.state.restarts.get(step.module), now)
            log.warning("restarting module %s (restart %d): %s", step.module, record.count, step.reason)
            self._save(self.state.model_copy(update={"restarts": {**self.state.restarts, step.module: record}}))

    def _stop(self, step: StopModule) -> None:
        log.info("stopping module %s: %s", step.module, step.reason)
        spec = self.target.module(step.module) if self.target else None
        if spec is not None and step.instance_id != instance_id_for(step.module, spec.spec_hash()):
            self._gap_started.setdefault(step.module, time.time())  # an update: the old one stops serving now
        self.runtime.stop(step.instance_id, self.settings.stop_grace_s)
        self.health.pop(step.instance_id, None)

    def _remove(self, step: RemoveModule) -> None:
        self.runtime.remove(step.instance_id)
        if self.target is None or self.target.module(step.module) is None:
            ports = {k: v for k, v in self.state.ports.items() if k != step.module}
            self._save(self.state.model_copy(update={"ports": ports}))

    def _probe(self, step: ProbeHealth) -> None:
        ok, error = probe_http(step.port, step.path, step.timeout_s)
        now = time.time()
        old = self.health.get(step.instance_id)
        new = after_probe(old, ok, error, now)
        if new.ready and not (old and old.ready):
            log.info("module %s is ready (%.2fs after start)", step.module, now - new.started_at)
            gap_from = self._gap_started.pop(step.module, None)
            if gap_from is not None:
                self.serving_gaps[step.module] = now - gap_from
                log.info("module %s updated: serving gap %.3fs", step.module, now - gap_from)
                self.telemetry.due_now()  # let a watcher see it without waiting an interval
        self.health[step.instance_id] = new

    def _port_for(self, module: str, requested: int | None) -> int:
        if requested:
            return requested
        taken = {p for name, p in self.state.ports.items() if name != module}
        previous = self.state.ports.get(module)
        if previous and previous not in taken and _port_free(previous):
            return previous
        low, high = self.settings.port_range
        candidates = list(range(low, high + 1))
        start = random.randrange(len(candidates))  # spread devices sharing a host over the range
        for port in candidates[start:] + candidates[:start]:
            if port not in taken and _port_free(port):
                return port
        raise RuntimeFailure(
            f"no free port for module {module} in port_range {self.settings.port_range} on device {self.device_id}"
        )

    # --- messages --------------------------------------------------------------------------------

    def _on_message(self, kind: TopicKind, payload: bytes) -> None:
        """Called from the MQTT thread: hand over to the loop."""
        self._inbox.put((kind, payload))
        self.wake()

    def _drain_inbox(self) -> None:
        while True:
            try:
                kind, payload = self._inbox.get_nowait()
            except queue.Empty:
                break
            if kind == TopicKind.DESIRED:
                self._pending_manifest = payload  # only the newest desired state matters
            elif kind == TopicKind.COMMANDS:
                self._handle_command(payload)
        if self._pending_manifest is not None and self.hub_key is not None:
            payload, self._pending_manifest = self._pending_manifest, None
            self.accept_manifest(payload)

    def accept_manifest(self, payload: bytes) -> bool:
        """Verify and adopt a desired-state message; a rejected one never disturbs running modules."""
        if not payload:
            log.info("desired state was cleared on the broker; keeping generation %d", self.state.generation)
            return False
        assert self.hub_key is not None
        if self.state.signed_manifest is not None and self._same_as_accepted(payload):
            # the retained copy of what we already run, re-delivered on (re)subscribe: verified when
            # accepted, so no need to verify it again (and to load cryptography for it)
            return False
        try:
            manifest = verify_manifest(
                payload, self.hub_key, device_id=self.device_id, last_generation=self.state.generation
            )
        except StaleGeneration as exc:
            if exc.generation == self.state.generation and self._same_as_accepted(payload):
                return False  # the retained copy of what we already run, re-delivered on (re)subscribe
            self._reject(str(exc))
            return False
        except ManifestRejected as exc:
            self._reject(str(exc))
            return False
        signed = json.loads(payload)
        log.info("accepted manifest generation %d (%d module(s))", manifest.generation, len(manifest.modules))
        self.desired = manifest
        self.rejected = None
        self.fetcher.forget_failures()  # a new generation deserves a fresh attempt at once
        self._save(
            self.state.model_copy(
                update={
                    "generation": manifest.generation,
                    "signed_manifest": signed,
                    "applying_since": None,
                    "rollback": None,
                }
            )
        )
        return True

    def _same_as_accepted(self, payload: bytes) -> bool:
        try:
            return canonical_json(json.loads(payload)) == canonical_json(self.state.signed_manifest)
        except ValueError:
            return False

    def _reject(self, why: str) -> None:
        log.warning("rejected desired state: %s", why)
        self.rejected = why

    def _try_hub_key(self) -> None:
        try:
            self.hub_key = resolve_hub_key(
                self.settings.hub_public_key, self.data_dir, self.settings.hub_url, timeout_s=5.0
            )
        except HubKeyUnavailable as exc:
            self._key_failures += 1
            delay = min(2.0**self._key_failures, 60.0)
            self._key_retry_at = time.time() + delay
            log.warning("%s; trying again in %.0fs (manifests wait until then)", exc, delay)

    # --- direct methods --------------------------------------------------------------------------

    def _handle_command(self, payload: bytes) -> None:
        try:
            request = DirectMethodRequest.model_validate_json(payload)
        except ValueError as exc:
            correlation = _correlation_id(payload)
            log.warning("malformed direct method request: %s", exc)
            if correlation:
                self._respond(DirectMethodResponse(correlation_id=correlation, status=400, payload={"error": str(exc)}))
            return
        try:
            status, body = self._run_method(request)
        except UnknownModule as exc:
            status, body = 404, {"error": str(exc)}
        except AgentError as exc:
            status, body = 500, {"error": str(exc)}
        self._respond(DirectMethodResponse(correlation_id=request.correlation_id, status=status, payload=body))

    def _run_method(self, request: DirectMethodRequest) -> tuple[int, dict[str, Any]]:
        if request.method == "ping":
            return 200, {"deviceId": self.device_id, "generation": self.state.generation, "agentVersion": __version__}
        module = request.params.get("module")
        if not isinstance(module, str) or not module:
            return 400, {"error": f"direct method {request.method!r} needs params.module (a module name)"}
        if request.method == "logs":
            tail = request.params.get("tail", 100)
            if not isinstance(tail, int) or tail < 0:
                return 400, {"error": f"params.tail must be a non-negative integer, got {tail!r}"}
            return 200, {"module": module, "lines": self.runtime.logs(module, tail)}
        # restart-module: the desired instance, now, regardless of back-off (an operator asked)
        spec = self.target.module(module) if self.target else None
        if spec is None:
            raise UnknownModule(f"module {module!r} is not in the desired state of device {self.device_id}")
        iid = instance_id_for(module, spec.spec_hash())
        if iid not in {i.instance_id for i in self.runtime.list_instances()}:
            raise UnknownModule(f"module {module!r} has no instance yet on device {self.device_id}")
        log.info("restarting module %s on request", module)
        self.runtime.stop(iid, self.settings.stop_grace_s)
        self.runtime.start(iid)
        self.health[iid] = Health(started_at=time.time())
        self.wake()
        return 200, {"module": module, "restarted": True}

    def _respond(self, response: DirectMethodResponse) -> None:
        self.link.publish_response(response.model_dump_json(by_alias=True).encode())

    # --- reports ---------------------------------------------------------------------------------

    def build_report(self, plan: Plan) -> ReportedState:
        now = utcnow()
        step_failures = failed_steps(self.runner.failures)
        for name, verdict in plan.verdicts.items():
            if self._since.get(name, (None,))[0] != verdict.state:
                self._since[name] = (verdict.state, now)
        modules = module_statuses(self.target, plan, self.instances, self.state.restarts, step_failures, self._since)
        rollback = self.state.rollback if rolled_back(self.state) else None
        if rollback is not None and self.desired is not None:
            modules = self._rolled_back_statuses(rollback, modules)
        return ReportedState(
            device_id=self.device_id,
            generation=self.state.generation,
            converged=plan.converged and not step_failures,
            last_known_good=self.state.last_known_good,
            rolled_back_from=rollback.from_generation if rollback else None,
            modules=modules,
            capabilities=self.capabilities,
            rejected=self.rejected,
            agent_version=__version__,
            seq=self._seq,
            reported_at=now,
        )

    def _rolled_back_statuses(self, rollback: RollbackRecord, serving: list[ModuleStatus]) -> list[ModuleStatus]:
        """The failed generation's modules, each Failed with why and rolled_back; where last-known-good
        has the module, its endpoint (that version serves there now)."""
        assert self.desired is not None
        by_name = {m.name: m for m in serving}
        since = datetime.fromtimestamp(rollback.at, timezone.utc)
        out = []
        for spec in self.desired.modules:
            why = rollback.module_reasons.get(spec.name)
            message = (
                f"generation {rollback.from_generation} not Healthy in time ({why}); "
                f"rolled back to generation {rollback.to_generation}"
                if why
                else f"rolled back with generation {rollback.from_generation} to generation {rollback.to_generation}"
            )
            old = by_name.get(spec.name)
            out.append(
                ModuleStatus(
                    name=spec.name,
                    service=spec.service,
                    state=ModuleState.FAILED,
                    message=message,
                    spec_hash=old.spec_hash if old else None,
                    endpoint=old.endpoint if old else None,
                    backend=old.backend if old else None,
                    restarts=old.restarts if old else 0,
                    instance=old.instance if old else None,
                    since=since,
                    rolled_back=True,
                )
            )
        return out

    def _report(self, plan: Plan) -> None:
        report = self.build_report(plan)
        fingerprint = report_fingerprint(report)
        now = time.time()
        if fingerprint == self._last_fingerprint and now < self._last_report_at + self.settings.report_heartbeat_s:
            return
        self._seq += 1
        report = report.model_copy(update={"seq": self._seq})
        self._last_fingerprint = fingerprint
        self._last_report_at = now
        self.link.publish_reported(report.model_dump_json(by_alias=True).encode())
        summary = ", ".join(f"{m.name}={m.state.value}" for m in report.modules) or "no modules"
        log.debug("reported generation %d: %s", report.generation, summary)

    def _telemetry(self) -> None:
        sample = self.telemetry.sample(self.instances, self.serving_gaps)
        if sample is not None:
            self.link.publish_telemetry(sample.model_dump_json(by_alias=True).encode())


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _correlation_id(payload: bytes) -> str | None:
    try:
        raw = json.loads(payload)
        value = raw.get("correlationId") if isinstance(raw, dict) else None
        return value if isinstance(value, str) else None
    except ValueError:
        return None


def run_agent(settings: AgentSettings, install_signals: Callable[[Agent], None] | None = None) -> None:
    agent = Agent(settings)
    if install_signals is not None:
        install_signals(agent)
    agent.run()


__all__ = ["Agent", "run_agent"]
