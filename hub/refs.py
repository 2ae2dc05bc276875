"""Model references as users write them: ``NAME:VERSION``."""

from __future__ import annotations

import re

from edgefleet.hub.errors import InvalidRequest
from edgefleet.protocol.models import ModelRef

_REF_RE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,63}):(?P<version>[1-9][0-9]*)$")


def parse_model_ref(text: str) -> ModelRef:
    match = _REF_RE.match(text.strip())
    if not match:
        raise InvalidRequest(f"model reference {text!r}: expected NAME:VERSION, e.g. digits:1")
    return ModelRef(name=match["name"], version=int(match["version"]))
