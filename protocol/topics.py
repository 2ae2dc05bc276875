"""MQTT topic names. Every topic string in edgefleet is built and parsed here, nowhere else.

Also who may use which topic: a device reads ``DEVICE_READS`` and writes ``DEVICE_WRITES`` of its
own id only, the hub (MQTT identity ``HUB_IDENTITY``) everything under ``TOPIC_ROOT``. The broker
ACL is generated from these (hub/server/broker_config.py), so the rules and the names cannot drift.
"""

from __future__ import annotations

import re
from enum import Enum

TOPIC_ROOT = "edgefleet/v1/devices"
# Device ids double as MQTT client ids and topic levels: keep them free of wildcards and separators.
DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_DEVICE_ID_RE = re.compile(DEVICE_ID_PATTERN)
# The hub's own MQTT identity (certificate subject / username). Broker ACLs give it every topic, so no
# device may ever be registered, or connect, under this id.
HUB_IDENTITY = "edgefleet-hub"


class TopicKind(str, Enum):
    DESIRED = "desired"  # hub -> device, QoS 1, retained, signed DeviceManifest
    REPORTED = "reported"  # device -> hub, QoS 1, retained, ReportedState
    PRESENCE = "presence"  # device -> hub, QoS 1, retained, LWT offline
    TELEMETRY = "telemetry"  # device -> hub, QoS 0
    COMMANDS = "commands"  # hub -> device, QoS 1, direct methods
    RESPONSES = "responses"  # device -> hub, QoS 1, direct-method responses


# Direction of each kind, from the device's side (the broker ACL grants exactly these).
DEVICE_READS: tuple[TopicKind, ...] = (TopicKind.DESIRED, TopicKind.COMMANDS)
DEVICE_WRITES: tuple[TopicKind, ...] = (
    TopicKind.REPORTED,
    TopicKind.PRESENCE,
    TopicKind.TELEMETRY,
    TopicKind.RESPONSES,
)


def check_device_id(device_id: str) -> str:
    # fullmatch: with re.match, "$" also matches before a final newline, and "dev-1\n" passed
    if not _DEVICE_ID_RE.fullmatch(device_id):
        raise ValueError(
            f"invalid device id {device_id!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    if device_id.lower() == HUB_IDENTITY:
        raise ValueError(f"invalid device id {device_id!r}: reserved for the hub's own MQTT identity")
    return device_id


def topic(device_id: str, kind: TopicKind) -> str:
    return f"{TOPIC_ROOT}/{check_device_id(device_id)}/{kind.value}"


def subscription(kind: TopicKind) -> str:
    """The wildcard subscription for one kind of topic across all devices (used by the hub)."""
    return topic_pattern(kind, "+")


def topic_pattern(kind: TopicKind, device_level: str) -> str:
    """``kind``'s topic with a placeholder for the device level: ``+`` (a subscription), or a broker's
    ACL substitution such as Mosquitto's ``%u`` or EMQX's ``${username}``."""
    if not device_level or "/" in device_level or "#" in device_level:
        raise ValueError(f"device level {device_level!r}: one topic level without '/' or '#'")
    return f"{TOPIC_ROOT}/{device_level}/{kind.value}"


def all_topics() -> str:
    """Every edgefleet topic (the hub's grant in the broker ACL)."""
    return f"{TOPIC_ROOT}/#"


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
