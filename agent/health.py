"""HTTP health probe of a module: GET <path> on its loopback port; 2xx within the timeout is healthy."""

from __future__ import annotations

import http.client


def probe_http(port: int, path: str, timeout_s: float, host: str = "127.0.0.1") -> tuple[bool, str]:
    """Return (healthy, why not). Never raises: every failure is a reason."""
    if port <= 0:
        return False, "module has no port"
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        resp.read(4096)
        if 200 <= resp.status < 300:
            return True, ""
        return False, f"GET {path} answered HTTP {resp.status}"
    except (TimeoutError, OSError, http.client.HTTPException) as exc:
        return False, f"GET http://{host}:{port}{path}: {exc or type(exc).__name__}"
    finally:
        conn.close()
