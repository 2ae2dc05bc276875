"""edgefleet device agent: pulls signed desired state over MQTT and reconciles it into running modules.

Observe -> plan (pure, ``edgefleet.agent.plan``) -> execute (``edgefleet.agent.runner`` with
``edgefleet.agent.executors``) -> report, repeated by ``edgefleet.agent.daemon.Agent``. The agent never imports hub, modules or accelerators code: modules are
separate processes (or containers) and accelerator discovery runs as a subprocess.
"""

__version__ = "0.1.0"
