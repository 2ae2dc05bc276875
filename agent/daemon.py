"""The agent daemon: wires the collaborators and runs observe -> plan -> execute -> report.

One thread owns all state: the reconcile loop. MQTT callbacks and module-exit watchers only put
messages in the inbox and wake the loop; it also runs when something it waits for is due (a probe,
a back-off or cool-off, a rollback window, the heartbeat, telemetry, a hub-key retry). Decisions
are made elsewhere, data in and data out (``plan``, ``rollout``, ``health_memory``, ``runner``,
``intake``, ``report``); what steps and direct methods do is in ``executors`` and ``methods``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from edgefleet.agent import __version__
from edgefleet.agent.bootstrap import bundle_ca_file, mqtt_credentials
from edgefleet.agent.cache import ArtifactCache, BackgroundFetcher
from edgefleet.agent.capabilities import Discovery, simulate_fpga
from edgefleet.agent.context import AgentContext
from edgefleet.agent.eviction import referenced
from edgefleet.agent.executors import EXECUTORS
from edgefleet.agent.health_memory import remember_health
from edgefleet.agent.hubtls import HubTrust, hub_ca_file
from edgefleet.agent.intake import ManifestIntake
from edgefleet.agent.link import MqttLink
from edgefleet.agent.methods import answer
from edgefleet.agent.observe import observe
from edgefleet.agent.observed import Instance
from edgefleet.agent.plan import Plan, PlanContext, RestartTuning, plan_steps
from edgefleet.agent.report import Reporter
from edgefleet.agent.rollout import check_rollout
from edgefleet.agent.rollout import target as rollout_target
from edgefleet.agent.runner import PlanRunner
from edgefleet.agent.runtime import ProcessRuntime, Runtime
from edgefleet.agent.runtime.composite import CompositeRuntime, docker_lazy
from edgefleet.agent.runtime.limits import ProcessLimits
from edgefleet.agent.settings import AgentSettings
from edgefleet.agent.state import AgentState, SavedState, StateStore
from edgefleet.agent.telemetry import ServingGaps, TelemetrySampler
from edgefleet.protocol.models import DeviceManifest, ReportedState
from edgefleet.protocol.topics import TopicKind

log = logging.getLogger(__name__)

MAX_PASSES = 8  # plan/execute passes per wake-up before reporting (bounded even if a step flaps)
MAX_IDLE_S = 2.0  # adopted processes are not our children: notice their exit by polling


class Agent:
    def __init__(self, settings: AgentSettings, runtime: Runtime | None = None) -> None:
        self.settings = s = settings
        self.device_id = settings.device_id
        self.data_dir = settings.resolved_data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if s.discovery.fpga_sim:
            simulate_fpga(s.discovery.fpga_sim, self.data_dir)
        self.saved = SavedState(StateStore(self.data_dir / "state.json"))
        m = s.mqtt
        credentials = mqtt_credentials(  # installs the bundle, whose CA also verifies an https:// hub
            s.bootstrap, self.data_dir, tls=m.tls, ca_file=m.ca_file, cert_file=m.cert_file, key_file=m.key_file,
            username=m.username, password=m.password,
        )  # fmt: skip
        hub_trust = HubTrust.load(hub_ca_file(s.hub_ca_file, bundle_ca_file(s.bootstrap, self.data_dir)))
        self.cache = ArtifactCache(
            self.data_dir / "cache", s.cache.download_timeout_s, s.cache.max_bytes, trust=hub_trust
        )
        self._keep: frozenset[str] = frozenset()  # digests eviction must spare; rebound by the loop
        self.fetcher = BackgroundFetcher(self.cache, lambda: self._keep, self.wake, s.retry.base_s, s.retry.max_s)
        limits = ProcessLimits(self.device_id, s.modules.resource_limits, s.modules.limits_cgroup_parent)
        modules_dir = self.data_dir / "modules"
        self.runtime: Runtime = runtime or CompositeRuntime(
            [ProcessRuntime(modules_dir, self.device_id, s.modules.command, limits)],
            # Docker is connected only when a module needs it or an engine socket exists (adoption)
            [docker_lazy(self.device_id, s.modules.docker_url, generation_of=lambda: self.state.generation)],
        )
        self.runtime.set_exit_listener(lambda _iid: self.wake())
        self.tuning = RestartTuning(**s.restart.model_dump())
        self.telemetry = TelemetrySampler(self.device_id, s.reporting.telemetry_interval_s)
        self.ctx = AgentContext(
            self.device_id, modules_dir, self.runtime, self.cache, self.fetcher, self.saved,
            target=lambda: self.target, wake=self.wake, settings=s.modules,
            gaps=ServingGaps(on_measured=self.telemetry.due_now),
        )  # fmt: skip
        self.runner = PlanRunner(lambda step: EXECUTORS.run(step, self.ctx), s.retry.base_s, s.retry.max_s)
        self.intake = ManifestIntake(
            self.device_id, self.data_dir, s.hub_public_key, s.hub_url, self.state, s.hub_key_fingerprint, hub_trust
        )
        self.link = MqttLink(
            self.device_id, m.host, m.port, self._on_message, agent_version=__version__,
            keepalive_s=m.keepalive_s, reconnect_min_s=m.reconnect_min_s, reconnect_max_s=m.reconnect_max_s,
            credentials=credentials,
        )  # fmt: skip
        self.reporter = Reporter(self.device_id, s.reporting.heartbeat_s, __version__, self.link.publish_reported)
        self.serving_gaps = self.ctx.gaps.measured  # module -> seconds without a ready instance, last update
        d = s.discovery
        self.discovery = Discovery(s.labels, d.command, d.timeout_s, self.runtime.available_kinds)
        self.instances: list[Instance] = []
        self.last_plan = Plan()
        self._inbox: queue.SimpleQueue[tuple[TopicKind, bytes]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._rollback_wake_at: float | None = None

    @property
    def state(self) -> AgentState:
        return self.saved.current

    @property
    def desired(self) -> DeviceManifest | None:
        return self.intake.desired

    # --- lifecycle -------------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def request_stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def run(self) -> None:
        """Run until ``request_stop``. Modules keep running afterwards unless modules.stop_on_exit."""
        log.info("agent %s starting (data dir %s)", self.device_id, self.data_dir)
        self.discovery.start(on_done=self.wake)
        self.intake.try_hub_key()
        self.link.start()
        try:
            while not self._stopping.is_set():
                self.step()
                self._wake.wait(self._idle_timeout())
                self._wake.clear()
        finally:
            self._shutdown()

    def step(self) -> Plan:
        """One wake-up: take in messages, reconcile, report. Public so tests can drive it."""
        self.intake.try_hub_key(time.time())
        self._drain_inbox()
        plan = self.reconcile()
        self.reporter.report(self.build_report(plan), time.time())
        sample = self.telemetry.sample(self.instances, self.serving_gaps)
        if sample is not None:
            self.link.publish_telemetry(sample.model_dump_json(by_alias=True).encode())
        return plan

    def _shutdown(self) -> None:
        if self.settings.modules.stop_on_exit:
            log.info("stopping all modules (modules.stop_on_exit)")
            self.runtime.stop_all(self.settings.modules.stop_grace_s)
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
            self.reporter.next_at,
            self.telemetry.next_at,
            self.intake.next_key_retry_at(),
        ]
        due = min((c for c in candidates if c is not None), default=now + MAX_IDLE_S)
        return min(max(due - now, 0.01), MAX_IDLE_S)

    # --- reconcile -------------------------------------------------------------------------------

    @property
    def target(self) -> DeviceManifest | None:
        return rollout_target(self.state, self.desired, self.intake.last_known_good(self.state))

    def reconcile(self) -> Plan:
        plan = self._converge()
        check = check_rollout(self.state, self.desired, plan, self.settings.rollback.window_s, time.time())
        self._rollback_wake_at = check.wake_at
        self.saved.keep(check.state)
        if check.rollback is not None:
            log.warning("%s", check.rollback.reason)
            plan = self._converge()  # toward last-known-good at once
        self.last_plan = plan
        remembered = remember_health(self.state, plan, time.time(), self.tuning)
        if remembered.last_known_good != self.state.last_known_good:
            log.info("generation %d is fully healthy: now last-known-good", remembered.last_known_good)
        self.saved.keep(remembered)
        return plan

    def _converge(self) -> Plan:
        plan = Plan()
        self._keep = referenced([self.desired, self.intake.last_known_good(self.state)])
        for _ in range(MAX_PASSES):
            now = time.time()
            observed = observe(self.ctx, now)
            self.instances = list(observed.instances)
            plan = plan_steps(self.target, observed, self._context(now))
            if not plan.steps or not self.runner.run(plan, self.state.generation, now).executed:
                break
        return plan

    def _context(self, now: float) -> PlanContext:
        return PlanContext(
            device=self.discovery.offer(),
            now=now,
            startup_probe_interval_s=self.settings.modules.startup_probe_interval_s,
            restart=self.tuning,
            runtimes=frozenset(self.runtime.available_kinds()),
        )

    # --- messages and reports --------------------------------------------------------------------

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
                self.intake.offer(payload)
            elif (
                kind == TopicKind.COMMANDS and (response := answer(payload, self.ctx, self.intake.hub_key)) is not None
            ):
                self.link.publish_response(response.model_dump_json(by_alias=True).encode())
        if (pending := self.intake.take()) is not None:
            self.accept_manifest(pending)

    def accept_manifest(self, payload: bytes) -> bool:
        """Verify and adopt a desired-state message; a rejected one never disturbs running modules."""
        state = self.intake.accept(payload, self.state)
        if state is not None:
            self.fetcher.forget_failures()  # a new generation deserves a fresh attempt at once
            self.saved.replace(state)
        return state is not None

    def build_report(self, plan: Plan) -> ReportedState:
        return self.reporter.build(
            plan, self.state, desired=self.desired, target=self.target, instances=self.instances,
            failures=self.runner.failures, capabilities=self.discovery.capabilities, rejected=self.intake.rejected,
        )  # fmt: skip


def run_agent(settings: AgentSettings, install_signals: Callable[[Agent], None] | None = None) -> None:
    agent = Agent(settings)
    if install_signals is not None:
        install_signals(agent)
    agent.run()


__all__ = ["Agent", "run_agent"]
