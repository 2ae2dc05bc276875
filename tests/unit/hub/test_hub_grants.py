"""Download grants: bound to one device and one digest, made only with the hub's key."""

from __future__ import annotations

import stat
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefleet.hub.server.grants import BlobGrants, desired_digests

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
GRANTS = BlobGrants(b"k" * 32, "http://hub:8080/")


def test_a_grant_names_one_device_and_one_digest() -> None:
    url = GRANTS.url("dev-1", D1)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("http", "hub:8080", f"/api/v1/blobs/{D1}")
    query = parse_qs(parts.query)
    assert query["device"] == ["dev-1"] and len(query["grant"][0]) == 43  # 256 bits, unpadded base64url
    grant = query["grant"][0]
    assert GRANTS.valid("dev-1", D1, grant)
    assert not GRANTS.valid("dev-2", D1, grant)  # another device
    assert not GRANTS.valid("dev-1", D2, grant)  # another blob
    assert not GRANTS.valid("dev-1", D1, grant[:-1] + ("A" if grant[-1] != "A" else "B"))
    assert not BlobGrants(b"j" * 32, "http://hub:8080").valid("dev-1", D1, grant)  # another hub's key
    # no ambiguity between the two fields: "dev" + "-1..." is not "dev-" + "1..."
    assert GRANTS.grant("dev", "-1" + D1) != GRANTS.grant("dev-", "1" + D1)


@given(st.text(max_size=80), st.text(max_size=80), st.text(max_size=120))
def test_checking_any_strings_answers_false_never_raises(device: str, digest: str, grant: str) -> None:
    assert GRANTS.valid(device, digest, grant) is (grant == GRANTS.grant(device, digest))


def test_the_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "hub" / "blob_grant.key"
    first = BlobGrants.load_or_create(path, "http://hub")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = BlobGrants.load_or_create(path, "http://hub")
    assert again.grant("dev-1", D1) == first.grant("dev-1", D1)  # a restart keeps every URL valid
    path.unlink()
    assert BlobGrants.load_or_create(path, "http://hub").grant("dev-1", D1) != first.grant("dev-1", D1)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        BlobGrants(b"short", "http://hub")


def test_desired_digests_are_every_artifact_of_every_module() -> None:
    wire = [
        {"name": "a", "artifacts": [{"path": "model/m", "digest": D1}, {"path": "src/s", "digest": D2}]},
        {"name": "b", "artifacts": [{"path": "model/m", "digest": D1}]},
        {"name": "c"},
        {"name": "d", "artifacts": ["not a mapping"]},
    ]
    assert desired_digests(wire) == {D1, D2}
    assert desired_digests([]) == frozenset()
