"""``python -m bench [NAME...] [-- ARGS]``: run every benchmark (``make bench``), or those whose name
starts with one of NAME (``python -m bench agent`` runs agent_figures only). ARGS after ``--`` go to
each selected bench (``python -m bench agent -- --soak-seconds 600``).

Each bench runs in its own process (they load different native libraries and must not share
memory figures), prints its table and writes bench/results/<name>.json.
"""

from __future__ import annotations

import subprocess
import sys
import time

BENCHES = [
    "accel_gemm",
    "accel_digits",
    "agent_figures",
    "agent_materialize",
    "broker_storm",
    "scoring_http",
    "serving",
]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        argv, extra = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        print("benches:", ", ".join(BENCHES))
        return 0
    selected = [b for b in BENCHES if not argv or any(b.startswith(a) for a in argv)]
    if not selected:
        print(f"no bench matches {argv}; benches: {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    failed = []
    for name in selected:
        print(f"\n=== bench.{name} ===", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, "-m", f"bench.{name}", *extra])
        print(f"=== bench.{name}: exit {code} in {time.monotonic() - started:.0f}s ===", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"benches that did not complete: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
