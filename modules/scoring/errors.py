"""Errors of the scoring server.

ScoringError                    base
├── ConfigError                 bad command line / environment / model directory (server exits 1)
├── EntryScriptError            the entry script cannot be loaded or its init() raised (exit 1, Failed)
└── RequestError                a request the server answers with an error status; carries ``status``
    ├── BadRequest              400: malformed body, unknown input name, wrong shape or datatype
    ├── NotFound                404: unknown model or route
    ├── PayloadTooLarge         413: body above --max-request-bytes
    ├── LengthRequired          411: a chunked body (send Content-Length)
    ├── NotReady                503: the model is not loaded (yet)
    └── ScoringFailed           500: the entry script's run() or the model raised

Request errors are answered as JSON ``{"error": message}``; the message says what was wrong and
where (the input name, the field) so a client can fix the request.
"""

from __future__ import annotations


class ScoringError(Exception):
    """Base of scoring server errors."""


class ConfigError(ScoringError):
    """The server was started with an invalid configuration."""


class EntryScriptError(ScoringError):
    """The entry script is missing, does not define init()/run(), or init() raised."""


class RequestError(ScoringError):
    status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(RequestError):
    status = 400


class NotFound(RequestError):
    status = 404


class PayloadTooLarge(RequestError):
    status = 413


class LengthRequired(RequestError):
    status = 411


class NotReady(RequestError):
    status = 503


class ScoringFailed(RequestError):
    status = 500
