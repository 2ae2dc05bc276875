"""Errors of the device agent.

    AgentError                    anything the agent cannot do; the reconcile loop logs it and carries on
    ├── ConfigError               settings or the pinned hub key are unusable (fatal at start)
    ├── HubKeyUnavailable         no hub key given, none pinned, and the hub cannot be asked yet
    ├── StateError                the state file on disk cannot be read or written
    ├── ArtifactError             an artifact cannot be put into the cache
    │   ├── ArtifactDownloadError the download failed (network, HTTP status); retried with cool-off
    │   ├── ArtifactCorrupt       the bytes do not match the signed digest or size; never run
    │   └── CacheFull             no room for the artifact: the cache cap or the disk (ENOSPC)
    └── RuntimeFailure            the module runtime could not create/start/stop/remove an instance
        ├── UnknownModule         a direct method or step names a module the runtime does not have
        ├── RuntimeUnavailable    the module's runtime (e.g. a Docker engine) is absent or unreachable here
        └── ResourceLimitError    the module's cpu/memory limits could not be set up (cgroup not writable)

Running modules are never disturbed because of an error in this hierarchy: the previous
instance keeps serving and the failure is reported in the module's status.
"""

from __future__ import annotations


class AgentError(Exception):
    """Something the agent cannot do."""


class ConfigError(AgentError):
    """Settings (or the pinned hub key) are unusable; fix the named setting and restart."""


class HubKeyUnavailable(AgentError):
    """No hub key yet: not configured, not pinned, and the hub did not answer."""


class StateError(AgentError):
    """The agent's state file cannot be read or written."""


class ArtifactError(AgentError):
    """An artifact cannot be put into the cache."""


class ArtifactDownloadError(ArtifactError):
    """Downloading an artifact failed; the step is retried with cool-off."""


class ArtifactCorrupt(ArtifactError):
    """The downloaded bytes do not match the digest (or size) in the signed manifest."""


class CacheFull(ArtifactError):
    """The artifact does not fit: under ``cache_max_bytes`` even after evicting every unreferenced
    blob, or the disk itself is full. The running version keeps serving."""


class RuntimeFailure(AgentError):
    """The module runtime could not carry out an operation on an instance."""


class UnknownModule(RuntimeFailure):
    """No instance of the named module exists on this device."""


class RuntimeUnavailable(RuntimeFailure):
    """The runtime a module asks for (``spec.runtime``) is absent or unreachable on this device.

    Nothing is wrong with the module itself: the device cannot schedule it (Unschedulable).
    """


class ResourceLimitError(RuntimeFailure):
    """The limits from ``spec.resources`` could not be applied to a module instance; the module is
    not started without them."""
