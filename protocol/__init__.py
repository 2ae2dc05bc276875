"""The contracts at every seam: hub <-> agent (wire models, topic names, signing, digests) and
agent <-> module (``edgefleet.protocol.module``: status file, exit codes, flags, environment names).

Everything that crosses a process boundary is defined here, once. This package imports nothing
else of edgefleet's, so each side (and third-party tools) can depend on it alone.
"""

from edgefleet.protocol.canonical import canonical_json, content_hash
from edgefleet.protocol.digests import DIGEST_PREFIX, format_digest, parse_digest, sha256_bytes, sha256_file
from edgefleet.protocol.errors import ManifestRejected, ProtocolError, SignatureInvalid, StaleGeneration
from edgefleet.protocol.models import (
    AcceleratorInfo,
    AcceleratorPreference,
    ArtifactRef,
    DeviceCapabilities,
    DeviceManifest,
    DirectMethodRequest,
    DirectMethodResponse,
    HealthProbe,
    ModelRef,
    ModuleSpec,
    ModuleState,
    ModuleStatus,
    Presence,
    PresenceState,
    ReportedState,
    Resources,
    RestartPolicy,
    SignedManifest,
    Telemetry,
)
from edgefleet.protocol.module import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNSCHEDULABLE,
    ModuleOption,
    ModuleRunState,
    ModuleStatusFile,
    read_status_file,
    write_status_file,
)
from edgefleet.protocol.signing import HubKey, sign_manifest, verify_manifest
from edgefleet.protocol.topics import TOPIC_ROOT, TopicKind, parse_topic, topic

__all__ = [
    "DIGEST_PREFIX",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_UNSCHEDULABLE",
    "TOPIC_ROOT",
    "AcceleratorInfo",
    "AcceleratorPreference",
    "ArtifactRef",
    "DeviceCapabilities",
    "DeviceManifest",
    "DirectMethodRequest",
    "DirectMethodResponse",
    "HealthProbe",
    "HubKey",
    "ManifestRejected",
    "ModelRef",
    "ModuleOption",
    "ModuleRunState",
    "ModuleSpec",
    "ModuleState",
    "ModuleStatus",
    "ModuleStatusFile",
    "Presence",
    "PresenceState",
    "ProtocolError",
    "ReportedState",
    "Resources",
    "RestartPolicy",
    "SignatureInvalid",
    "SignedManifest",
    "StaleGeneration",
    "Telemetry",
    "TopicKind",
    "canonical_json",
    "content_hash",
    "format_digest",
    "parse_digest",
    "parse_topic",
    "read_status_file",
    "sha256_bytes",
    "sha256_file",
    "sign_manifest",
    "topic",
    "verify_manifest",
    "write_status_file",
]
