"""Plain-text output for the CLI: aligned tables and short value formatting (no library code prints)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def dump_json(obj: Any, out: TextIO = sys.stdout) -> None:
    out.write(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def short_time(iso: str | None) -> str:
    return (iso or "")[:19].replace("T", " ")


def tags_text(tags: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(tags.items()))


def device_state_rows(service: dict[str, Any]) -> list[list[Any]]:
    return [
        [
            d["device"],
            d["state"],
            "yes" if d.get("online") else ("no" if d.get("online") is False else "?"),
            d.get("generation") if d.get("generation") is not None else "-",
            d.get("desiredGeneration") if d.get("desiredGeneration") is not None else "-",
            d.get("endpoint") or "",
            d.get("backend") or "",
            d.get("message") or "",
        ]
        for d in service.get("devices", [])
    ]


DEVICE_STATE_HEADERS = ["DEVICE", "STATE", "ONLINE", "GEN", "DESIRED", "ENDPOINT", "BACKEND", "MESSAGE"]
