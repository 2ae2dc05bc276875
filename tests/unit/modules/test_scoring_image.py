"""deploy/docker/Dockerfile.scoring holds everything the scoring module imports, without building it
(building needs a registry): the edgefleet packages it COPYs, what its .dockerignore lets through,
and the distributions its ``pip install`` brings, compared with what a fresh interpreter loads when
it imports the server."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[3]
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile.scoring"
DOCKERIGNORE = REPO / "deploy" / "docker" / "Dockerfile.scoring.dockerignore"
# the server and the entry scripts' import (edgefleet.modules.scoring.load_model)
IMPORTS = "import edgefleet.modules.scoring.server, edgefleet.modules.scoring.context"


def imported_modules() -> list[str]:
    """What importing the scoring module loads, in a fresh interpreter (not this test process's)."""
    code = f"import json, sys; {IMPORTS}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120)
    names: list[str] = json.loads(out.stdout)
    return names


def dockerfile_lines() -> list[str]:
    """Instructions with their continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def copied_packages() -> dict[str, str]:
    """``COPY <folder>/ edgefleet/<package>/`` lines: folder -> package."""
    copies = {}
    for line in dockerfile_lines():
        if line.startswith("COPY "):
            match = re.fullmatch(r"COPY (\w+)/ edgefleet/(\w+)/", line)
            assert match, f"unexpected COPY in {DOCKERFILE.name}: {line!r}"
            copies[match[1]] = match[2]
    return copies


def pip_requirements() -> list[Requirement]:
    """The image's unconditional ``pip install`` (the WITH_OPENCL one is optional)."""
    (line,) = [ln for ln in dockerfile_lines() if ln.startswith("RUN pip install ")]
    first = line.removeprefix("RUN ").split("&&")[0]
    return [Requirement(arg) for arg in shlex.split(first)[2:]]


def with_dependencies(requirements: list[Requirement]) -> set[str]:
    """The distributions pip installs for ``requirements`` (as this environment resolves them)."""
    seen: set[str] = set()
    todo = [(r.name, frozenset(r.extras)) for r in requirements]
    while todo:
        name, extras = todo.pop()
        key = canonicalize_name(name)
        if key in seen:
            continue
        seen.add(key)
        for spec in metadata.requires(name) or []:
            req = Requirement(spec)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
                todo.append((req.name, frozenset(req.extras)))
    return seen


def test_the_image_copies_every_edgefleet_package_the_module_imports_and_only_those() -> None:
    copies = copied_packages()
    assert all(folder == package for folder, package in copies.items())  # the package-dir mapping
    needed = {name.split(".")[1] for name in imported_modules() if name.startswith("edgefleet.")}
    assert needed == {"accelerators", "modules", "protocol"}  # what this test is about: keep it honest
    assert set(copies.values()) == needed
    assert re.search(r"^\s*PYTHONPATH=/opt/edgefleet \\$", DOCKERFILE.read_text(), re.MULTILINE)


def test_the_build_context_lets_through_what_the_image_copies() -> None:
    allowed = {line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.startswith("!")}
    assert allowed == {f"!{folder}/" for folder in copied_packages()}


def test_pip_installs_every_distribution_the_module_imports() -> None:
    requirements = pip_requirements()
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert {str(r) for r in requirements} <= {str(Requirement(d)) for d in pyproject}  # the same pins
    installed = with_dependencies(requirements)
    providers = metadata.packages_distributions()
    tops = {name.split(".")[0] for name in imported_modules()}
    not_distributions = {"edgefleet", "cython_runtime"}  # ours; what Cython extensions register in sys.modules
    third_party = sorted(
        t for t in tops if t not in sys.stdlib_module_names and not t.startswith("_") and t not in not_distributions
    )
    missing = [t for t in third_party if not {canonicalize_name(d) for d in providers.get(t, [])} & installed]
    assert not missing, f"imported but not installed by {DOCKERFILE.name}: {missing}"
    assert "pydantic" in third_party  # edgefleet.protocol's models, the reason it is installed
