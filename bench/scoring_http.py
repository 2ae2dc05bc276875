"""The scoring module's HTTP serving under load: the asyncio transport against the former threading
one (the peer in the same run, as ratios), driven by wrk.

    python -m bench.scoring_http [--duration 10] [--rounds 1] [--connections 1,32] [--workers auto,1]

Two faces, each on the digits fp32 model (modules/samples/digits/digits_fp32.onnx):

- ``score``: the Azure ML face, ``POST /score`` of one 8x8 image as JSON through the sample entry
  script (modules/samples/digits/src/score.py, its init()/run());
- ``v2``: no-code, ``POST /v2/models/digits/infer`` of one image as a binary tensor (what
  tritonclient sends by default).

For each face and server configuration (``threading``; ``asyncio`` with each of ``--workers``,
``auto`` being the module's default for this machine) a fresh module is started, its start-up
(spawn -> status Ready) timed, then wrk (one thread, kept-alive connections, bench/scoring_http.lua)
runs 2 s of warm-up and ``--duration`` s at each ``--connections``; req/s, p50, p99 and the module's
memory (RSS and PSS summed over its processes, read after the run) are recorded. With
``--rounds`` N the configurations alternate N times and every figure is the median (with min and
max). wrk runs on the same machine as the module: on 2 cores it takes about one of them.

Writes bench/results/scoring_http.json. Needs ``wrk`` (``make system-deps``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench.accel_common import write_results
from tests.support.processes import free_port, wait_for

REPO = Path(__file__).resolve().parents[1]
DIGITS = REPO / "modules" / "samples" / "digits"
LUA = Path(__file__).resolve().parent / "scoring_http.lua"
WARMUP_S = 2


@dataclass(frozen=True)
class Face:
    name: str
    path: str
    content_type: str
    entry_script: bool


FACES = [
    Face("score", "/score", "application/json", entry_script=True),
    Face("v2", "/v2/models/digits/infer", "application/octet-stream", entry_script=False),
]


def bodies(workdir: Path) -> dict[str, tuple[Path, int | None]]:
    """The request body of each face (and the v2 JSON header length): one test image."""
    image = np.load(DIGITS / "test_set.npz")["images"][:1].astype("<f4")
    score = workdir / "score.json"
    score.write_text(json.dumps({"data": [image.reshape(64).tolist()]}))
    header = json.dumps(
        {
            "inputs": [
                {"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "parameters": {"binary_data_size": 256}}
            ],
            "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
        }
    ).encode()
    v2 = workdir / "v2.bin"
    v2.write_bytes(header + image.tobytes())
    return {"score": (score, None), "v2": (v2, len(header))}


def tree_memory_mb(pid: int) -> tuple[float, float, int]:
    """RSS and PSS (MB) summed over ``pid`` and all its descendants (smaps_rollup), and how many processes."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0, 0.0, 0
    rss = pss = 0
    for p in procs:
        try:
            for line in Path(f"/proc/{p.pid}/smaps_rollup").read_text().splitlines():
                key, _, value = line.partition(":")
                if key == "Rss":
                    rss += int(value.split()[0])
                elif key == "Pss":
                    pss += int(value.split()[0])
        except OSError:
            continue
    return rss / 1024, pss / 1024, len(procs)


class Module:
    """One scoring module process on a free port."""

    def __init__(self, workdir: Path, face: Face, transport: str, workers: str) -> None:
        model = workdir / "model"
        model.mkdir(exist_ok=True)
        shutil.copy(DIGITS / "digits_fp32.onnx", model)
        self.port = free_port()
        status = workdir / f"status-{self.port}.json"
        args = ["--model-dir", str(model), "--name", "digits", "--port", str(self.port), "--status-file", str(status)]
        args += ["--transport", transport, "--log-level", "WARNING"]
        if face.entry_script:
            args += ["--source-dir", str(DIGITS / "src"), "--entry-script", "score.py"]
        if workers != "auto":
            args += ["--workers", workers]
        self.log = (workdir / f"module-{self.port}.log").open("wb")
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgefleet.modules.scoring", *args], stdout=self.log, stderr=self.log, cwd=REPO
        )

        def ready() -> bool:
            return status.exists() and json.loads(status.read_text())["state"] == "Ready"

        wait_for(ready, timeout=60, interval=0.005, what=f"the module on port {self.port}")
        self.startup_s = time.monotonic() - started
        self.workers = max(1, len(Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def wrk(url: str, connections: int, seconds: int, body: Path, content_type: str, header_length: int | None) -> dict:
    env = {**os.environ, "WRK_BODY": str(body), "WRK_CONTENT_TYPE": content_type}
    env["WRK_HEADER_LENGTH"] = "" if header_length is None else str(header_length)
    timeout = max(10, 4 * seconds)
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", f"--timeout={timeout}s", "-s", str(LUA), url]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("WRKJSON "))
    raw = json.loads(line.removeprefix("WRKJSON "))
    errors = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    return {
        "req_per_s": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "requests": raw["requests"],
        "non_2xx": raw["non2xx"],
        "socket_errors": errors,
    }


def summarise(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per connection count")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--connections", default="1,32")
    parser.add_argument("--workers", default="auto,1", help="asyncio worker counts to run; auto: the module's default")
    parser.add_argument("--faces", default="score,v2")
    parser.add_argument("--no-peer", action="store_true", help="leave out the threading transport")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: make system-deps (Debian package wrk)", file=sys.stderr)
        return 1
    connections = [int(c) for c in args.connections.split(",")]
    configs = [("asyncio", w) for w in dict.fromkeys(args.workers.split(","))]
    if not args.no_peer:
        configs.append(("threading", "1"))
    faces = [f for f in FACES if f.name in args.faces.split(",")]
    samples: dict[tuple[str, str, str, int], list[dict[str, Any]]] = {}
    startups: dict[tuple[str, str, str], list[float]] = {}
    workers_seen: dict[tuple[str, str, str], int] = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as tmp:
        workdir = Path(tmp)
        files = bodies(workdir)
        for round_no in range(args.rounds):
            for face in faces:
                body, header_length = files[face.name]
                for transport, workers in configs:
                    module = Module(workdir, face, transport, workers)
                    key = (face.name, transport, workers)
                    startups.setdefault(key, []).append(module.startup_s)
                    workers_seen[key] = module.workers
                    url = f"http://127.0.0.1:{module.port}{face.path}"
                    try:
                        for n in connections:
                            wrk(url, n, WARMUP_S, body, face.content_type, header_length)
                            figures = wrk(url, n, args.duration, body, face.content_type, header_length)
                            figures["rss_mb"], figures["pss_mb"], _ = tree_memory_mb(module.proc.pid)
                            samples.setdefault((*key, n), []).append(figures)
                            print(
                                f"round {round_no + 1} {face.name:5s} {transport:9s} workers={module.workers} c={n:<3d}"
                                f" {figures['req_per_s']:8.0f} req/s  p50 {figures['p50_ms']:7.2f} ms"
                                f"  p99 {figures['p99_ms']:7.2f} ms  rss {figures['rss_mb']:5.0f} MB"
                                f"  pss {figures['pss_mb']:5.0f} MB  non-2xx {figures['non_2xx']}"
                                f"  errors {figures['socket_errors']}",
                                flush=True,
                            )
                    finally:
                        module.stop()
    rows = []
    for (face_name, transport, workers, n), runs in samples.items():
        row: dict[str, Any] = {
            "face": face_name,
            "transport": transport,
            "workers_option": workers,
            "workers": workers_seen[(face_name, transport, workers)],
            "connections": n,
            "startup_s": summarise(startups[(face_name, transport, workers)]),
        }
        for metric in ("req_per_s", "p50_ms", "p99_ms", "rss_mb", "pss_mb"):
            row[metric] = summarise([r[metric] for r in runs])
        row["non_2xx"] = sum(r["non_2xx"] for r in runs)
        row["socket_errors"] = sum(r["socket_errors"] for r in runs)
        rows.append(row)
    ratios = []
    for row in rows:
        peer = next(
            (
                r
                for r in rows
                if r["transport"] == "threading" and r["face"] == row["face"] and r["connections"] == row["connections"]
            ),
            None,
        )
        if peer is None or row["transport"] == "threading":
            continue
        ratios.append(
            {
                "face": row["face"],
                "workers": row["workers"],
                "connections": row["connections"],
                "req_per_s_ratio": row["req_per_s"]["median"] / peer["req_per_s"]["median"],
                "p99_ratio": row["p99_ms"]["median"] / peer["p99_ms"]["median"],
            }
        )
    print("\nnew / former transport (medians):")
    for r in ratios:
        print(
            f"  {r['face']:5s} workers={r['workers']} c={r['connections']:<3d} req/s x{r['req_per_s_ratio']:.1f}"
            f"  p99 x{r['p99_ratio']:.3f}"
        )
    path = write_results(
        "scoring_http",
        {
            "conditions": {
                "cpus": os.cpu_count(),
                "load_average_before": load_before,
                "load_average_after": os.getloadavg(),
                "python": platform.python_version(),
                "duration_s": args.duration,
                "rounds": args.rounds,
                "wrk": "one thread, kept-alive connections, on the same machine",
                "model": "digits_fp32.onnx, one image per request",
            },
            "rows": rows,
            "ratios_to_threading": ratios,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
