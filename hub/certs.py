"""Certificate fingerprints, the same on the hub and in the CLI (which loads no X.509 library for them)."""

from __future__ import annotations

import hashlib
import ssl


def fingerprint(pem: str) -> str:
    """``sha256:<hex>`` of the certificate's DER bytes: what ``openssl x509 -noout -fingerprint -sha256`` shows,
    there in upper case with colons. ValueError for text that is not one PEM certificate."""
    try:
        der = ssl.PEM_cert_to_DER_cert(pem.strip())
    except ValueError:
        raise ValueError("not a PEM certificate") from None
    return "sha256:" + hashlib.sha256(der).hexdigest()


def normalize_fingerprint(text: str) -> str:
    """``sha256:<64 lowercase hex>`` from that form, bare hex, or openssl's ``AB:CD:...``; ValueError otherwise."""
    value = text.strip().lower().removeprefix("sha256:").removeprefix("sha256 fingerprint=").replace(":", "")
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"fingerprint {text!r}: expected sha256:<64 hex digits>")
    return "sha256:" + value
