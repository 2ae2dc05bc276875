"""Names and model references as users write them: ``NAME:VERSION``, or ``NAME`` for its latest version.

Shared by the hub and the CLI, so the CLI can refuse a bad name or reference with the hub's own
words before it uploads anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgefleet.hub.errors import InvalidRequest
from edgefleet.protocol.models import MODULE_NAME_PATTERN, ModelRef

MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_NAME = MODEL_NAME_PATTERN.strip("^$")
_REF_RE = re.compile(rf"^(?P<name>{_NAME}):(?P<version>[1-9][0-9]*)$")
_QUERY_RE = re.compile(rf"^(?P<name>{_NAME})(?::(?P<version>[1-9][0-9]*))?$")


@dataclass(frozen=True)
class ModelQuery:
    """A model as a user names it: one version, or (``version`` None) the latest registered one."""

    name: str
    version: int | None = None

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}:{self.version}"


def parse_model_ref(text: str) -> ModelRef:
    """Exactly one version, ``NAME:VERSION`` (where "the latest" would be a risky guess, e.g. a delete)."""
    match = _REF_RE.match(text.strip())
    if not match:
        raise InvalidRequest(f"model reference {text!r}: expected NAME:VERSION, e.g. digits:1")
    return ModelRef(name=match["name"], version=int(match["version"]))


def parse_model_query(text: str) -> ModelQuery:
    """``NAME:VERSION``, or ``NAME`` for the latest version (as ``az ml`` reads ``-m digits``)."""
    match = _QUERY_RE.match(text.strip())
    if not match:
        raise InvalidRequest(
            f"model reference {text!r}: expected NAME or NAME:VERSION, e.g. digits (its latest version) or digits:1"
        )
    return ModelQuery(match["name"], int(match["version"]) if match["version"] else None)


def check_model_name(name: str) -> None:
    if not re.fullmatch(MODEL_NAME_PATTERN, name):
        raise InvalidRequest(
            f"model name {name!r}: use 1-64 letters, digits, '.', '_' and '-', starting with a letter or digit"
        )


def check_service_name(name: str) -> None:
    if not re.fullmatch(MODULE_NAME_PATTERN, name):
        raise InvalidRequest(
            f"service name {name!r}: use 1-63 lowercase letters, digits and '-', starting and ending "
            "with a letter or digit (it names the module on every device)"
        )
