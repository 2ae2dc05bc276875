"""Errors of the device agent, each saying by its type whether trying again can help.

Two axes: what failed (the tree) and how to recover (P or T). ``PermanentError`` (P) marks what
no retry can fix while the desired state stays the same: the plan runner and the background
fetcher do not try it again until the generation changes, and the module is reported Failed (or
Unschedulable) with the reason. Every other error is temporary (T): retried with capped
exponential back-off. Ask ``is_permanent``, never an isinstance list.

    AgentError                       anything the agent cannot do; the reconcile loop logs it and carries on
    ├── PermanentError            P  retrying cannot help: not before the generation changes
    │   └── SettingsError         P  settings or the pinned hub key are unusable (fatal at start)
    ├── HubKeyUnavailable         T  no hub key given, none pinned, and the hub cannot be asked yet
    ├── StateError                T  the state file on disk cannot be read or written
    ├── ArtifactError                an artifact cannot be put into the cache
    │   ├── ArtifactDownloadError T  the download failed (network, HTTP status)
    │   ├── ArtifactCorrupt       P  the bytes do not match the signed digest or size; never run
    │   ├── ArtifactPathRefused   P  a file would land outside its module directory (a symlink on the way)
    │   ├── TlsFilesMissing       P  the TLS certificate or key a deployment names is not on the device
    │   └── CacheFull             P  no room for the artifact: the cache cap or the disk (ENOSPC)
    └── RuntimeFailure            T  the module runtime could not create/start/stop/remove an instance
        ├── UnknownModule         T  a direct method or step names a module the runtime does not have
        ├── RuntimeUnavailable    P  the module's runtime (e.g. a Docker engine) is absent here: Unschedulable
        └── ResourceLimitError    P  the module's cpu/memory limits could not be set up (cgroup not writable)

The P classes inherit ``PermanentError`` besides their place in the tree (``class CacheFull(ArtifactError,
PermanentError)``), so handlers keep catching by subject (``except RuntimeFailure``) and recovery is
read off the same object. Running modules are never disturbed because of an error in this
hierarchy: the previous instance keeps serving and the failure is reported in the module's status.
"""

from __future__ import annotations


class AgentError(Exception):
    """Something the agent cannot do."""


class PermanentError(AgentError):
    """Retrying cannot help while the desired state is the same; tried again for a new generation."""


def is_permanent(error: BaseException) -> bool:
    """Whether ``error`` is of the permanent branch (anything else is temporary)."""
    return isinstance(error, PermanentError)


class SettingsError(PermanentError):
    """Settings (or the pinned hub key) are unusable; fix the named setting and restart."""


class HubKeyUnavailable(AgentError):
    """No hub key yet: not configured, not pinned, and the hub did not answer."""


class StateError(AgentError):
    """The agent's state file cannot be read or written."""


class ArtifactError(AgentError):
    """An artifact cannot be put into the cache."""


class ArtifactDownloadError(ArtifactError):
    """Downloading an artifact failed; retried with cool-off."""


class ArtifactCorrupt(ArtifactError, PermanentError):
    """The downloaded bytes do not match the digest (or size) in the signed manifest."""


class ArtifactPathRefused(ArtifactError, PermanentError):
    """A file of the module would be written outside its directory, or through a symlink or a file
    standing where a directory belongs; nothing is written there."""


class TlsFilesMissing(ArtifactError, PermanentError):
    """The certificate or key named by the deployment's ``tls`` is not in the agent's TLS directory."""


class CacheFull(ArtifactError, PermanentError):
    """The artifact does not fit: under the cache cap even after evicting every unreferenced blob,
    or the disk itself is full. The running version keeps serving."""


class RuntimeFailure(AgentError):
    """The module runtime could not carry out an operation on an instance."""


class UnknownModule(RuntimeFailure):
    """No instance of the named module exists on this device."""


class RuntimeUnavailable(RuntimeFailure, PermanentError):
    """The runtime a module asks for (``spec.runtime``) is absent or unreachable on this device.

    Nothing is wrong with the module itself: the device cannot schedule it (Unschedulable).
    """


class ResourceLimitError(RuntimeFailure, PermanentError):
    """The limits from ``spec.resources`` could not be applied to a module instance; the module is
    not started without them."""
