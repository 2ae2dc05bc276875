"""Agent figures: idle memory, memory over a restart soak, publish-to-Healthy time, serving gap.

    python -m bench.agent_figures                     # ~2 min: 60 s soak
    python -m bench.agent_figures --soak-seconds 600  # the full 10-minute soak figure
    python -m bench.agent_figures --only idle,soak    # a subset: idle, idle-tls, soak, deploy, gap
    python -m bench.agent_figures --only idle-tls     # idle memory over mqtts:// next to plain MQTT

Everything is real: a private Mosquitto, the agent as its own process (``python -m agent``), an
HTTP artifact server (for idle-tls: Mosquitto under the configuration ``edgefleet hub broker-config``
writes, and the device registered at the hub, started with its bootstrap bundle), and for deploy/gap the real scoring module (``python -m edgefleet.modules.scoring``)
serving ``modules/samples/digits/digits_int8.onnx``. Prints a table and writes
bench/results/agent_figures.json. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil

from bench.accel_common import write_results
from bench.fleet import register_device
from edgefleet.hub.server.ca import CertificateAuthority, TlsFiles, hub_client_identity
from edgefleet.hub.server.settings import HubSettings
from edgefleet.protocol import ArtifactRef, ModuleSpec, ReportedState
from tests.support.agent_harness import (
    FAKE_MODULE,
    TestHub,
    agent_env,
    kill_module_processes,
    module_pids,
    module_state,
    start_agent_process,
    stop_process,
)
from tests.support.artifact_server import ArtifactServer
from tests.support.processes import Mosquitto, wait_for

# AWS IoT Greengrass V2 device requirements: "a minimum of 96 MB RAM" for the Java nucleus
# (AWS IoT Greengrass Developer Guide, "Supported platforms and requirements",
# https://docs.aws.amazon.com/greengrass/v2/developerguide/greengrass-nucleus-component.html#greengrass-nucleus-requirements
# and https://docs.aws.amazon.com/greengrass/v2/developerguide/setting-up.html#greengrass-v2-requirements).
GREENGRASS_NUCLEUS_MIN_MB = 96.0
IDLE_GOAL_MB = 40.0  # issue 4
IDLE_TLS_GOAL_MB = 45.0  # issue 8: the same figures over mqtts:// with a client certificate
PUBLISH_TO_HEALTHY_GOAL_S = 1.5  # issue 4
SERVING_GAP_GOAL_S = 1.0  # issue 4

REPO = Path(__file__).resolve().parents[1]
DIGITS_INT8 = REPO / "modules" / "samples" / "digits" / "digits_int8.onnx"
SOAK_MODULE = [sys.executable, str(REPO / "bench" / "agent_soak_module.py")]
SCORING_MODULE = [sys.executable, "-m", "edgefleet.modules.scoring"]
QUICK_DISCOVERY = [sys.executable, "-c", "print('[]')"]
MB = 1024 * 1024
LOG_TIME = "%Y-%m-%d %H:%M:%S,%f"

log = logging.getLogger("bench.agent")


class StampedHub(TestHub):
    """The test hub, noting when each report arrived (wall clock, like the agent's log)."""

    __test__ = False

    def __init__(self, broker_port: int, device_id: str, tls: TlsFiles | None = None) -> None:
        self.arrivals: list[tuple[float, ReportedState]] = []
        super().__init__(broker_port, device_id, tls)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        super()._on_message(client, userdata, msg)
        if msg.topic.endswith("/reported"):
            self.arrivals.append((time.time(), ReportedState.model_validate_json(msg.payload)))

    def first_arrival(self, predicate: Callable[[ReportedState], bool], after: float, timeout: float) -> float:
        def found() -> float | None:
            return next((t for t, r in list(self.arrivals) if t >= after and predicate(r)), None)

        at = wait_for(found, timeout, interval=0.01, what="a matching report")
        assert at is not None
        return at


@dataclass
class Device:
    """One agent process and its surroundings (shared broker, hub, artifact server)."""

    device_id: str
    workdir: Path
    broker: Mosquitto
    hub: StampedHub
    settings: dict[str, Any] = field(default_factory=dict)
    proc: Any = None
    bootstrap: Path | None = None  # mqtts://: the bundle from registration (identity, CA)

    @property
    def log_path(self) -> Path:
        return self.workdir / "agent.log"

    def start(self) -> None:
        args = ["--device-id", self.device_id, "--broker", self.broker.url, "--data-dir", str(self.workdir / "data")]
        args += ["--hub", "http://127.0.0.1:9", "--hub-key", self.hub.key.public_key_b64]
        if self.bootstrap is not None:
            args += ["--bootstrap", str(self.bootstrap)]
        env = agent_env(discovery_command=QUICK_DISCOVERY, **self.settings)
        online = self.hub.presence.count("online")
        self.proc = start_agent_process(args, env, self.log_path)
        wait_for(lambda: self.hub.presence.count("online") > online, 60, what="agent online")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGKILL)
            self.proc = None

    def rss_mb(self) -> float:
        return float(psutil.Process(self.proc.pid).memory_info().rss) / MB

    def settled_rss_mb(self, seconds: float = 5.0) -> float:
        """Median of RSS samples over ``seconds`` (the agent is idle: nothing should move)."""
        samples = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            samples.append(self.rss_mb())
            time.sleep(0.25)
        return statistics.median(samples)

    def log_events(self) -> list[tuple[float, str]]:
        events = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                at = datetime.strptime(line[:23], LOG_TIME).timestamp()
            except ValueError:
                continue
            events.append((at, line[24:]))
        return events


@contextmanager
def environment(name: str, secure: bool = False) -> Iterator[tuple[Path, Mosquitto, ArtifactServer]]:
    """A private broker (``secure``: the generated TLS configuration for the hub in ``root/hub``)
    and an artifact server."""
    with tempfile.TemporaryDirectory(prefix=f"edgefleet-bench-{name}-") as tmp:
        root = Path(tmp)
        broker = Mosquitto(root / "mosquitto", hub_data_dir=root / "hub" if secure else None)
        broker.start()
        try:
            with ArtifactServer(root / "artifacts") as artifacts:
                yield root, broker, artifacts
        finally:
            broker.stop()


def module_spec(name: str, artifacts: list[ArtifactRef], **fields: Any) -> ModuleSpec:
    body: dict[str, Any] = {"name": name, "service": f"{name}-svc", "artifacts": [a.to_wire() for a in artifacts]}
    return ModuleSpec.model_validate(body | fields)


def healthy(generation: int, name: str) -> Callable[[ReportedState], bool]:
    return lambda r: r.generation == generation and module_state(r, name) == "Healthy"


# --- idle memory -----------------------------------------------------------------------------------


def bench_idle(tls: bool = False) -> dict[str, Any]:
    """Idle RSS of a connected agent; ``tls``: over mqtts:// with the client certificate the device
    got at registration (started with its bootstrap bundle), the test hub with the hub's identity."""
    with environment("idle-tls" if tls else "idle", secure=tls) as (root, broker, artifacts):
        dev = "bench-idle"
        bootstrap = None
        hub: StampedHub
        if tls:
            settings = HubSettings(data_dir=root / "hub", port=0, broker_url=broker.url)
            bootstrap = register_device(settings.data_dir, broker.url, dev, root / "identities").bundle_file
            own = hub_client_identity(CertificateAuthority.load_or_create(settings.ca_dir), settings.identity_dir)
            hub = StampedHub(broker.port, dev, own)
        else:
            hub = StampedHub(broker.port, dev)
        device = Device(dev, root, broker, hub, {"module_command": FAKE_MODULE}, bootstrap=bootstrap)
        try:
            device.start()
            no_modules = device.settled_rss_mb()
            model = artifacts.add("m.bin", b"weights" * 1000)
            hub.publish(1, [module_spec("m1", [model], health={"intervalS": 5.0})])
            hub.wait_report(healthy(1, "m1"), what="m1 Healthy")
            one_module = device.settled_rss_mb()
            device.stop()  # SIGKILL; the module lives on and the next agent adopts it
            device.start()
            hub.wait_report(lambda r: healthy(1, "m1")(r) and r.converged, what="m1 adopted")
            adopted = device.settled_rss_mb()
        finally:
            device.stop()
            hub.close()
            kill_module_processes(dev)
    worst = max(no_modules, one_module)
    return {
        "transport": "mqtts (TLS 1.2+, client certificate)" if tls else "mqtt (plain)",
        "no_modules_mb": no_modules,
        "one_module_mb": one_module,
        "one_module_after_restart_mb": adopted,
        "goal_mb": IDLE_TLS_GOAL_MB if tls else IDLE_GOAL_MB,
        "greengrass_nucleus_min_mb": GREENGRASS_NUCLEUS_MIN_MB,
        "ratio_to_greengrass": worst / GREENGRASS_NUCLEUS_MIN_MB,
    }


# --- soak --------------------------------------------------------------------------------------------


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of RSS over time."""
    ts = [t for t, _ in samples]
    ys = [y for _, y in samples]
    t_mean, y_mean = statistics.fmean(ts), statistics.fmean(ys)
    var = sum((t - t_mean) ** 2 for t in ts)
    cov = sum((t - t_mean) * (y - y_mean) for t, y in zip(ts, ys, strict=True))
    return cov / var * 60 if var else 0.0


def bench_soak(seconds: float, exit_every_s: float = 10.0, warmup_s: float = 10.0) -> dict[str, Any]:
    with environment("soak") as (root, broker, artifacts):
        dev = "bench-soak"
        hub = StampedHub(broker.port, dev)
        settings = {
            "module_command": SOAK_MODULE,
            "restart_backoff_base_s": 0.5,
            "restart_backoff_max_s": 1.0,
            "max_restarts": 100000,
            "telemetry_interval_s": 5,
        }
        device = Device(dev, root, broker, hub, settings)
        try:
            device.start()
            model = artifacts.add("m.bin", b"weights" * 1000)
            spec = module_spec(
                "flappy",
                [model],
                env={"SOAK_EXIT_AFTER_S": str(exit_every_s)},
                restartPolicy="always",
                health={"intervalS": 1.0},
            )
            hub.publish(1, [spec])
            hub.wait_report(healthy(1, "flappy"), what="flappy Healthy")
            time.sleep(warmup_s)
            samples: list[tuple[float, float]] = []
            start = time.monotonic()
            while (now := time.monotonic()) - start < seconds:
                samples.append((now - start, device.rss_mb()))
                time.sleep(1.0)
            latest = hub.latest()
            restarts = next((m.restarts for m in latest.modules if m.name == "flappy"), None) if latest else None
        finally:
            device.stop()
            hub.close()
            kill_module_processes(dev)
    return {
        "soak_s": seconds,
        "module_exits_every_s": exit_every_s,
        "restarts_reported": restarts,
        "start_mb": statistics.median(y for _, y in samples[:5]),
        "end_mb": statistics.median(y for _, y in samples[-5:]),
        "max_mb": max(y for _, y in samples),
        "slope_mb_per_min": slope_mb_per_min(samples),
    }


# --- publish to Healthy ------------------------------------------------------------------------------


def _after(events: list[tuple[float, str]], t0: float, needle: str) -> float | None:
    return next((at for at, text in events if at >= t0 - 0.01 and needle in text), None)


def bench_deploy(runs: int) -> dict[str, Any]:
    """Fresh agent (connected, cold cache) per run; timed from publish to the Healthy report's arrival."""
    rows: list[dict[str, float | None]] = []
    with environment("deploy") as (root, broker, artifacts):
        model = artifacts.add("digits_int8.onnx", DIGITS_INT8.read_bytes(), path="model/digits_int8.onnx")
        for run in range(runs):
            dev = f"bench-deploy-{run}"
            hub = StampedHub(broker.port, dev)
            device = Device(dev, root / dev, broker, hub, {"module_command": SCORING_MODULE})
            (root / dev).mkdir()
            try:
                device.start()
                spec = module_spec("digits", [model], models=[{"name": "digits", "version": 1}])
                t0 = time.time()
                hub.publish(1, [spec])
                healthy_at = hub.first_arrival(healthy(1, "digits"), t0, timeout=120)
                events = device.log_events()
                row: dict[str, float | None] = {
                    "total_s": healthy_at - t0,
                    "manifest_accepted_s": _after(events, t0, "accepted manifest generation 1"),
                    "artifacts_cached_s": _after(events, t0, "cached artifact"),
                    "process_started_s": _after(events, t0, "started module digits"),
                    "ready_s": _after(events, t0, "module digits is ready"),
                }
                rows.append({k: (v - t0 if k != "total_s" and v is not None else v) for k, v in row.items()})
            finally:
                device.stop()
                hub.close()
                kill_module_processes(dev)
    keys = ["manifest_accepted_s", "artifacts_cached_s", "process_started_s", "ready_s", "total_s"]
    medians = {}
    for key in keys:
        values = [v for r in rows if (v := r[key]) is not None]
        if values:
            medians[key] = statistics.median(values)
    return {"runs": rows, "median": medians, "goal_s": PUBLISH_TO_HEALTHY_GOAL_S}


# --- serving gap -------------------------------------------------------------------------------------


class Hammer:
    """GETs the current URL back to back; notes (time, url) of every success."""

    def __init__(self, url: str) -> None:
        self.urls = [url]
        self.successes: list[tuple[float, str]] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for url in list(self.urls):
                try:
                    with urllib.request.urlopen(url, timeout=0.5) as resp:
                        resp.read()
                    self.successes.append((time.time(), url))
                except Exception:
                    self.failures += 1
            time.sleep(0.002)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def bench_gap(updates: int) -> dict[str, Any]:
    """Spec changes of a running digits module while a client hammers /v2/health/ready.

    The gap of one update runs from the last success of the old instance (its process id is known)
    to the first success after it, of the new instance, on the old or the new endpoint."""
    rows = []
    with environment("gap") as (root, broker, artifacts):
        dev = "bench-gap"
        hub = StampedHub(broker.port, dev)
        device = Device(dev, root, broker, hub, {"module_command": SCORING_MODULE})
        model = artifacts.add("digits_int8.onnx", DIGITS_INT8.read_bytes(), path="model/digits_int8.onnx")

        def spec(generation: int) -> ModuleSpec:
            return module_spec(
                "digits",
                [model],
                models=[{"name": "digits", "version": 1}],
                env={"BENCH_GENERATION": str(generation)},
                health={"intervalS": 1.0},
            )

        try:
            device.start()
            hub.publish(1, [spec(1)])
            report = hub.wait_report(healthy(1, "digits"), timeout=120, what="digits Healthy")
            for generation in range(2, updates + 2):
                endpoint = next(m.endpoint for m in report.modules if m.name == "digits")
                old_pids = module_pids(dev, "digits")
                hammer = Hammer(f"{endpoint}/v2/health/ready")
                wait_for(lambda: len(hammer.successes) >= 20, 10, what="client reaching the module")  # noqa: B023
                t0 = time.time()
                hub.publish(generation, [spec(generation)])
                report = hub.wait_report(
                    lambda r: healthy(generation, "digits")(r) and r.converged,  # noqa: B023
                    timeout=120,
                    what="update",
                )
                new_endpoint = next(m.endpoint for m in report.modules if m.name == "digits")
                if new_endpoint != endpoint:
                    hammer.urls.append(f"{new_endpoint}/v2/health/ready")
                new_pids = module_pids(dev, "digits")
                seen_at = time.time()
                wait_for(lambda: any(s >= seen_at for s, _ in hammer.successes), 10, what="new instance")  # noqa: B023
                hammer.stop()
                # old instance stopped at the earliest when the new generation's plan ran; its last
                # success is the last one before the longest silence after publish
                after = [s for s, _ in hammer.successes if s >= t0]
                gaps = [b - a for a, b in itertools.pairwise(after)]
                gap = max(gaps, default=0.0)
                rows.append(
                    {
                        "generation": generation,
                        "gap_s": gap,
                        "port_changed": new_endpoint != endpoint,
                        "failed_requests": hammer.failures,
                        "replaced": old_pids != new_pids,
                    }
                )
        finally:
            device.stop()
            hub.close()
            kill_module_processes(dev)
    gaps = [r["gap_s"] for r in rows]
    return {
        "updates": rows,
        "median_gap_s": statistics.median(gaps),
        "max_gap_s": max(gaps),
        "goal_s": SERVING_GAP_GOAL_S,
    }


# --- main --------------------------------------------------------------------------------------------


def _fmt(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:.2f} {unit}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.agent_figures", description=__doc__.splitlines()[0])
    p.add_argument("--soak-seconds", type=float, default=60.0, help="soak duration (600 for the full figure)")
    p.add_argument("--runs", type=int, default=5, help="publish-to-Healthy runs (median reported)")
    p.add_argument("--updates", type=int, default=5, help="updates measured for the serving gap")
    p.add_argument("--only", default="idle,idle-tls,soak,deploy,gap", help="comma-separated subset")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    only = set(args.only.split(","))
    if {"deploy", "gap"} & only and not DIGITS_INT8.exists():
        print(f"missing {DIGITS_INT8}: run modules/samples/digits/train.py first (deploy and gap skipped)")
        only -= {"deploy", "gap"}

    results: dict[str, Any] = {}
    rows: list[tuple[str, str, str]] = []  # figure, value, goal / comparison
    if "idle" in only:
        idle = results["idle"] = bench_idle()
        rows += [
            ("idle RSS, no modules", _fmt(idle["no_modules_mb"], "MB"), f"goal <= {IDLE_GOAL_MB:g} MB"),
            ("idle RSS, one module", _fmt(idle["one_module_mb"], "MB"), f"goal <= {IDLE_GOAL_MB:g} MB"),
            ("idle RSS, one module, agent restarted", _fmt(idle["one_module_after_restart_mb"], "MB"), "adopted"),
            (
                "  vs Greengrass nucleus minimum",
                f"{idle['ratio_to_greengrass']:.2f}x",
                f"of {GREENGRASS_NUCLEUS_MIN_MB:g} MB (worst of the two above)",
            ),
        ]
    if "idle-tls" in only:
        plain = results.get("idle") or bench_idle()
        secure = bench_idle(tls=True)
        keys = ["no_modules_mb", "one_module_mb", "one_module_after_restart_mb"]
        ratio = {k.removesuffix("_mb"): secure[k] / plain[k] for k in keys}
        results["idle_tls"] = {"tls": secure, "plain": plain, "ratio_tls_to_plain": ratio}
        goal = f"goal <= {IDLE_TLS_GOAL_MB:g} MB"
        for key, label in [
            ("no_modules_mb", "no modules"),
            ("one_module_mb", "one module"),
            ("one_module_after_restart_mb", "one module, agent restarted"),
        ]:
            rows.append(
                (
                    f"idle RSS over mqtts://, {label}",
                    _fmt(secure[key], "MB"),
                    f"{goal}; plain {plain[key]:.2f} MB, TLS/plain {ratio[key.removesuffix('_mb')]:.3f}x",
                )
            )
    if "soak" in only:
        soak = results["soak"] = bench_soak(args.soak_seconds)
        rows += [
            (
                f"soak {soak['soak_s']:g}s, module restart every {soak['module_exits_every_s']:g}s",
                f"{soak['start_mb']:.2f} -> {soak['end_mb']:.2f} MB",
                f"{soak['restarts_reported']} restarts",
            ),
            ("  RSS slope", f"{soak['slope_mb_per_min']:+.3f} MB/min", "goal: flat"),
        ]
    if "deploy" in only:
        deploy = results["deploy"] = bench_deploy(args.runs)
        med = deploy["median"]
        rows.append(
            (
                f"publish -> Healthy, digits (median of {args.runs})",
                _fmt(med.get("total_s"), "s"),
                f"goal < {PUBLISH_TO_HEALTHY_GOAL_S:g} s",
            )
        )
        for key, label in [
            ("manifest_accepted_s", "manifest accepted"),
            ("artifacts_cached_s", "artifacts fetched"),
            ("process_started_s", "process started"),
            ("ready_s", "ready (probe)"),
        ]:
            rows.append((f"  {label} at", _fmt(med.get(key), "s"), "after publish"))
    if "gap" in only:
        gap = results["gap"] = bench_gap(args.updates)
        rows.append(
            (
                f"serving gap during an update (median of {args.updates})",
                _fmt(gap["median_gap_s"], "s"),
                f"goal < {SERVING_GAP_GOAL_S:g} s; max {gap['max_gap_s']:.2f} s",
            )
        )

    width = max(len(r[0]) for r in rows) if rows else 0
    print(f"\nedgefleet agent figures ({time.strftime('%Y-%m-%d %H:%M')}, {psutil.cpu_count()} CPUs)")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>18}  {note}")
    path = write_results("agent_figures", results)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
