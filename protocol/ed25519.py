"""ed25519 signature verification with the smallest footprint the process allows.

An agent verifies a manifest a few times a day and must stay small (its idle-memory goal is
40 MB). The process already has OpenSSL's libcrypto mapped (Python's ``ssl``, needed for
``mqtts``/``https``), so verification calls its EVP API through ``ctypes`` — the same vetted
implementation, no extra resident memory. Where that library is missing or lacks Ed25519 (not
OpenSSL 1.1.1+), the ``cryptography`` package verifies instead (about 8 MB more resident).
Signing (hub side) always uses ``cryptography``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import ssl  # noqa: F401 - makes sure the process's libcrypto is the one ssl already uses

_NID_ED25519 = 1087  # EVP_PKEY_ED25519 (OpenSSL obj_mac.h)


class _OpenSSL:
    def __init__(self, lib: ctypes.CDLL) -> None:
        vp, sz, cp = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p
        self.new_key = lib.EVP_PKEY_new_raw_public_key
        self.new_key.argtypes, self.new_key.restype = [ctypes.c_int, vp, cp, sz], vp
        self.free_key = lib.EVP_PKEY_free
        self.free_key.argtypes, self.free_key.restype = [vp], None
        self.new_ctx = lib.EVP_MD_CTX_new
        self.new_ctx.argtypes, self.new_ctx.restype = [], vp
        self.free_ctx = lib.EVP_MD_CTX_free
        self.free_ctx.argtypes, self.free_ctx.restype = [vp], None
        self.init = lib.EVP_DigestVerifyInit
        self.init.argtypes, self.init.restype = [vp, vp, vp, vp, vp], ctypes.c_int
        self.verify = lib.EVP_DigestVerify
        self.verify.argtypes, self.verify.restype = [vp, cp, sz, cp, sz], ctypes.c_int
        self.clear_errors = lib.ERR_clear_error
        self.clear_errors.argtypes, self.clear_errors.restype = [], None

    def verify_ed25519(self, public_raw: bytes, signature: bytes, data: bytes) -> bool:
        key = self.new_key(_NID_ED25519, None, public_raw, len(public_raw))
        if not key:
            self.clear_errors()
            return False
        ctx = self.new_ctx()
        try:
            if not ctx or self.init(ctx, None, None, None, key) != 1:
                return False
            return bool(self.verify(ctx, signature, len(signature), data, len(data)) == 1)
        finally:
            self.free_ctx(ctx)
            self.free_key(key)
            self.clear_errors()  # a failed check leaves errors queued; ssl must not see them later


@functools.cache
def _openssl() -> _OpenSSL | None:
    name = ctypes.util.find_library("crypto")
    if not name:
        return None
    try:
        return _OpenSSL(ctypes.CDLL(name))
    except (OSError, AttributeError):  # no library, or one without the EVP raw-key API (< 1.1.1)
        return None


def verify_ed25519(public_raw: bytes, signature: bytes, data: bytes) -> bool:
    """True when ``signature`` is a valid ed25519 signature of ``data`` by ``public_raw``."""
    openssl = _openssl()
    if openssl is not None:
        return openssl.verify_ed25519(public_raw, signature, data)
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True
