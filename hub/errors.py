"""Errors of the hub.

HubError                     base; the message says what, where and what to do
├── ConfigError              an inferenceconfig.json / deploymentconfig.json is invalid (names file and field)
├── SettingsError            the hub's own settings cannot be used (bad database URL, data dir)
├── Unauthenticated          no operator token, or an unknown, revoked or expired one   -> HTTP 401
├── Forbidden                a valid token whose role is too small for the route        -> HTTP 403
├── NotFound                 a model, service, device or blob does not exist            -> HTTP 404
├── Conflict                 the request contradicts stored state (model in use, exists) -> HTTP 409
├── InvalidRequest           the request itself is malformed                            -> HTTP 400
│   └── DigestMismatch       uploaded bytes do not hash to the digest they were sent under
├── RangeNotSatisfiable      an HTTP Range outside the blob                             -> HTTP 416
├── StoreError               the store refused an operation (e.g. a generation that does not increase)
├── MethodTimeout            a device did not answer a direct method in time            -> HTTP 504
└── ClientError              the CLI or client could not do it (bad local input, hub unreachable, odd answer)

Over HTTP an error travels as its status (HTTP_STATUS) and ``{"error": message}``; the client
raises the same class again with the server's message, so callers catch one hierarchy either side.
"""

from __future__ import annotations


class HubError(Exception):
    """Base of hub errors."""


class ConfigError(HubError):
    """A deployment or inference configuration is invalid; the message names the file and field."""


class SettingsError(HubError):
    """The hub's settings cannot be used."""


class Unauthenticated(HubError):
    """The request carries no operator token, or one this hub does not accept (unknown, revoked, expired)."""


class Forbidden(HubError):
    """The token is valid, but its role does not include the one the route needs."""


class NotFound(HubError):
    """The named model, service, device or blob does not exist."""


class Conflict(HubError):
    """The request contradicts stored state."""


class InvalidRequest(HubError):
    """The request is malformed."""


class DigestMismatch(InvalidRequest):
    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(
            f"uploaded bytes have digest {actual}, but were sent as {expected}; the upload was discarded "
            "(re-send the file, or compute the digest of the file you send)"
        )
        self.expected = expected
        self.actual = actual


class RangeNotSatisfiable(HubError):
    def __init__(self, header: str, size: int) -> None:
        super().__init__(f"Range {header!r} is not satisfiable for a blob of {size} bytes")
        self.size = size


class StoreError(HubError):
    """The store refused an operation."""


class MethodTimeout(HubError):
    """A device did not answer a direct method in time."""


class ClientError(HubError):
    """The CLI or its client could not complete a request (also: a hub answer no other class names, e.g. 500)."""


# The REST API's status for each error, most specific first (client.py maps statuses back).
HTTP_STATUS: tuple[tuple[type[HubError], int], ...] = (
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (RangeNotSatisfiable, 416),
    (MethodTimeout, 504),
    (InvalidRequest, 400),
    (HubError, 400),
)


def http_status(exc: HubError) -> int:
    return next(code for cls, code in HTTP_STATUS if isinstance(exc, cls))
