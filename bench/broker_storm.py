"""A fleet reconnecting at once after a broker restart: over TLS with client certificates, and over
plain MQTT as the peer in the same run (issue 8).

    python -m bench.broker_storm                 # 1,000 devices, 2 restarts per transport (about a minute)
    python -m bench.broker_storm --devices 200 --rounds 1

Everything is real but the devices: N identities registered at the hub (bench/fleet.py: the hub's
registration code, certificates from its CA), Mosquitto under the configuration ``edgefleet hub
broker-config`` writes (TLS, ``require_certificate``, identity as username, ACL, CRL) next to an
open plain-MQTT Mosquitto, and for each a real hub (``edgefleet hub serve``, its own process, its
own identity ``edgefleet-hub`` over TLS) ingesting what the devices say. The devices are
lightweight: paho clients that do on every connect what the agent's link does (client id = device
id, clean session, last will "offline"; subscribe to its desired and commands topics, publish
presence "online" and its latest report, retained, QoS 1), driven by a few processes with their own
poll loops (paho's external-loop API), not a thread per client.

A round: stop the broker (SIGTERM; the clients see the connection drop), start it again on the same
port, then let every client reconnect at once. Timed from that go: all CONNACKs, all SUBACKs, all
PUBACKs (presence and report), the hub having stored every device's new report (read from its
database); CPU seconds (user + system, psutil) of the broker, the hub and the driver processes.
Prints a table and writes bench/results/broker_storm.json; bench/README.md says what each figure means.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import resource
import select
import shutil
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import types
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

from bench.accel_common import write_results
from bench.fleet import ClientFiles, register_devices
from edgefleet.hub.broker import find_mosquitto
from edgefleet.hub.server.broker_config import MAX_QUEUED_MESSAGES
from edgefleet.protocol.models import Presence, PresenceState, ReportedState, utcnow
from edgefleet.protocol.topics import TopicKind, topic
from tests.support.processes import Mosquitto, free_port, wait_for, wait_port

REPO = Path(__file__).resolve().parents[1]
KEEPALIVE_S = 30  # the agent's default (mqtt.keepalive_s)
STORM_TIMEOUT_S = 60.0
HUB_TIMEOUT_S = 30.0
STALL_S = 3.0
AGENT_VERSION = "bench-storm"

log = logging.getLogger("bench.storm")


# --- the broker, as deployed -------------------------------------------------------------------------


@dataclass
class StormBroker(Mosquitto):
    """Mosquitto as it is deployed: the generated configuration without the tests' addition
    (``autosave_interval 1``), or, plain, an open listener with the same persistence, queue and
    logging lines; ``extra`` lines (``--broker-extra``) go into both."""

    extra: tuple[str, ...] = ()

    def _secure_config(self) -> Path:
        conf = self.workdir / "mosquitto.conf"
        if not conf.exists():
            from edgefleet.hub.server.broker_config import BrokerOptions, write_for_hub

            assert self.hub_data_dir is not None
            write_for_hub(self.hub_data_dir, None, self.workdir, BrokerOptions(port=self.port, extra=self.extra))
        return conf

    def start(self) -> None:
        if self.secure:
            super().start()
            return
        binary = find_mosquitto()
        if binary is None:
            raise RuntimeError("mosquitto is not installed: `make system-deps` or apt-get install mosquitto")
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.workdir}/",
            "log_dest stderr",
            *(f"log_type {t}" for t in ("error", "warning", "notice", "information")),
            "connection_messages true",
            f"max_queued_messages {MAX_QUEUED_MESSAGES}",  # as the generated configuration
            *self.extra,
        ]
        conf.write_text("\n".join(lines) + "\n")
        with open(self.log_file, "ab") as out:
            self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
        wait_port(self.port)


# --- the simulated devices (in the driver processes) -------------------------------------------------


@dataclass
class SimDevice:
    """One device's MQTT side, as the agent's link behaves on every (re)connect."""

    device_id: str
    client: mqtt.Client
    round: int = 0
    started: float | None = None  # time.time() of the connect call
    connect_call_s: float | None = None  # TCP (+ TLS handshake) + CONNECT sent: paho's blocking part
    connack: float | None = None
    suback: float | None = None
    presence_ack: float | None = None
    report_ack: float | None = None
    failures: int = 0  # connect attempts that raised or were refused (retried)
    error: str | None = None
    mids: dict[int, str] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return None not in (self.suback, self.presence_ack, self.report_ack)

    def reset(self, round_: int) -> None:
        self.round = round_
        self.started = self.connect_call_s = self.connack = self.suback = None
        self.presence_ack = self.report_ack = None
        self.failures = 0
        self.error = None
        self.mids = {}

    def timings(self) -> tuple[Any, ...]:
        return (
            self.started,
            self.connect_call_s,
            self.connack,
            self.suback,
            self.presence_ack,
            self.report_ack,
            self.failures,
            self.error,
        )


def _presence(device_id: str, state: PresenceState) -> bytes:
    msg = Presence(device_id=device_id, state=state, agent_version=AGENT_VERSION, at=utcnow())
    return msg.model_dump_json(by_alias=True).encode()


def _on_connect(client: mqtt.Client, sim: SimDevice, _flags: Any, reason: Any, _props: Any) -> None:
    if reason.is_failure:
        sim.failures += 1
        sim.error = f"CONNACK {reason}"
        return
    sim.connack = time.time()
    _, mid = client.subscribe(
        [(topic(sim.device_id, TopicKind.DESIRED), 1), (topic(sim.device_id, TopicKind.COMMANDS), 1)]
    )
    if mid is not None:
        sim.mids[mid] = "suback"
    presence = _presence(sim.device_id, PresenceState.ONLINE)
    sim.mids[client.publish(topic(sim.device_id, TopicKind.PRESENCE), presence, qos=1, retain=True).mid] = "presence"
    report = ReportedState(device_id=sim.device_id, agent_version=AGENT_VERSION, seq=sim.round, converged=True)
    payload = report.model_dump_json(by_alias=True).encode()
    sim.mids[client.publish(topic(sim.device_id, TopicKind.REPORTED), payload, qos=1, retain=True).mid] = "report"


def _on_subscribe(_c: mqtt.Client, sim: SimDevice, mid: int, _codes: Any, _props: Any) -> None:
    if sim.mids.get(mid) == "suback":
        sim.suback = time.time()


def _on_publish(_c: mqtt.Client, sim: SimDevice, mid: int, _code: Any, _props: Any) -> None:
    what = sim.mids.get(mid)
    if what == "presence":
        sim.presence_ack = time.time()
    elif what == "report":
        sim.report_ack = time.time()


def _new_sim(device: ClientFiles, host: str, port: int, tls: bool) -> SimDevice:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device.device_id, clean_session=True)
    sim = SimDevice(device.device_id, client)
    client.user_data_set(sim)
    client.will_set(
        topic(device.device_id, TopicKind.PRESENCE),
        _presence(device.device_id, PresenceState.OFFLINE),
        qos=1,
        retain=True,
    )
    if tls:
        client.tls_set(ca_certs=str(device.ca_file), certfile=str(device.cert_file), keyfile=str(device.key_file))
    client.on_connect = _on_connect
    client.on_subscribe = _on_subscribe
    client.on_publish = _on_publish
    client.connect_async(host, port, keepalive=KEEPALIVE_S)  # remembers where; reconnect() connects
    return sim


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def driver_main(conn: multiprocessing.connection.Connection, devices: list[ClientFiles], port: int, tls: bool) -> None:
    """A driver process: its devices' clients in one poll loop, commanded over ``conn``.

    ("storm", round, timeout): connect every disconnected client, one blocking connect call at a
    time with the others' traffic served in between; answer with each client's timings when all have
    their SUBACK and PUBACKs (or at the timeout). ("down", timeout): answer once every client has seen
    its connection drop. ("stop", ...): exit."""
    raise_nofile()
    sims = [_new_sim(d, "127.0.0.1", port, tls) for d in devices]
    pending: collections.deque[SimDevice] = collections.deque()
    retry_at: dict[str, float] = {}
    storm: tuple[int, float] | None = None
    down_deadline: float | None = None
    last_misc = time.monotonic()
    cpu0 = os.times()
    while True:
        now = time.monotonic()
        if pending:  # one connect call per turn: the handshake blocks this process
            sim = pending.popleft()
            if retry_at.get(sim.device_id, 0.0) > now:
                pending.append(sim)
            else:
                sim.started = sim.started or time.time()
                began = time.perf_counter()
                try:
                    sim.client.reconnect()
                    sim.connect_call_s = time.perf_counter() - began
                except (OSError, ssl.SSLError, ValueError) as exc:
                    sim.failures += 1
                    sim.error = f"{type(exc).__name__}: {exc}"
                    retry_at[sim.device_id] = now + 0.25
                    pending.append(sim)
        poller = select.poll()
        by_fd: dict[int, SimDevice] = {}
        ssl_pending = []
        for sim in sims:
            sock = sim.client.socket()
            if sock is None:
                continue
            fd = sock.fileno()
            by_fd[fd] = sim
            poller.register(fd, select.POLLIN | (select.POLLOUT if sim.client.want_write() else 0))
            if isinstance(sock, ssl.SSLSocket) and sock.pending():
                ssl_pending.append(sim)
        poller.register(conn.fileno(), select.POLLIN)
        timeout_ms = 0 if (pending or ssl_pending) else (20 if storm else 500)
        command: Any = None
        for fd, events in poller.poll(timeout_ms):
            if fd == conn.fileno():
                command = conn.recv()
                continue
            sim = by_fd[fd]
            if events & (select.POLLIN | select.POLLERR | select.POLLHUP):
                sim.client.loop_read()
            if events & select.POLLOUT and sim.client.socket() is not None:
                sim.client.loop_write()
        for sim in ssl_pending:
            if sim.client.socket() is not None:
                sim.client.loop_read()
        if time.monotonic() - last_misc >= 1.0:
            last_misc = time.monotonic()
            for sim in sims:
                if sim.client.socket() is not None:
                    sim.client.loop_misc()  # keep-alive pings
        if command is not None:
            kind, arg, timeout = command
            if kind == "stop":
                for sim in sims:
                    if sim.client.socket() is not None:
                        sim.client.disconnect()
                conn.send({"cpu_s": _cpu_s(cpu0)})
                return
            if kind == "down":
                down_deadline = time.monotonic() + timeout
            elif kind == "storm":
                storm = (arg, time.monotonic() + timeout)
                for sim in sims:
                    sim.reset(arg)
                pending.extend(s for s in sims if s.client.socket() is None)
                retry_at.clear()
                for sim in sims:  # still connected (should not be): publish again as if reconnected
                    if sim.client.socket() is not None:
                        sim.started = time.time()
                        _on_connect(sim.client, sim, None, types.SimpleNamespace(is_failure=False), None)
        if down_deadline is not None:
            up = sum(1 for s in sims if s.client.socket() is not None)
            if up == 0 or time.monotonic() > down_deadline:
                conn.send({"still_connected": up})
                down_deadline = None
        if storm is not None:
            round_, deadline = storm
            if all(s.done for s in sims) or time.monotonic() > deadline:
                pending.clear()
                conn.send({"round": round_, "timings": [s.timings() for s in sims], "tls": _negotiated(sims)})
                storm = None


def _negotiated(sims: list[SimDevice]) -> str | None:
    """The TLS version and cipher one connected client negotiated (None: plain)."""
    for sim in sims:
        sock = sim.client.socket()
        if isinstance(sock, ssl.SSLSocket):
            cipher = sock.cipher()
            return f"{sock.version()} {cipher[0] if cipher else '?'}"
    return None


def _cpu_s(since: os.times_result | None = None) -> float:
    t = os.times()
    total = t.user + t.system
    return total - (since.user + since.system if since else 0.0)


# --- one transport: broker, hub, drivers -------------------------------------------------------------


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


@dataclass
class World:
    """A broker, a hub process connected to it, and the driver processes of N devices."""

    name: str
    tls: bool
    root: Path
    devices: list[ClientFiles]
    hub_data: Path
    drivers: int
    broker_extra: tuple[str, ...] = ()
    broker: StormBroker = field(init=False)
    hub_proc: subprocess.Popen[bytes] | None = None
    hub_port: int = 0
    conns: list[multiprocessing.connection.Connection] = field(default_factory=list)
    procs: list[Any] = field(default_factory=list)

    def start_broker(self, broker_dir: Path) -> None:
        self.broker = StormBroker(broker_dir, hub_data_dir=self.hub_data if self.tls else None, extra=self.broker_extra)
        self.broker.start()

    def start_hub(self) -> None:
        self.hub_port = free_port()
        cmd = [sys.executable, "-m", "hub", "hub", "serve", "--data-dir", str(self.hub_data)]
        cmd += ["--port", str(self.hub_port), "--broker", self.broker.url]
        with open(self.root / f"hub-{self.name}.log", "ab") as out:
            self.hub_proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        wait_for(self.hub_connected, 60, interval=0.2, what=f"the {self.name} hub connected to its broker")

    def hub_connected(self) -> bool:
        assert self.hub_proc is not None
        if self.hub_proc.poll() is not None:
            raise RuntimeError(f"the {self.name} hub exited ({self.hub_proc.returncode}); see its log in {self.root}")
        url = f"http://127.0.0.1:{self.hub_port}/api/v1/hub"
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(json.loads(resp.read())["brokerConnected"])

    def start_drivers(self, ctx: Any) -> None:
        per = -(-len(self.devices) // self.drivers)
        for i in range(self.drivers):
            chunk = self.devices[i * per : (i + 1) * per]
            if not chunk:
                break
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=driver_main, args=(child, chunk, self.broker.port, self.tls), daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)

    def ingested(self, round_: int) -> int:
        """Devices whose report of this round the hub has stored."""
        with contextlib.closing(sqlite3.connect(self.hub_data / "hub.db", timeout=5)) as db:
            row = db.execute(
                "SELECT count(*) FROM devices WHERE json_extract(last_report, '$.seq') = ?", (round_,)
            ).fetchone()
        return int(row[0])

    def drivers_cpu(self) -> float:
        return sum(_cpu(psutil.Process(p.pid)) for p in self.procs)

    def round(self, round_: int, restart: bool) -> dict[str, Any]:
        assert self.hub_proc is not None
        out: dict[str, Any] = {"round": round_, "after_restart": restart}
        if restart:
            began = time.monotonic()
            self.broker.stop()
            for c in self.conns:
                c.send(("down", None, 15.0))
            out["still_connected_after_stop"] = sum(c.recv()["still_connected"] for c in self.conns)
            self.broker.start()
            out["broker_restart_s"] = time.monotonic() - began
        assert self.broker.proc is not None
        broker, hub = psutil.Process(self.broker.proc.pid), psutil.Process(self.hub_proc.pid)
        log_offset = self.broker.log_file.stat().st_size
        cpu0 = {"broker": _cpu(broker), "hub": _cpu(hub), "drivers": self.drivers_cpu()}
        t0 = time.time()
        for c in self.conns:
            c.send(("storm", round_, STORM_TIMEOUT_S))
        replies = [c.recv() for c in self.conns]
        timings = [t for r in replies for t in r["timings"]]
        cpu1 = {"broker": _cpu(broker), "hub": _cpu(hub), "drivers": self.drivers_cpu()}
        n = len(timings)

        def latest(i: int) -> float | None:
            values = [t[i] for t in timings if t[i] is not None]
            return max(values) - t0 if len(values) == n else None

        subscribed = sorted(t[3] - t0 for t in timings if t[3] is not None)
        out |= {
            "devices": n,
            "negotiated": next((r["tls"] for r in replies if r["tls"]), None),
            "all_connected_s": latest(2),
            "all_subscribed_s": latest(3),
            "all_published_s": _latest_of(latest(4), latest(5)),
            "median_subscribed_s": statistics.median(subscribed) if subscribed else None,
            "not_done": sum(1 for t in timings if None in (t[3], t[4], t[5])),
            "connect_failures": sum(t[6] for t in timings),
            "errors": sorted({t[7] for t in timings if t[7]})[:5],
            "median_connect_call_ms": statistics.median(t[1] for t in timings if t[1] is not None) * 1000,
            "broker_cpu_s": cpu1["broker"] - cpu0["broker"],
            "drivers_cpu_s": cpu1["drivers"] - cpu0["drivers"],
        }
        # the hub: until it has stored every device's report of this round, then until it is quiet
        # (or until no new report for STALL_S: a message the broker dropped never comes)
        seen, progress_at = 0, time.time()
        deadline = time.time() + HUB_TIMEOUT_S
        while time.time() < deadline and time.time() - progress_at < STALL_S:
            count = self.ingested(round_)
            if count > seen:
                seen, progress_at = count, time.time()
            if seen >= n:
                break
            time.sleep(0.1)
        out["hub_ingested"] = seen
        out["hub_all_ingested_s"] = time.time() - t0 if seen >= n else None
        out["hub_last_ingested_s"] = progress_at - t0 if seen else None
        quiet_deadline = time.time() + 10
        last = _cpu(hub)
        while time.time() < quiet_deadline:
            time.sleep(0.5)
            now = _cpu(hub)
            if now - last < 0.025:
                break
            last = now
        out["hub_cpu_s"] = _cpu(hub) - cpu0["hub"]
        out["broker_cpu_until_hub_done_s"] = _cpu(broker) - cpu0["broker"]
        tail = self.broker.log_file.read_bytes()[log_offset:].decode(errors="replace")
        out["broker_drop_warnings"] = [line for line in tail.splitlines() if "dropped" in line][:3]
        return out

    def stop(self) -> None:
        for c in self.conns:
            with contextlib.suppress(OSError, EOFError):
                c.send(("stop", None, 0))
        for p in self.procs:
            p.join(5)
            if p.is_alive():
                p.kill()
        if self.hub_proc is not None and self.hub_proc.poll() is None:
            self.hub_proc.terminate()
            try:
                self.hub_proc.wait(10)
            except subprocess.TimeoutExpired:
                self.hub_proc.kill()
        with contextlib.suppress(AttributeError):
            self.broker.stop()


# --- main ----------------------------------------------------------------------------------------------


def _latest_of(*values: float | None) -> float | None:
    return None if None in values else max(v for v in values if v is not None)


def _median(rounds: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rounds if r.get(key) is not None]
    return statistics.median(values) if values else None


def run(devices: int, rounds: int, drivers: int, broker_extra: tuple[str, ...] = ()) -> dict[str, Any]:
    nofile = raise_nofile()
    if nofile < 2 * devices + 200:
        raise SystemExit(f"RLIMIT_NOFILE is {nofile}; {devices} devices need about {2 * devices + 200} descriptors")
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="edgefleet-bench-storm-") as tmp:
        root = Path(tmp)
        secure_hub = root / "hub-tls"
        tls = World("tls", True, root, [], secure_hub, drivers, broker_extra)
        tls.start_broker(root / "broker-tls")  # writes the broker's files and the hub's CA
        began = time.monotonic()
        ids = [f"storm-{i:05d}" for i in range(devices)]
        files = register_devices(secure_hub, tls.broker.url, ids, root / "identities")
        registration_s = time.monotonic() - began
        # the plain peer: the same registered fleet in a copy of the hub's data, without the broker record
        plain_hub = root / "hub-plain"
        shutil.copytree(secure_hub, plain_hub)
        (plain_hub / "broker-config.json").unlink()
        plain = World("plain", False, root, files, plain_hub, drivers, broker_extra)
        tls.devices = files
        plain.start_broker(root / "broker-plain")
        worlds = [tls, plain]
        per_world: dict[str, list[dict[str, Any]]] = {"tls": [], "plain": []}
        try:
            for world in worlds:
                world.start_hub()
                world.start_drivers(ctx)
            for world in worlds:  # round 0: the first connect, broker and hub already up
                per_world[world.name].append(world.round(0, restart=False))
                print(f"  {world.name}: first connect: {_brief(per_world[world.name][-1])}", flush=True)
            for round_ in range(1, rounds + 1):
                for world in worlds:  # alternating, so outside load lands on both alike
                    per_world[world.name].append(world.round(round_, restart=True))
                    print(f"  {world.name}: restart {round_}: {_brief(per_world[world.name][-1])}", flush=True)
        finally:
            for world in worlds:
                world.stop()
    summary: dict[str, Any] = {}
    keys = [
        "all_connected_s",
        "all_subscribed_s",
        "all_published_s",
        "median_subscribed_s",
        "broker_cpu_s",
        "broker_cpu_until_hub_done_s",
        "hub_cpu_s",
        "hub_all_ingested_s",
        "drivers_cpu_s",
        "median_connect_call_ms",
    ]
    for name, results in per_world.items():
        restarts = [r for r in results if r["after_restart"]]
        summary[name] = {k: _median(restarts, k) for k in keys}
        summary[name]["first_connect"] = {k: results[0].get(k) for k in keys}
    ratio = {}
    for k in keys:
        a, b = summary["tls"][k], summary["plain"][k]
        ratio[k] = a / b if a is not None and b else None
    return {
        "devices": devices,
        "rounds": rounds,
        "drivers_per_transport": drivers,
        "broker_extra": list(broker_extra),
        "registration_s": registration_s,
        "cpus": psutil.cpu_count(),
        "nofile": nofile,
        "summary_median_of_restarts": summary,
        "ratio_tls_to_plain": ratio,
        "rounds_detail": per_world,
    }


def _brief(r: dict[str, Any]) -> str:
    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    return (
        f"subscribed {f(r['all_subscribed_s'])} s, broker {f(r['broker_cpu_s'])} cpu-s, "
        f"hub {f(r['hub_cpu_s'])} cpu-s (stored all {f(r['hub_all_ingested_s'])} s, {r['hub_ingested']}/{r['devices']}), "
        f"failures {r['connect_failures']}, not done {r['not_done']}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.broker_storm", description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=1000, help="simulated devices, each with its own certificate")
    p.add_argument("--rounds", type=int, default=2, help="broker restarts per transport (median reported)")
    p.add_argument("--drivers", type=int, default=4, help="processes driving the clients, per transport")
    p.add_argument(
        "--broker-extra",
        action="append",
        default=[],
        metavar="LINE",
        help="a mosquitto.conf line added to both brokers, e.g. 'max_queued_messages 10000' (repeatable)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    started = time.monotonic()
    print(f"{args.devices} devices, {args.rounds} broker restarts per transport, {args.drivers} driver processes each")
    results = run(args.devices, args.rounds, args.drivers, tuple(args.broker_extra))
    s, ratio = results["summary_median_of_restarts"], results["ratio_tls_to_plain"]

    def cell(v: float | None, unit: str) -> str:
        return "-" if v is None else f"{v:.2f} {unit}"

    rows = [
        ("all connected (CONNACK)", "all_connected_s", "s"),
        ("all subscribed (SUBACK)", "all_subscribed_s", "s"),
        ("all presence + report acknowledged", "all_published_s", "s"),
        ("median device subscribed", "median_subscribed_s", "s"),
        ("broker CPU, go -> all acknowledged", "broker_cpu_s", "s"),
        ("broker CPU, go -> hub stored all", "broker_cpu_until_hub_done_s", "s"),
        ("hub stored every report", "hub_all_ingested_s", "s"),
        ("hub CPU, go -> quiet", "hub_cpu_s", "s"),
        ("driver processes' CPU (the simulated devices)", "drivers_cpu_s", "s"),
        ("median blocking connect call per client", "median_connect_call_ms", "ms"),
    ]
    width = max(len(r[0]) for r in rows)
    print(
        f"\nbroker restart storm: {args.devices} devices reconnecting at once "
        f"({time.strftime('%Y-%m-%d %H:%M')}, {psutil.cpu_count()} CPUs; median of {args.rounds} restarts)"
    )
    print(f"{'':<{width}}  {'TLS + certs':>12}  {'plain MQTT':>12}  TLS/plain")
    for label, key, unit in rows:
        r = ratio[key]
        print(
            f"{label:<{width}}  {cell(s['tls'][key], unit):>12}  {cell(s['plain'][key], unit):>12}  "
            f"{'-' if r is None else f'{r:.2f}x'}"
        )
    for name in ("tls", "plain"):
        detail = results["rounds_detail"][name]
        stored = ", ".join(f"{r['hub_ingested']}/{r['devices']}" for r in detail)
        drops = sum(1 for r in detail if r["broker_drop_warnings"])
        print(
            f"{name}: reports the hub stored per round (first connect, restarts): {stored}; "
            f"rounds where the broker dropped messages to a client: {drops}"
        )
    print(f"registration of {args.devices} devices: {results['registration_s']:.1f} s")
    results["wall_s"] = time.monotonic() - started
    path = write_results("broker_storm", results)
    print(f"wrote {path} ({results['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
