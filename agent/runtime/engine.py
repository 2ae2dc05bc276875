"""Where the device's Docker engine is, found without the docker SDK and without connecting.

Apart from ``docker.py`` (which imports the SDK) so that the composite runtime can decide whether
to make the Docker runtime at all, and both can agree on the default URL, without importing each
other.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse


def default_docker_url() -> str:
    """The local engine, as the docker CLI finds it."""
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def engine_present(base_url: str) -> bool:
    """Cheap check with no connection: a unix socket file exists (any other URL: configured, so yes)."""
    parsed = urlparse(base_url)
    if parsed.scheme in ("unix", "http+unix"):
        return Path(parsed.path).exists()
    return True
