"""What step executors and direct methods act on, passed to them explicitly.

The daemon builds one ``AgentContext`` and owns it; executors (``executors``) and direct methods
(``methods``) get it as an argument instead of reaching into the daemon, so each can be read, and
tested, with only the collaborators it touches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgefleet.agent.cache import ArtifactCache, BackgroundFetcher
from edgefleet.agent.observed import Health
from edgefleet.agent.runtime import Runtime
from edgefleet.agent.settings import ModulesSettings
from edgefleet.agent.state import SavedState
from edgefleet.agent.telemetry import ServingGaps
from edgefleet.protocol.models import DeviceManifest


@dataclass
class AgentContext:
    device_id: str
    modules_dir: Path  # one directory per module and spec hash
    runtime: Runtime
    cache: ArtifactCache
    fetcher: BackgroundFetcher
    saved: SavedState  # the agent state (ports, restart records ...), saved on every change
    target: Callable[[], DeviceManifest | None]  # what the loop converges to now
    wake: Callable[[], None]  # run the loop again soon
    settings: ModulesSettings = field(default_factory=ModulesSettings)  # ports, stop grace
    health: dict[str, Health] = field(default_factory=dict)  # probe records by instance id
    gaps: ServingGaps = field(default_factory=ServingGaps)

    @property
    def tls_dir(self) -> Path:
        """``<data dir>/tls``: certificates and keys the device's owner provides for HTTPS modules."""
        return self.modules_dir.parent / "tls"
