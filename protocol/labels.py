"""Labels and tags as operators type them: ``KEY=VALUE`` (device labels are what targets select on)."""

from __future__ import annotations

import argparse


def label_arg(text: str) -> tuple[str, str]:
    """argparse ``type=`` for a repeatable ``--label``/``--tag KEY=VALUE`` option."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value
