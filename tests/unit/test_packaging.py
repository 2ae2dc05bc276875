"""The installed layout: every package folder is listed under the edgefleet namespace, once."""

from __future__ import annotations

from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[2]
TOPS = ("protocol", "agent", "hub", "accelerators", "modules", "simulators")


def test_every_package_folder_is_installed_under_the_namespace() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {
        "edgefleet." + ".".join(init.parent.relative_to(REPO).parts)
        for top in TOPS
        for init in (REPO / top).rglob("__init__.py")
    }
    assert sorted(config["packages"]) == sorted(on_disk)
    assert config["package-dir"] == {f"edgefleet.{top}": top for top in TOPS}


def test_console_scripts_and_plugins_point_into_the_namespace() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    targets = [*project["scripts"].values(), *project["entry-points"]["edgefleet.fpga_drivers"].values()]
    assert targets and all(t.startswith("edgefleet.") for t in targets)
