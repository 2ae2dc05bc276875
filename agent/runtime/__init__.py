"""Module runtimes: where instances of modules live (processes now; containers in ``docker``)."""

from edgefleet.agent.runtime.base import Runtime, instance_id_for, read_status_file, tail_lines
from edgefleet.agent.runtime.process import ProcessRuntime

__all__ = ["ProcessRuntime", "Runtime", "instance_id_for", "read_status_file", "tail_lines"]
