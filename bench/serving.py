"""edgefleet's scoring module against the model servers it replaces, side by side in one run, driven
by wrk at 1 and 32 connections (issue 10).

    python -m bench.serving [--peers azureml,mlserver,kserve,triton] [--duration 10] [--rounds 1]
                            [--connections 1,32] [--skip-install]

Every server serves the same file (modules/samples/digits/digits_fp32.onnx) on onnxruntime's CPU
provider with one intra-op thread per process (``SessionOptions.intra_op_num_threads = 1``, the
rest default; edgefleet's module gives each of its default workers one thread on a 2-core machine),
one 8x8 image per request, as JSON in the shape its protocol expects:

- ``edgefleet score``: ``POST /score``, ``{"data": [[64 floats]]}``, through the sample entry script
  (modules/samples/digits/src/score.py), the module's default workers;
- ``edgefleet v2``: no-code, ``POST /v2/models/digits/infer``, v2 JSON (``inputs[0].data``);
- ``azureml``: azureml-inference-server-http (``azmlinfsrv``, Flask under gunicorn, 2 workers),
  ``POST /score``, the same body, an entry script whose run() is the sample's with the model loaded
  by onnxruntime directly (the sample's loads through edgefleet, which is not installed there);
- ``mlserver``: MLServer, a custom runtime (an ``MLModel`` subclass written by this bench),
  ``POST /v2/models/digits/infer``, v2 JSON;
- ``kserve``: the KServe Python model server, a ``kserve.Model`` subclass, v1
  ``POST /v1/models/digits:predict``, ``{"instances": [[64 floats]]}``;
- ``triton`` / ``triton-nobatch``: Triton through PyTriton, a ``@batch`` Python infer function
  with dynamic batching (max batch 64, 100 us queue delay) and without, v2 JSON.

The peers are installed, each into its own virtual environment (never the project's), under
``~/.cache/edgefleet-bench/<peer>-<version>`` once, and reused (``--skip-install``: only use them).
Each server runs as its own process on free loopback ports; once ready, wrk (bench/scoring_http's
runner and Lua script: one thread, kept-alive connections) warms it up 2 s, then loads it
``--duration`` s at each of ``--connections``, its memory is read (RSS and PSS summed over the
process tree) and it is stopped. The servers alternate in each round (the order rotates from round
to round) so that outside load lands on all of them alike; with ``--rounds`` N each figure is the
median (min and max beside it).

Configurations (each peer's best found on the 2-core machine, in short runs): azureml 2 workers;
MLServer ``parallel_workers`` 0 with its metrics endpoint off (1 or 2 parallel workers and the
metrics middleware each cost it 30-45% at 32 connections); KServe 2 workers (1: ~60% less at 32);
Triton without batching 2 model instances (1: ~40% less at 32). ``BENCH_MLSERVER_WORKERS``,
``BENCH_KSERVE_WORKERS`` and ``BENCH_TRITON_INSTANCES`` change them; ``--only LABEL,...`` runs some
servers only. MLServer 1.7.1's parallel workers need uvloop < 0.22 (0.22 raises in
``asyncio.get_event_loop()`` outside a running loop), which its venv gets.

Writes bench/results/serving.json. Needs ``wrk`` (``make system-deps``) and PyPI for the first
install.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.accel_common import write_results
from bench.scoring_http import DIGITS, FACES, WARMUP_S, Module, summarise, tree_memory_mb, wrk
from tests.support.processes import free_port, wait_for

CACHE = Path(os.environ.get("EDGEFLEET_BENCH_CACHE", Path.home() / ".cache" / "edgefleet-bench"))
ONNXRUNTIME = "1.32.0"  # the project's; every peer gets the same
MODEL = DIGITS / "digits_fp32.onnx"
KSERVE_WORKERS = int(os.environ.get("BENCH_KSERVE_WORKERS", "2"))
NOBATCH_INSTANCES = int(os.environ.get("BENCH_TRITON_INSTANCES", "2"))


@dataclass(frozen=True)
class Env:
    """A peer's virtual environment: the packages pinned from the issue."""

    name: str
    version: str
    packages: tuple[str, ...]

    @property
    def path(self) -> Path:
        return CACHE / f"{self.name}-{self.version}"

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"


ENVS = {
    "azureml": Env("azureml", "1.5.1", ("azureml-inference-server-http==1.5.1",)),
    "mlserver": Env("mlserver", "1.7.1", ("mlserver==1.7.1", "uvloop<0.22")),
    "kserve": Env("kserve", "0.21.0", ("kserve==0.21.0",)),
    "triton": Env("pytriton", "0.7.0", ("nvidia-pytriton==0.7.0",)),
}


def install(env: Env) -> dict[str, Any]:
    """Create the peer's venv once (a marker file records the install); return what it holds."""
    marker = env.path / "edgefleet-bench.json"
    if marker.exists():
        return json.loads(marker.read_text())
    started = time.monotonic()
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    print(f"installing {env.name} {env.version} into {env.path} ...", flush=True)
    shutil.rmtree(env.path, ignore_errors=True)
    subprocess.run([str(base), "-m", "venv", str(env.path)], check=True)
    pip = [str(env.python), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, *env.packages, f"onnxruntime=={ONNXRUNTIME}"], check=True)
    record = {"seconds": time.monotonic() - started, **describe(env)}
    marker.write_text(json.dumps(record, indent=2))
    return record


def describe(env: Env) -> dict[str, Any]:
    frozen = subprocess.run(
        [str(env.python), "-m", "pip", "freeze"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    wanted = {re.split(r"[<>=!~]", p)[0].lower() for p in env.packages} | {"onnxruntime", "numpy"}
    versions = {n.lower(): v for n, _, v in (ln.partition("==") for ln in frozen) if n.lower() in wanted}
    disk = int(subprocess.run(["du", "-sb", str(env.path)], capture_output=True, text=True).stdout.split()[0])
    return {"versions": versions, "packages": len(frozen), "disk_mb": disk / 1e6}


# ---- request bodies --------------------------------------------------------------------------


def write_bodies(workdir: Path) -> dict[str, Path]:
    image = np.load(DIGITS / "test_set.npz")["images"][:1].astype("<f4").reshape(64).tolist()
    docs = {
        "score": {"data": [image]},
        "v2": {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": image}]},
        "v1": {"instances": [image]},
    }
    paths = {}
    for name, doc in docs.items():
        paths[name] = workdir / f"{name}.json"
        paths[name].write_text(json.dumps(doc))
    return paths


# ---- the peers' code, written into the run's temporary directory ------------------------------

SESSION = """
import glob, os
import numpy as np
import onnxruntime as ort

def _session(model_dir):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    path = sorted(glob.glob(os.path.join(model_dir, "*.onnx")))[0]
    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
"""

AZUREML_SCORE = (
    SESSION
    + '''
import json
session = None

def init():
    global session
    session = _session(os.environ["AZUREML_MODEL_DIR"])

def run(raw_data):
    """The sample's run() (modules/samples/digits/src/score.py) on an onnxruntime session."""
    doc = json.loads(raw_data)
    x = np.asarray(doc["data"], dtype=np.float32).reshape(-1, 1, 8, 8)
    logits = session.run(None, {session.get_inputs()[0].name: x})[0]
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return {
        "predictions": np.argmax(logits, axis=1).tolist(),
        "probabilities": np.round((shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float64), 6).tolist(),
    }
'''
)

MLSERVER_RUNTIME = (
    SESSION
    + """
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse

class DigitsRuntime(MLModel):
    async def load(self):
        self.session = _session(self.settings.parameters.uri)
        self.input_name = self.session.get_inputs()[0].name
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32)
        logits = self.session.run(None, {self.input_name: x})[0]
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("logits", logits)])
"""
)

KSERVE_SERVER = (
    SESSION
    + """
import sys
import kserve

class Digits(kserve.Model):
    def __init__(self, name, model_dir):
        super().__init__(name)
        self.model_dir = model_dir
        self.load()

    def load(self):
        self.session = _session(self.model_dir)
        self.input_name = self.session.get_inputs()[0].name
        self.ready = True
        return True

    # with workers > 1 the server pickles the model into each worker process: each loads its own
    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "session"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.load()

    def predict(self, payload, headers=None):
        x = np.asarray(payload["instances"], dtype=np.float32).reshape(-1, 1, 8, 8)
        logits = self.session.run(None, {self.input_name: x})[0]
        return {"predictions": logits.tolist()}

if __name__ == "__main__":
    http_port, grpc_port, workers, model_dir = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    kserve.ModelServer(http_port=http_port, grpc_port=grpc_port, workers=workers, enable_grpc=False,
        enable_latency_logging=False).start(
        [Digits("digits", model_dir)]
    )
"""
)

TRITON_SERVER = (
    SESSION
    + """
import sys
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

http_port, grpc_port, metrics_port, dynamic, instances, model_dir = sys.argv[1:7]

def make_infer():
    session = _session(model_dir)
    name = session.get_inputs()[0].name

    @batch
    def infer(input):
        return {"logits": session.run(None, {name: input})[0]}

    return infer

if dynamic == "1":
    config = ModelConfig(max_batch_size=64, batcher=DynamicBatcher(max_queue_delay_microseconds=100))
    shape = (1, 8, 8)
else:
    config = ModelConfig(batching=False)
    shape = (-1, 1, 8, 8)
triton_config = TritonConfig(
    http_address="127.0.0.1", http_port=int(http_port), grpc_address="127.0.0.1", grpc_port=int(grpc_port),
    metrics_port=int(metrics_port), log_verbose=0,
)
with Triton(config=triton_config) as triton:
    triton.bind(
        model_name="digits",
        infer_func=[make_infer() for _ in range(int(instances))],
        inputs=[Tensor(name="input", dtype=np.float32, shape=shape)],
        outputs=[Tensor(name="logits", dtype=np.float32, shape=(-1,) if dynamic == "1" else (-1, 10))],
        config=config,
        strict=False,
    )
    triton.serve()
"""
)


# ---- servers -----------------------------------------------------------------------------------


@dataclass
class Server:
    """A server process to benchmark; ``start`` returns once it answers ``ready_path``."""

    label: str
    body: str
    path: str
    config: str
    command: Callable[[Path, int], tuple[list[str], dict[str, str]]] | None = None
    ready_path: str = ""
    env_name: str = ""
    proc: subprocess.Popen | None = field(default=None, repr=False)
    module: Module | None = field(default=None, repr=False)
    port: int = 0
    startup_s: float = 0.0

    def start(self, workdir: Path) -> None:
        started = time.monotonic()
        if self.command is None:  # edgefleet's module, through bench.scoring_http
            face = next(f for f in FACES if f.name == ("score" if self.path == "/score" else "v2"))
            self.module = Module(workdir, face, "asyncio", "auto")
            self.port, self.proc = self.module.port, self.module.proc
            self.startup_s = self.module.startup_s
            return
        self.port = free_port()
        argv, extra = self.command(workdir, self.port)
        log = (workdir / f"{self.label}-{self.port}.log").open("wb")
        self.proc = subprocess.Popen(
            argv, stdout=log, stderr=log, cwd=workdir, env={**os.environ, **extra}, start_new_session=True
        )
        url = f"http://127.0.0.1:{self.port}{self.ready_path}"

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                return True  # exited: reported below
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    return bool(resp.status == 200)
            except OSError:
                return False

        wait_for(ready, timeout=180, interval=0.05, what=f"{self.label} on port {self.port}")
        if self.proc.poll() is not None:
            tail = Path(log.name).read_text(errors="replace")[-1500:]
            raise RuntimeError(f"{self.label} exited with {self.proc.returncode}: {tail}")
        self.startup_s = time.monotonic() - started

    def stop(self) -> None:
        if self.module is not None:
            self.module.stop()
            self.module = None
            return
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass
        # a process group can outlive its leader (Triton's server, python backend stubs)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc = None


def peer_servers(peers: list[str], workdir: Path, model_dir: Path) -> list[Server]:
    servers: list[Server] = []
    if "azureml" in peers:
        az = ENVS["azureml"]
        (workdir / "azureml").mkdir()
        (workdir / "azureml" / "score.py").write_text(AZUREML_SCORE)

        def azureml(workdir: Path, port: int) -> tuple[list[str], dict[str, str]]:
            argv = [str(az.path / "bin" / "azmlinfsrv"), "--entry_script", str(workdir / "azureml" / "score.py")]
            argv += ["--port", str(port), "--health_port", str(free_port()), "--model_dir", str(model_dir)]
            argv += ["--worker_count", "2"]
            return argv, {"AZUREML_MODEL_DIR": str(model_dir), "WORKER_COUNT": "2"}

        servers.append(Server("azureml", "score", "/score", "gunicorn, 2 workers", azureml, "/", "azureml"))
    if "mlserver" in peers:
        ml = ENVS["mlserver"]

        def mlserver(workdir: Path, port: int) -> tuple[list[str], dict[str, str]]:
            repo = workdir / f"mlserver-{port}"
            (repo / "digits").mkdir(parents=True)
            (repo / "digits" / "runtime.py").write_text(MLSERVER_RUNTIME)
            settings = {"http_port": port, "grpc_port": free_port(), "metrics_port": free_port()}
            settings |= {
                "parallel_workers": int(os.environ.get("BENCH_MLSERVER_WORKERS", "0")),
                "host": "127.0.0.1",
                "debug": False,
                "metrics_endpoint": None,
            }
            (repo / "settings.json").write_text(json.dumps(settings))
            model = {"name": "digits", "implementation": "runtime.DigitsRuntime"}
            model["parameters"] = {"uri": str(model_dir)}  # type: ignore[assignment]
            (repo / "digits" / "model-settings.json").write_text(json.dumps(model))
            return [str(ml.path / "bin" / "mlserver"), "start", str(repo)], {"PYTHONPATH": str(repo / "digits")}

        servers.append(
            Server(
                "mlserver", "v2", "/v2/models/digits/infer", "custom runtime, parallel_workers 0 (inline)",
                mlserver, "/v2/models/digits/ready", "mlserver",
            )
        )  # fmt: skip
    if "kserve" in peers:
        ks = ENVS["kserve"]
        (workdir / "kserve_server.py").write_text(KSERVE_SERVER)

        def kserve(workdir: Path, port: int) -> tuple[list[str], dict[str, str]]:
            script = str(workdir / "kserve_server.py")
            return [str(ks.python), script, str(port), str(free_port()), str(KSERVE_WORKERS), str(model_dir)], {}

        servers.append(
            Server(
                "kserve", "v1", "/v1/models/digits:predict", f"kserve.Model, {KSERVE_WORKERS} worker(s)",
                kserve, "/v1/models/digits", "kserve",
            )
        )  # fmt: skip
    if "triton" in peers:
        tr = ENVS["triton"]
        (workdir / "triton_server.py").write_text(TRITON_SERVER)
        libdir = str(sysconfig.get_config_var("LIBDIR") or "")

        def triton(dynamic: bool, instances: int) -> Callable[[Path, int], tuple[list[str], dict[str, str]]]:
            def command(workdir: Path, port: int) -> tuple[list[str], dict[str, str]]:
                argv = [str(tr.python), str(workdir / "triton_server.py"), str(port), str(free_port())]
                argv += [str(free_port()), "1" if dynamic else "0", str(instances), str(model_dir)]
                # PyTriton's Python backend stub links the interpreter's libpython: the venv's
                # Python is not the system one, so its own library directory goes first
                ld = ":".join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH", "")) if p)
                return argv, {"LD_LIBRARY_PATH": ld}

            return command

        servers.append(
            Server(
                "triton", "v2", "/v2/models/digits/infer", "dynamic batching, max 64, 100 us, 1 instance",
                triton(True, 1), "/v2/models/digits/ready", "triton",
            )
        )  # fmt: skip
        servers.append(
            Server(
                "triton-nobatch", "v2", "/v2/models/digits/infer", f"no batching, {NOBATCH_INSTANCES} instance(s)",
                triton(False, NOBATCH_INSTANCES), "/v2/models/digits/ready", "triton",
            )
        )  # fmt: skip
    return servers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", default="azureml,mlserver,kserve,triton")
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per connection count")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--connections", default="1,32")
    parser.add_argument("--skip-install", action="store_true", help="use the existing venvs, install nothing")
    parser.add_argument("--only", default="", help="comma list of server labels to run (debugging)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: make system-deps (Debian package wrk)", file=sys.stderr)
        return 1
    peers = [p for p in args.peers.split(",") if p]
    unknown = set(peers) - set(ENVS)
    if unknown:
        print(f"unknown peers {sorted(unknown)}; known: {', '.join(ENVS)}", file=sys.stderr)
        return 2
    installs: dict[str, Any] = {}
    for peer in list(peers):
        env = ENVS[peer]
        marker = env.path / "edgefleet-bench.json"
        try:
            if args.skip_install and not marker.exists():
                raise RuntimeError(f"no venv at {env.path} (run without --skip-install)")
            installs[peer] = install(env)
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            print(f"{peer}: not installed, left out: {exc}", file=sys.stderr)
            installs[peer] = {"error": str(exc)}
            peers.remove(peer)
    connections = [int(c) for c in args.connections.split(",")]
    samples: dict[tuple[str, int], list[dict[str, Any]]] = {}
    startups: dict[str, list[float]] = {}
    failures: dict[str, str] = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        workdir = Path(tmp)
        model_dir = workdir / "model"
        model_dir.mkdir()
        shutil.copy(MODEL, model_dir)
        bodies = write_bodies(workdir)
        servers = [
            Server("edgefleet-score", "score", "/score", "default workers, sample score.py"),
            Server("edgefleet-v2", "v2", "/v2/models/digits/infer", "default workers, no-code"),
            *peer_servers(peers, workdir, model_dir),
        ]
        if args.only:
            servers = [s for s in servers if s.label in args.only.split(",")]
        configs = {s.label: s.config for s in servers}
        for round_no in range(args.rounds):
            shift = round_no % len(servers)
            for server in servers[shift:] + servers[:shift]:
                if server.label in failures:
                    continue
                try:
                    server.start(workdir)
                except (RuntimeError, TimeoutError, OSError) as exc:
                    failures[server.label] = str(exc)
                    print(f"{server.label}: did not start: {exc}", file=sys.stderr, flush=True)
                    server.stop()
                    continue
                startups.setdefault(server.label, []).append(server.startup_s)
                url = f"http://127.0.0.1:{server.port}{server.path}"
                try:
                    for n in connections:
                        wrk(url, n, WARMUP_S, bodies[server.body], "application/json", None)
                        figures = wrk(url, n, args.duration, bodies[server.body], "application/json", None)
                        assert server.proc is not None
                        figures["rss_mb"], figures["pss_mb"], figures["processes"] = tree_memory_mb(server.proc.pid)
                        samples.setdefault((server.label, n), []).append(figures)
                        print(
                            f"round {round_no + 1} {server.label:15s} c={n:<3d} {figures['req_per_s']:8.0f} req/s"
                            f"  p50 {figures['p50_ms']:7.2f} ms  p99 {figures['p99_ms']:7.2f} ms"
                            f"  rss {figures['rss_mb']:5.0f} MB  pss {figures['pss_mb']:5.0f} MB"
                            f" ({figures['processes']} proc)  non-2xx {figures['non_2xx']}"
                            f"  errors {figures['socket_errors']}",
                            flush=True,
                        )
                except subprocess.SubprocessError as exc:
                    failures[server.label] = f"wrk: {exc}"
                finally:
                    server.stop()
    rows = []
    for (label, n), runs in samples.items():
        row: dict[str, Any] = {
            "server": label,
            "config": configs[label],
            "connections": n,
            "startup_s": summarise(startups[label]),
            "rounds": len(runs),
        }
        for metric in ("req_per_s", "p50_ms", "p99_ms", "rss_mb", "pss_mb"):
            row[metric] = summarise([r[metric] for r in runs])
        row["processes"] = runs[-1]["processes"]
        row["non_2xx"] = sum(r["non_2xx"] for r in runs)
        row["socket_errors"] = sum(r["socket_errors"] for r in runs)
        rows.append(row)
    ratios = []
    for n in connections:
        here = [r for r in rows if r["connections"] == n]
        peer_rows = [r for r in here if not r["server"].startswith("edgefleet")]
        if not peer_rows:
            continue
        best = max(peer_rows, key=lambda r: r["req_per_s"]["median"])
        best_p99 = min(peer_rows, key=lambda r: r["p99_ms"]["median"])
        for row in here:
            if not row["server"].startswith("edgefleet"):
                continue
            ratios.append(
                {
                    "server": row["server"],
                    "connections": n,
                    "best_peer": best["server"],
                    "req_per_s_ratio": row["req_per_s"]["median"] / best["req_per_s"]["median"],
                    "p99_ratio": row["p99_ms"]["median"] / best["p99_ms"]["median"],
                    "lowest_p99_peer": best_p99["server"],
                    "p99_ratio_to_lowest": row["p99_ms"]["median"] / best_p99["p99_ms"]["median"],
                }
            )
    print("\nedgefleet / best peer by req/s (medians):")
    for r in ratios:
        print(
            f"  {r['server']:15s} c={r['connections']:<3d} vs {r['best_peer']:14s} req/s x{r['req_per_s_ratio']:.2f}"
            f"  p99 x{r['p99_ratio']:.2f}  (p99 x{r['p99_ratio_to_lowest']:.2f} vs lowest, {r['lowest_p99_peer']})"
        )
    for label, why in failures.items():
        print(f"  {label}: {textwrap.shorten(why, 200)}", file=sys.stderr)
    path = write_results(
        "serving",
        {
            "conditions": {
                "cpus": os.cpu_count(),
                "load_average_before": load_before,
                "load_average_after": os.getloadavg(),
                "python": platform.python_version(),
                "duration_s": args.duration,
                "warmup_s": WARMUP_S,
                "rounds": args.rounds,
                "wrk": "one thread, kept-alive connections, on the same machine (bench/scoring_http.lua)",
                "model": "digits_fp32.onnx, one image per request as JSON, onnxruntime CPU, 1 intra-op thread",
                "onnxruntime": ONNXRUNTIME,
            },
            "installs": installs,
            "rows": rows,
            "ratios_to_best_peer": ratios,
            "failures": failures,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
