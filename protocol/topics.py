"""MQTT topic names. Every topic string in edgefleet is built and parsed here, nowhere else."""

from __future__ import annotations

import re
from enum import Enum

TOPIC_ROOT = "edgefleet/v1/devices"
# Device ids double as MQTT client ids and topic levels: keep them free of wildcards and separators.
DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_DEVICE_ID_RE = re.compile(DEVICE_ID_PATTERN)


class TopicKind(str, Enum):
    DESIRED = "desired"  # hub -> device, QoS 1, retained, signed DeviceManifest
    REPORTED = "reported"  # device -> hub, QoS 1, retained, ReportedState
    PRESENCE = "presence"  # device -> hub, QoS 1, retained, LWT offline
    TELEMETRY = "telemetry"  # device -> hub, QoS 0
    COMMANDS = "commands"  # hub -> device, QoS 1, direct methods
    RESPONSES = "responses"  # device -> hub, QoS 1, direct-method responses


def check_device_id(device_id: str) -> str:
    # fullmatch: with re.match, "$" also matches before a final newline, and "dev-1\n" passed
    if not _DEVICE_ID_RE.fullmatch(device_id):
        raise ValueError(
            f"invalid device id {device_id!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    return device_id


def topic(device_id: str, kind: TopicKind) -> str:
    return f"{TOPIC_ROOT}/{check_device_id(device_id)}/{kind.value}"


def subscription(kind: TopicKind) -> str:
    """The wildcard subscription for one kind of topic across all devices (used by the hub)."""
    return f"{TOPIC_ROOT}/+/{kind.value}"


def parse_topic(name: str) -> tuple[str, TopicKind] | None:
    """Split a topic into (device id, kind); None for topics that are not ours."""
    prefix = TOPIC_ROOT + "/"
    if not name.startswith(prefix):
        return None
    parts = name[len(prefix) :].split("/")
    if len(parts) != 2 or not _DEVICE_ID_RE.fullmatch(parts[0]):
        return None
    try:
        return parts[0], TopicKind(parts[1])
    except ValueError:
        return None
