"""What a ``@rawhttp`` entry script gets and returns: ``AMLRequest``, ``AMLResponse`` and ``rawhttp``.

Azure ML's ``azureml.contrib.services.aml_request`` / ``aml_response`` give a script the server's
own request object (Flask's, in azureml-inference-server-http) and a response class. edgefleet
ships the same names without Flask or the cloud SDK (``compat/azureml``, importable as
``azureml.contrib.services`` only inside a scoring module that runs an entry script); the classes
live here so that the server recognises what a script returns.

``AMLRequest`` offers the werkzeug request surface scripts use: ``method``, ``headers``
(case-insensitive), ``args`` and ``form`` and ``files`` (multi-dicts; files are ``FileStorage``
with ``filename``, ``content_type``, ``stream``, ``read()``, ``save()``), ``get_data()``,
``data``, ``get_json()``, ``json``, ``is_json``, ``content_type``, ``mimetype``, ``path``,
``full_path``, ``url``, ``base_url``, ``host``, ``query_string``, ``environ``.
"""

from __future__ import annotations

import email.parser
import email.policy
import io
import json
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import parse_qsl, unquote

F = TypeVar("F", bound=Callable[..., Any])

RAWHTTP_MARK = "_edgefleet_rawhttp"
# azureml-inference-server-http records the decorator in a module global (whichever function it was
# applied to); edgefleet does the same and marks the function too
_requested = False


def rawhttp(func: F) -> F:
    """Decorate run(): it receives the ``AMLRequest`` (GET, POST and OPTIONS on /score) instead of the body."""
    global _requested
    _requested = True
    try:
        setattr(func, RAWHTTP_MARK, True)
    except (AttributeError, TypeError):  # a callable that takes no attributes: the global still says so
        pass
    return func


def rawhttp_requested(run: Callable[..., Any]) -> bool:
    return _requested or bool(getattr(run, RAWHTTP_MARK, False))


def reset_rawhttp() -> None:
    """Forget the decorator (a server loads one script; tests load several)."""
    global _requested
    _requested = False


class MultiDict(Mapping[str, Any]):
    """Several values per key, in order; ``d[key]`` and ``get`` give the first (werkzeug's semantics)."""

    def __init__(self, items: Iterable[tuple[str, Any]] = ()) -> None:
        self._items: dict[str, list[Any]] = {}
        for key, value in items:
            self._items.setdefault(key, []).append(value)

    def __getitem__(self, key: str) -> Any:
        return self._items[key][0]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def getlist(self, key: str) -> list[Any]:
        return list(self._items.get(key, []))

    def to_dict(self, flat: bool = True) -> dict[str, Any]:
        return {k: (v[0] if flat else list(v)) for k, v in self._items.items()}

    def items(self, multi: bool = False) -> Any:  # type: ignore[override]
        if multi:
            return [(k, v) for k, values in self._items.items() for v in values]
        return [(k, v[0]) for k, v in self._items.items()]

    def __repr__(self) -> str:
        return f"MultiDict({self.items(multi=True)!r})"


class Headers(Mapping[str, str]):
    """Request headers, looked up case-insensitively; iteration gives the names as WSGI does (``X-Tenant``)."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._by_lower = {k.lower(): (k.title(), v) for k, v in headers.items()}

    def __getitem__(self, key: str) -> str:
        return self._by_lower[key.lower()][1]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._by_lower

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._by_lower.values())

    def __len__(self) -> int:
        return len(self._by_lower)

    def __repr__(self) -> str:
        # no values: they may carry the scoring key
        return f"Headers({sorted(self)!r})"


class FileStorage:
    """One uploaded file of a multipart/form-data body."""

    def __init__(self, data: bytes, filename: str | None, name: str, content_type: str | None) -> None:
        self.stream: IO[bytes] = io.BytesIO(data)
        self.filename = filename
        self.name = name
        self.content_type = content_type
        self.mimetype = (content_type or "").split(";", 1)[0].strip().lower()

    def read(self, size: int = -1) -> bytes:
        return self.stream.read(size)

    def save(self, dst: str | Path | IO[bytes]) -> None:
        self.stream.seek(0)
        if isinstance(dst, (str, Path)):
            with open(dst, "wb") as out:
                shutil.copyfileobj(self.stream, out)
        else:
            shutil.copyfileobj(self.stream, dst)

    def __repr__(self) -> str:
        return f"<FileStorage {self.filename!r} ({self.content_type!r})>"


def _parse_multipart(content_type: str, body: bytes) -> tuple[MultiDict, MultiDict]:
    """(form fields, files) of a multipart/form-data body; a body that does not parse gives neither."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    fields: list[tuple[str, str]] = []
    files: list[tuple[str, FileStorage]] = []
    if not message.is_multipart():
        return MultiDict(), MultiDict()
    for part in message.iter_parts():  # type: ignore[attr-defined]
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or not name:
            continue
        decoded = part.get_payload(decode=True)
        payload = decoded if isinstance(decoded, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            files.append((name, FileStorage(payload, filename, name, part.get("content-type"))))
        else:
            charset = part.get_content_charset() or "utf-8"
            fields.append((name, payload.decode(charset, "replace")))
    return MultiDict(fields), MultiDict(files)


class AMLRequest:
    """The HTTP request handed to a ``@rawhttp`` run()."""

    def __init__(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        scheme: str = "http",
        server: tuple[str, int] | None = None,
    ) -> None:
        self.method = method.upper()
        path, _, query = target.partition("?")
        self.path = unquote(path) or "/"
        self.query_string = query.encode("latin-1")
        self.headers = Headers(headers)
        self.scheme = scheme
        self.args = MultiDict(parse_qsl(query, keep_blank_values=True))
        self._body = body
        self._form: tuple[MultiDict, MultiDict] | None = None
        default_host = f"{server[0]}:{server[1]}" if server else "localhost"
        self.host = self.headers.get("host", default_host)
        self.environ: dict[str, Any] = {
            "REQUEST_METHOD": self.method,
            "PATH_INFO": self.path,
            "QUERY_STRING": query,
            "wsgi.url_scheme": scheme,
            "HTTP_HOST": self.host,
        }

    # ---- the body --------------------------------------------------------------------------------------

    def get_data(self, cache: bool = True, as_text: bool = False, parse_form_data: bool = False) -> Any:
        return self._body.decode("utf-8", "replace") if as_text else self._body

    @property
    def data(self) -> bytes:
        return self._body

    @property
    def stream(self) -> IO[bytes]:
        return io.BytesIO(self._body)

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")

    @property
    def mimetype(self) -> str:
        return (self.content_type or "").split(";", 1)[0].strip().lower()

    @property
    def content_length(self) -> int | None:
        return len(self._body) if self._body or "content-length" in self.headers else None

    @property
    def is_json(self) -> bool:
        return is_json_mimetype(self.mimetype)

    def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        if not (force or self.is_json):
            if silent:
                return None
            raise ValueError("the request's Content-Type is not application/json")
        try:
            return json.loads(self._body)
        except ValueError:
            if silent:
                return None
            raise

    @property
    def json(self) -> Any:
        return self.get_json(silent=True)

    def _parsed_form(self) -> tuple[MultiDict, MultiDict]:
        if self._form is None:
            if self.mimetype == "multipart/form-data" and self.content_type:
                self._form = _parse_multipart(self.content_type, self._body)
            elif self.mimetype == "application/x-www-form-urlencoded":
                text = self._body.decode("utf-8", "replace")
                self._form = (MultiDict(parse_qsl(text, keep_blank_values=True)), MultiDict())
            else:
                self._form = (MultiDict(), MultiDict())
        return self._form

    @property
    def form(self) -> MultiDict:
        return self._parsed_form()[0]

    @property
    def files(self) -> MultiDict:
        return self._parsed_form()[1]

    @property
    def values(self) -> MultiDict:
        return MultiDict([*self.args.items(multi=True), *self.form.items(multi=True)])

    # ---- the URL ---------------------------------------------------------------------------------------

    @property
    def full_path(self) -> str:
        return f"{self.path}?{self.query_string.decode('latin-1')}"

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}{self.path}"

    @property
    def url(self) -> str:
        query = self.query_string.decode("latin-1")
        return self.base_url + (f"?{query}" if query else "")

    @property
    def host_url(self) -> str:
        return f"{self.scheme}://{self.host}/"

    @property
    def url_root(self) -> str:
        return self.host_url

    def __repr__(self) -> str:
        return f"<AMLRequest {self.method} {self.path}>"


def is_json_mimetype(mimetype: str) -> bool:
    """Flask's test: application/json or application/*+json."""
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


class AMLResponse:
    """What a run() may return to choose the status, the body and the headers.

    ``AMLResponse(message, status_code, response_headers={}, json_str=False, run_function_failed=False)``:
    ``json_str`` sends ``message`` as JSON; otherwise a str or bytes body (text/html, as Flask's
    default, unless the headers name a Content-Type); ``None`` sends ``{}``. A header value with
    commas is sent as one header (the reference server sends one line per comma-separated value).
    """

    def __init__(
        self,
        message: Any,
        status_code: int,
        response_headers: Mapping[str, str] | None = None,
        json_str: bool = False,
        run_function_failed: bool = False,
    ) -> None:
        headers = dict(response_headers or {})
        content_type = "text/html; charset=utf-8"
        if message is None:
            body, content_type = b"{}", "application/json"
        elif json_str:
            body, content_type = json.dumps(message).encode(), "application/json"
        elif isinstance(message, (bytes, bytearray, memoryview)):
            body = bytes(message)
        else:
            body = str(message).encode("utf-8")
        for key in [k for k in headers if k.lower() == "content-type"]:
            if not json_str or message is None:
                content_type = headers.pop(key)
            else:
                headers.pop(key)
        self.status_code = int(status_code)
        self.body = body
        self.content_type = content_type
        self.headers: dict[str, str] = {
            k: ", ".join(v.strip() for v in str(val).split(",")) for k, val in headers.items()
        }
        self.run_function_failed = run_function_failed

    @property
    def data(self) -> bytes:
        return self.body

    def get_data(self, as_text: bool = False) -> Any:
        return self.body.decode("utf-8", "replace") if as_text else self.body

    @property
    def status(self) -> str:
        return str(self.status_code)

    def __repr__(self) -> str:
        return f"<AMLResponse {self.status_code} {self.content_type}>"
