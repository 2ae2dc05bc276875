"""What it costs to give a module its own files: hard link (the old way) vs the agent's copy vs a digest check.

    python -m bench.agent_materialize [--sizes-mb 8,64,256,1024] [--runs 5] [--no-xfs]

For each model size: ``ArtifactCache.materialize`` into a fresh module directory (the agent's copy:
a reflink where the file system has one, else ``copy_file_range``), the same followed by fsync
(what a durable copy would add), a plain read/write copy, ``os.link`` (what the agent did before),
and the SHA-256 of the file (what "read-only plus a digest check before every use" costs on every
start, and what ``restore`` costs before a restart). With root and ``mkfs.xfs`` the copy is also
measured on a loopback XFS file system with reflink. Medians of ``--runs``; the blob is in the page
cache, as it is right after its download. The update serving gap (bench.agent_figures) is
0.64 s against a 1 s goal: the copy happens inside it (the old instance has stopped), so the
headroom is what a copy may take.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from edgefleet.agent.cache import ArtifactCache
from edgefleet.agent.copying import COPY_READ_WRITE, copy_fd, open_inside
from edgefleet.protocol.digests import format_digest
from edgefleet.protocol.models import ArtifactRef

RESULTS = Path(__file__).resolve().parent / "results"
GAP_MEDIAN_S, GAP_GOAL_S = 0.64, 1.0


def make_blob(cache: ArtifactCache, size: int) -> ArtifactRef:
    chunk = os.urandom(1 << 20)
    h = hashlib.sha256()
    tmp = cache.partial / "bench.part"
    with open(tmp, "wb") as f:
        left = size
        while left:
            part = chunk[: min(left, len(chunk))]
            f.write(part)
            h.update(part)
            left -= len(part)
    digest = format_digest(h.hexdigest())
    os.chmod(tmp, 0o444)
    os.replace(tmp, cache.blob_path(digest))
    return ArtifactRef(path="model/model.onnx", digest=digest, size=size, url="http://unused/")


def timed(runs: int, setup: Callable[[], None], action: Callable[[], object]) -> float:
    samples = []
    for _ in range(runs):
        setup()
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def measure(root: Path, size: int, runs: int, label: str) -> dict[str, float | str]:
    cache = ArtifactCache(root / "cache", max_bytes=1 << 40)
    ref = make_blob(cache, size)
    blob = cache.blob_path(ref.digest)
    dest = root / "module"
    figures: dict[str, float | str] = {"fs": label}

    def fresh() -> None:
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)

    def copy_and_fsync() -> None:
        cache.materialize([ref], dest)
        fd = os.open(dest / ref.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def read_write() -> None:
        src = os.open(blob, os.O_RDONLY)
        root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
        dst = open_inside(root_fd, ref.path, "bench")
        try:
            while chunk := os.read(src, 1 << 20):
                os.write(dst, chunk)
        finally:
            os.close(dst)
            os.close(root_fd)
            os.close(src)

    def link() -> None:
        (dest / "model").mkdir(exist_ok=True)
        os.link(blob, dest / ref.path)

    def how() -> str:
        fresh()
        src = os.open(blob, os.O_RDONLY)
        root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
        dst = open_inside(root_fd, ref.path, "bench")
        try:
            return copy_fd(src, dst, size)
        finally:
            os.close(dst)
            os.close(root_fd)
            os.close(src)

    with open(blob, "rb") as f:  # warm the page cache, as right after the download
        while f.read(1 << 24):
            pass
    figures["copy_method"] = how()
    figures["link_s"] = timed(runs, fresh, link)
    figures["copy_s"] = timed(runs, fresh, lambda: cache.materialize([ref], dest))
    figures["copy_fsync_s"] = timed(runs, fresh, copy_and_fsync)
    figures["read_write_s"] = timed(runs, fresh, read_write)
    fresh()
    cache.materialize([ref], dest)
    figures["sha256_s"] = timed(runs, lambda: None, lambda: cache.restore([ref], dest))
    shutil.rmtree(root, ignore_errors=True)
    return figures


def xfs_mount(workdir: Path, size: int) -> Path | None:
    """A loopback XFS file system with reflink, or None when this machine cannot make one."""
    if os.geteuid() != 0 or shutil.which("mkfs.xfs") is None:
        return None
    image, mountpoint = workdir / "xfs.img", workdir / "xfs"
    mountpoint.mkdir()
    with open(image, "wb") as f:
        f.truncate(max(3 * size + (512 << 20), 1 << 30))
    made = subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], capture_output=True)
    mounted = (
        made.returncode == 0 and subprocess.run(["mount", "-o", "loop", str(image), str(mountpoint)]).returncode == 0
    )
    if not mounted:
        print(f"no loopback XFS here: {made.stderr.decode().strip() or 'mount failed'}", file=sys.stderr)
        return None
    return mountpoint


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-mb", default="8,64,256,1024")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-xfs", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) << 20 for s in args.sizes_mb.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-materialize-", dir=os.environ.get("TMPDIR")) as tmp:
        work = Path(tmp)
        found = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "--target", tmp], capture_output=True, text=True)
        fs = found.stdout.strip() or "?"
        for size in sizes:
            rows.append({"size_mb": size >> 20, **measure(work / f"{size}", size, args.runs, fs)})
        mountpoint = None if args.no_xfs else xfs_mount(work, max(sizes))
        if mountpoint is not None:
            try:
                for size in sizes:
                    rows.append({"size_mb": size >> 20, **measure(mountpoint / f"{size}", size, args.runs, "xfs")})
            finally:
                subprocess.run(["umount", str(mountpoint)], check=False)
    headroom = GAP_GOAL_S - GAP_MEDIAN_S
    print(f"serving gap {GAP_MEDIAN_S:.2f} s median against {GAP_GOAL_S:.0f} s: a copy may take {headroom:.2f} s")
    head = f"{'fs':<8}{'size':>8}  {'link':>8}  {'copy (how)':>24}  {'+fsync':>8}  {'read/write':>10}  {'sha256':>8}"
    print(head)
    for r in rows:
        how = f"{r['copy_s'] * 1000:.1f} ms ({r['copy_method']})"
        print(
            f"{r['fs']:<8}{r['size_mb']:>5} MB  {r['link_s'] * 1000:>5.2f} ms  {how:>24}  "
            f"{r['copy_fsync_s'] * 1000:>5.0f} ms  {r['read_write_s'] * 1000:>7.1f} ms  {r['sha256_s'] * 1000:>5.0f} ms"
        )
    per_gb = [r for r in rows if r["copy_method"] != "reflink"]
    if per_gb:
        rate = statistics.median(r["size_mb"] / 1024 / float(r["copy_s"]) for r in per_gb)
        print(f"copy rate without reflink: {rate:.2f} GB/s -> {headroom * rate * 1024:.0f} MB fit in the headroom")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "agent_materialize.json").write_text(
        json.dumps(
            {"rows": rows, "gap_median_s": GAP_MEDIAN_S, "gap_goal_s": GAP_GOAL_S, "read_write": COPY_READ_WRITE},
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
