"""Installed as a user installs it: only ``edgefleet.*`` lands on the path, nothing generic.

The regular install is a real ``pip install`` of this checkout into a private folder; the editable
one is the development environment the tests run in (``make`` installs it with ``pip install -e``).
Both are imported from a directory outside the checkout, where the folders themselves are not on
``sys.path``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GENERIC = ("agent", "hub", "protocol", "modules", "accelerators", "simulators")
PROBE = """
import importlib, sys
import edgefleet.agent, edgefleet.hub, edgefleet.protocol, edgefleet.modules.scoring, edgefleet.simulators
from importlib import resources
assert resources.files("edgefleet.accelerators").joinpath("kernels", "qgemm.cl").is_file()
assert resources.files("edgefleet.modules.samples.digits").joinpath("digits_int8.onnx").is_file()
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        continue
    raise SystemExit(f"import {name} worked: a generic top-level package is installed")
print(edgefleet.agent.__file__)
"""


def _probe(cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *GENERIC], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_editable_install_imports_only_the_namespace(tmp_path: Path) -> None:
    where = _probe(tmp_path, _clean_env())
    assert Path(where).resolve() == (REPO / "agent" / "__init__.py").resolve()


def test_regular_install_imports_only_the_namespace(tmp_path: Path) -> None:
    target, source = tmp_path / "site", tmp_path / "source"
    # build from a copy: setuptools writes build/ and *.egg-info next to the sources
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__"))
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout + build.stderr
    assert sorted(p.name for p in target.iterdir() if not p.name.endswith((".dist-info", "bin"))) == ["edgefleet"]
    # the dependencies come from the test environment; edgefleet itself only from the target
    # (PYTHONPATH comes before site-packages, where the editable install's finder also offers edgefleet.*)
    where = _probe(tmp_path, {**_clean_env(), "PYTHONPATH": str(target)})
    assert Path(where).is_relative_to(target)
