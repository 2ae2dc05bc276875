"""HTTP health probe of a module: GET <path> on its port; 2xx within the timeout is healthy.

A module serving HTTPS is probed over TLS without checking its certificate: the agent asks its
own module on the device's own address whether it is up, it does not authenticate it (the
certificate is for clients, and may name a host the device does not resolve). ``ssl`` is imported
only then, so an agent without HTTPS modules does not load it.
"""

from __future__ import annotations

import http.client

from edgefleet.protocol.module import url_host


def probe_http(port: int, path: str, timeout_s: float, host: str = "127.0.0.1", tls: bool = False) -> tuple[bool, str]:
    """Return (healthy, why not). Never raises: every failure is a reason."""
    if port <= 0:
        return False, "module has no port"
    scheme = "https" if tls else "http"
    conn: http.client.HTTPConnection
    if tls:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(host, port, timeout=timeout_s, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        resp.read(4096)
        if 200 <= resp.status < 300:
            return True, ""
        return False, f"GET {path} answered HTTP {resp.status}"
    except (TimeoutError, OSError, http.client.HTTPException) as exc:
        return False, f"GET {scheme}://{url_host(host)}:{port}{path}: {exc or type(exc).__name__}"
    finally:
        conn.close()
