"""The one place a command's result becomes text: a readable table by default, JSON with ``-o json``.

Commands return a ``Result`` (their data and its readable form) and never look at the format, so
the JSON scripts read is always the data itself: the API's schemas in their API JSON names.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from pydantic_core import to_jsonable_python

Format = Literal["table", "json"]
FORMATS: tuple[Format, ...] = ("table", "json")
D = TypeVar("D")


@dataclass(frozen=True)
class Result(Generic[D]):
    """What a command produced.

    ``data`` is what ``-o json`` prints: a schema, a list of schemas or plain JSON values. A ``str``
    is printed as it is in either format (a device's answer that is not a JSON document).
    ``readable`` turns the data into the table form; ``status`` is the command's exit status (1 when
    a deployment it followed did not end Healthy, say), the result is printed either way.
    """

    data: D
    readable: Callable[[D], str]
    status: int = 0


def render(result: Result[Any], fmt: Format) -> str:
    if isinstance(result.data, str):
        return result.data
    return to_json(result.data) if fmt == "json" else result.readable(result.data)


def to_json(data: object) -> str:
    return json.dumps(to_jsonable_python(data, by_alias=True), indent=2)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell, two spaces apart; None prints as an empty cell."""
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)
