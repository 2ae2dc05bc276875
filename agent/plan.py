"""Pure reconcile planning: ``plan_steps(desired, observed, context) -> Plan``.

No I/O and no clock here: everything the decision depends on (runtime instances, cache contents,
health and restart records, the time) comes in as data, and steps go out as frozen dataclasses, so
tests compare plans by equality.

Order of a plan:
1. FetchArtifact for every artifact of the desired generation that the cache lacks, unless its
   download is already running (in the background: probes and reports go on meanwhile), cooling
   off after a failure, or refused for this generation (a permanent error). While any is missing, no running instance is stopped: the old version keeps
   serving until every artifact of the new generation is verified in the cache.
2. StopModule / RemoveModule: instances of removed modules, of replaced specs, and restarts.
3. CreateModule / StartModule by (startup_order, name).
4. ProbeHealth for running instances whose probe is due (fast while starting).

Start-beside (an update that loses no request): when the running old instance's port can be
shared (``observed.shared_ports``: its listening sockets carry SO_REUSEPORT) and the new spec keeps
that port, the new instance is created on the same port and started while the old one serves; the
old one is stopped (it drains) only in a later plan, once the new one is Ready. While both are on
the port a probe may reach either, so neither is probed: the new one's status file says Ready. A
new instance that never gets Ready leaves the old one serving (restarts and rollback go on as for
any instance). A changed port, or a port the old instance holds alone, falls back to stop-then-start.

Each desired module also gets a verdict (state + message) that the daemon reports, and the plan
says when it wants to be re-evaluated (``wake_at``): next probe, end of a back-off, a startup deadline.

The other pure decisions live beside it, each with its own inputs: ``rollout`` (is the new
generation overdue for Healthy, so go back to last-known-good?), ``health_memory`` (probe and
restart records, last-known-good), ``admission`` and ``eviction``. The planner's inputs are the
plain data of ``observed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from edgefleet.agent.admission import DeviceOffer, admit
from edgefleet.agent.observed import Health, Instance, Observed
from edgefleet.agent.state import RestartRecord
from edgefleet.protocol.models import DeviceManifest, ModuleSpec, ModuleState, RestartPolicy
from edgefleet.protocol.module import EXIT_UNSCHEDULABLE, ModuleRunState, probe_address

# --- steps ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchArtifact:
    digest: str
    url: str
    size: int


@dataclass(frozen=True)
class StopModule:
    module: str
    instance_id: str
    reason: str = ""
    replaced: bool = False  # a Ready instance of the module serves beside it already (no serving gap)


@dataclass(frozen=True)
class RemoveModule:
    module: str
    instance_id: str


@dataclass(frozen=True)
class CreateModule:
    module: str
    spec_hash: str
    spec: ModuleSpec = field(compare=False, hash=False, repr=False)
    port: int | None = None  # start-beside: the old instance's port (None: spec.port or a free one)


@dataclass(frozen=True)
class StartModule:
    module: str
    spec_hash: str
    restart: bool = False  # counts against the restart back-off
    reason: str = ""


@dataclass(frozen=True)
class ProbeHealth:
    module: str
    instance_id: str
    port: int
    path: str
    timeout_s: float
    host: str = "127.0.0.1"  # where the module listens (loopback for a wildcard listen address)
    tls: bool = False  # the module serves HTTPS


Step = FetchArtifact | StopModule | RemoveModule | CreateModule | StartModule | ProbeHealth


def step_module(step: Step) -> str | None:
    return None if isinstance(step, FetchArtifact) else step.module


@dataclass(frozen=True)
class RestartTuning:
    backoff_base_s: float = 10.0
    backoff_max_s: float = 300.0
    max_restarts: int = 20
    reset_after_s: float = 600.0


@dataclass(frozen=True)
class PlanContext:
    now: float
    startup_probe_interval_s: float = 0.1
    restart: RestartTuning = field(default_factory=RestartTuning)
    runtimes: frozenset[str] = frozenset({"process"})  # runtime kinds this agent can drive
    device: DeviceOffer = field(default_factory=DeviceOffer)  # cores, memory, accelerators (admission)


# --- result --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    state: ModuleState
    message: str = ""
    instance_id: str | None = None


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...] = ()
    verdicts: Mapping[str, Verdict] = field(default_factory=dict)
    wake_at: float | None = None
    downloading: bool = False  # some artifact of the desired generation is not verified in the cache yet

    @property
    def changes(self) -> tuple[Step, ...]:
        """Steps that change the device (everything but probes)."""
        return tuple(s for s in self.steps if not isinstance(s, ProbeHealth))

    @property
    def converged(self) -> bool:
        """Nothing left to do, no artifact still missing, and no module on its way (Transitioning)."""
        return (
            not self.changes
            and not self.downloading
            and all(v.state != ModuleState.TRANSITIONING for v in self.verdicts.values())
        )


# --- restart policy (pure helpers, also used by the daemon) --------------------------------------


def backoff_delay(count: int, tuning: RestartTuning) -> float:
    """Delay before restart number ``count + 1``: the first is immediate, then base x 2^n up to the cap."""
    if count <= 0:
        return 0.0
    return float(min(tuning.backoff_base_s * 2 ** (count - 1), tuning.backoff_max_s))


def effective_restarts(record: RestartRecord, now: float, tuning: RestartTuning) -> RestartRecord:
    """Forget the restart count once the module has been healthy for ``reset_after_s``."""
    if record.healthy_since is not None and now - record.healthy_since >= tuning.reset_after_s and record.count:
        return RestartRecord(count=0, last_restart_at=record.last_restart_at, healthy_since=record.healthy_since)
    return record


def restart_wanted(policy: RestartPolicy, *, exited: bool, exit_code: int | None, unhealthy: bool) -> bool:
    if policy == RestartPolicy.NEVER:
        return False
    if unhealthy:
        return policy in (RestartPolicy.ON_UNHEALTHY, RestartPolicy.ALWAYS)
    if exited:
        # an exit whose code the agent did not see (adopted process) counts as a failure
        return policy == RestartPolicy.ALWAYS or exit_code != 0
    return False


# --- the planner ---------------------------------------------------------------------------------


@dataclass
class _Builder:
    fetches: list[FetchArtifact] = field(default_factory=list)
    stops: list[Step] = field(default_factory=list)
    starts: list[Step] = field(default_factory=list)
    probes: list[Step] = field(default_factory=list)
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    wakes: list[float] = field(default_factory=list)

    def stop_and_remove(self, inst: Instance, reason: str, replaced: bool = False) -> None:
        if inst.running:
            self.stops.append(StopModule(inst.module, inst.instance_id, reason, replaced))
        self.stops.append(RemoveModule(inst.module, inst.instance_id))


def plan_steps(desired: DeviceManifest | None, observed: Observed, context: PlanContext) -> Plan:
    """Diff desired against observed and return the steps that bring the device closer to desired.

    ``desired`` None means no manifest was ever accepted: nothing is touched.
    """
    if desired is None:
        return Plan()
    b = _Builder()
    specs = sorted(desired.modules, key=lambda m: (m.startup_order, m.name))
    refused = admit(specs, context.runtimes, context.device)
    for name, refusal in refused.items():
        b.verdicts[name] = Verdict(refusal.state, refusal.reason)
    specs = [s for s in specs if s.name not in refused]  # nothing is fetched or stopped for them

    missing: set[str] = set()
    for spec in specs:
        for art in spec.artifacts:
            if art.digest in observed.cached or art.digest in missing:
                continue
            missing.add(art.digest)
            failure = observed.fetch_failures.get(art.digest)
            if art.digest in observed.fetching:
                continue  # the background download wakes the loop when it ends
            if failure is not None:
                if failure.retry_at is None:
                    continue  # refused (a permanent error): tried again only for a new generation
                if context.now < failure.retry_at:
                    b.wakes.append(failure.retry_at)
                    continue
            b.fetches.append(FetchArtifact(art.digest, art.url, art.size))
    may_disrupt = not missing  # stop nothing until every artifact of the generation is verified here

    by_module: dict[str, list[Instance]] = {}
    for inst in observed.instances:
        by_module.setdefault(inst.module, []).append(inst)

    # modules no longer desired (their startup order is unknown now): by name
    wanted = {s.name for s in desired.modules}
    for name in sorted(set(by_module) - wanted):
        if may_disrupt:
            for inst in by_module[name]:
                b.stop_and_remove(inst, "module removed from the desired state")

    for spec in specs:
        _plan_module(spec, by_module.get(spec.name, []), observed, context, b, may_disrupt)

    stops_ordered = _reverse_startup(b.stops, specs)
    return Plan(
        steps=(*b.fetches, *stops_ordered, *b.starts, *b.probes),
        verdicts=b.verdicts,
        wake_at=min(b.wakes) if b.wakes else None,
        downloading=bool(missing),
    )


def _reverse_startup(stops: list[Step], specs: list[ModuleSpec]) -> list[Step]:
    """Stop dependants first: removed modules, then desired ones by descending startup order."""
    order = {s.name: (s.startup_order, s.name) for s in specs}
    removed = [s for s in stops if step_module(s) not in order]
    kept = [s for s in stops if step_module(s) in order]
    kept.sort(key=lambda s: order[step_module(s) or ""], reverse=True)  # stable: stop before remove
    return removed + kept


def _plan_module(
    spec: ModuleSpec,
    instances: list[Instance],
    observed: Observed,
    ctx: PlanContext,
    b: _Builder,
    may_disrupt: bool,
) -> None:
    want = spec.spec_hash()
    matching = [i for i in instances if i.spec_hash == want]
    matching.sort(key=lambda i: (not i.running, i.instance_id))  # keep a running one
    current = matching[0] if matching else None
    others = [i for i in instances if current is None or i.instance_id != current.instance_id]

    if current is None:
        missing = [a for a in spec.artifacts if a.digest not in observed.cached]
        failures = [(a, observed.fetch_failures[a.digest]) for a in missing if a.digest in observed.fetch_failures]
        refusals = [f"{a.path}: {f.error}" for a, f in failures if f.refused]
        retrying = [f"{a.path}: {f.error}" for a, f in failures if not f.refused and a.digest not in observed.fetching]
        serving_old = any(i.running for i in others)
        suffix = "; the previous version keeps serving" if serving_old else ""
        if refusals:
            b.verdicts[spec.name] = Verdict(ModuleState.FAILED, "artifact refused: " + "; ".join(refusals) + suffix)
        elif missing:
            why = f" (retrying after: {'; '.join(retrying)})" if retrying else ""
            b.verdicts[spec.name] = Verdict(
                ModuleState.TRANSITIONING, f"downloading {len(missing)} artifact(s){why}{suffix}"
            )
        elif serving_old and not may_disrupt:
            b.verdicts[spec.name] = Verdict(
                ModuleState.TRANSITIONING, "waiting for the generation's other downloads before replacing"
            )
        else:
            beside = beside_port(spec, others, observed.shared_ports)
            for inst in others:
                if beside is None or not inst.running:
                    b.stop_and_remove(inst, f"replaced by spec {want}")
            b.starts.append(CreateModule(spec.name, want, spec, port=beside))
            b.starts.append(StartModule(spec.name, want, reason="new spec"))
            message = "starting beside the running instance" if beside is not None else "starting"
            b.verdicts[spec.name] = Verdict(ModuleState.TRANSITIONING, message)
        return

    # With an old instance still on the port, a probe of it may reach either one: the new one's
    # own status file says when it is Ready (the contract: written before it answers ready)
    sharing = any(i.running and i.port == current.port for i in others)
    probed = (h := observed.health.get(current.instance_id)) is not None and h.ready
    says_ready = current.status is not None and current.status.state == ModuleRunState.READY
    ready = current.running and (probed or says_ready)
    for inst in others:  # old specs (and stale duplicates) next to a current instance
        if not may_disrupt:
            continue
        if ready:
            b.stop_and_remove(inst, f"replaced by spec {want}, which is ready", replaced=True)
        elif inst.running and inst.port == current.port and inst.port in observed.shared_ports:
            continue  # start-beside: the old one serves until the new one is Ready
        else:
            b.stop_and_remove(inst, "duplicate or outdated instance")
    _plan_lifecycle(spec, want, current, observed, ctx, b, probe_port=not sharing)


def beside_port(spec: ModuleSpec, others: list[Instance], shared_ports: frozenset[int]) -> int | None:
    """The port a new instance of ``spec`` can bind beside the running old one, or None (stop first).

    Only with exactly one running old instance whose port is shared (SO_REUSEPORT) and that the
    new spec keeps (no port, or the same): a moved port has nobody to take over the old one's clients.
    """
    running = [i for i in others if i.running]
    if len(running) != 1 or running[0].port is None:
        return None
    port = running[0].port
    if port not in shared_ports or (spec.port is not None and spec.port != port):
        return None
    return port


def _plan_lifecycle(
    spec: ModuleSpec,
    want: str,
    inst: Instance,
    observed: Observed,
    ctx: PlanContext,
    b: _Builder,
    probe_port: bool = True,
) -> None:
    """Health, exits and restarts of the instance that matches the desired spec (not probed while
    ``probe_port`` is False: another instance shares its port; deadlines still apply)."""
    now = ctx.now
    tuning = ctx.restart
    record = effective_restarts(observed.restarts.get(spec.name, RestartRecord()), now, tuning)
    status = inst.status

    def restart(failure: str, stop_first: bool) -> None:
        if record.count >= tuning.max_restarts:
            b.verdicts[spec.name] = Verdict(
                ModuleState.FAILED, f"{failure}; gave up after {record.count} restarts", inst.instance_id
            )
            return
        allowed_at = (record.last_restart_at or now) + backoff_delay(record.count, tuning)
        if now < allowed_at:
            b.verdicts[spec.name] = Verdict(
                ModuleState.FAILED,
                f"{failure}; restart {record.count + 1} in {allowed_at - now:.1f}s",
                inst.instance_id,
            )
            b.wakes.append(allowed_at)
            return
        if stop_first:
            b.stops.append(StopModule(spec.name, inst.instance_id, failure))
        b.starts.append(StartModule(spec.name, want, restart=True, reason=failure))
        b.verdicts[spec.name] = Verdict(ModuleState.TRANSITIONING, f"restarting: {failure}", inst.instance_id)

    if not inst.running:
        module_says = status.state if status else ""
        if inst.exit_code == EXIT_UNSCHEDULABLE or module_says == ModuleRunState.UNSCHEDULABLE:
            msg = (status.message if status else "") or "the module cannot run on this device"
            b.verdicts[spec.name] = Verdict(ModuleState.UNSCHEDULABLE, msg, inst.instance_id)
            return
        code = "unknown code" if inst.exit_code is None else f"code {inst.exit_code}"
        failure = f"exited with {code}" + (f": {status.message}" if status and status.message else "")
        if restart_wanted(spec.restart_policy, exited=True, exit_code=inst.exit_code, unhealthy=False):
            restart(failure, stop_first=False)
        else:
            b.verdicts[spec.name] = Verdict(
                ModuleState.FAILED, f"{failure} (restart policy {spec.restart_policy.value})", inst.instance_id
            )
        return

    health = observed.health.get(inst.instance_id) or Health(started_at=now)
    probe = ProbeHealth(
        spec.name,
        inst.instance_id,
        inst.port or 0,
        spec.health.path,
        spec.health.timeout_s,
        host=probe_address(spec.listen_address),
        tls=spec.tls is not None,
    )
    if not health.ready:
        deadline = health.started_at + spec.health.startup_timeout_s
        if now >= deadline:
            failure = f"not ready after {spec.health.startup_timeout_s:g}s" + (
                f" ({health.last_error})" if health.last_error else ""
            )
            if spec.restart_policy != RestartPolicy.NEVER:
                restart(failure, stop_first=True)
            else:
                b.verdicts[spec.name] = Verdict(ModuleState.FAILED, failure, inst.instance_id)
            return
        b.verdicts[spec.name] = Verdict(
            ModuleState.TRANSITIONING, "waiting for the module to be ready", inst.instance_id
        )
        if probe_port:
            _schedule_probe(b, probe, health, ctx.startup_probe_interval_s, now)
        else:
            b.wakes.append(now + ctx.startup_probe_interval_s)  # look at its status file again soon
        b.wakes.append(deadline)
        return

    if health.consecutive_failures >= spec.health.failure_threshold:
        failure = f"health probe failed {health.consecutive_failures} times ({health.last_error})"
        if restart_wanted(spec.restart_policy, exited=False, exit_code=None, unhealthy=True):
            restart(failure, stop_first=True)
            if b.verdicts[spec.name].state != ModuleState.TRANSITIONING:
                # waiting out the back-off: still unhealthy, keep probing (it may recover)
                b.verdicts[spec.name] = Verdict(ModuleState.UNHEALTHY, b.verdicts[spec.name].message, inst.instance_id)
                if probe_port:
                    _schedule_probe(b, probe, health, spec.health.interval_s, now)
            return
        b.verdicts[spec.name] = Verdict(ModuleState.UNHEALTHY, failure, inst.instance_id)
    else:
        b.verdicts[spec.name] = Verdict(ModuleState.HEALTHY, "", inst.instance_id)
    if probe_port:
        _schedule_probe(b, probe, health, spec.health.interval_s, now)


def _schedule_probe(b: _Builder, probe: ProbeHealth, health: Health, interval: float, now: float) -> None:
    due = now if health.last_probe_at is None else health.last_probe_at + interval
    if due <= now:
        b.probes.append(probe)
        b.wakes.append(now + interval)
    else:
        b.wakes.append(due)
