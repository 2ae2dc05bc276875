from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgefleet.hub.errors import DigestMismatch, RangeNotSatisfiable
from edgefleet.hub.server.artifacts import BlobStore, ByteRange, parse_range
from edgefleet.protocol.digests import sha256_bytes


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-9", ByteRange(0, 9)),
        ("bytes=10-", ByteRange(10, 99)),
        ("bytes=-10", ByteRange(90, 99)),
        ("bytes=-500", ByteRange(0, 99)),
        ("bytes=90-500", ByteRange(90, 99)),
        ("bytes=0-1,5-6", None),  # multiple ranges: whole blob
        ("items=0-1", None),
        ("bytes=5-1", None),
        ("bytes=a-b", None),
    ],
)
def test_parse_range(header: str, expected: ByteRange | None) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=200-300", "bytes=-0"])
def test_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 100)


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for p in parts:
        yield p


def test_blob_store_verifies_digest_before_storing(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    data = b"hello world"
    digest = sha256_bytes(data)
    with pytest.raises(DigestMismatch) as info:
        asyncio.run(blobs.put_stream(digest, _chunks(b"hello", b" moon")))
    assert info.value.expected == digest and info.value.actual == sha256_bytes(b"hello moon")
    assert not blobs.exists(digest)
    assert list((tmp_path / "tmp").iterdir()) == []
    assert asyncio.run(blobs.put_stream(digest, _chunks(b"hello", b" world"))) == len(data)
    assert blobs.exists(digest)
    assert b"".join(blobs.read(digest)) == data
    assert b"".join(blobs.read(digest, ByteRange(6, 10))) == b"world"
    assert blobs.put_bytes(data) == digest
