"""What a module spec may name: files inside its module directory only, and keys that never leak."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from edgefleet.protocol import DeviceManifest, HubKey, ManifestRejected, ModuleSpec, sign_manifest, verify_manifest
from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.models import ScoringAuth

DIGEST = "sha256:" + "ab" * 32
PRIMARY, SECONDARY = "p" * 20 + "-primary", "s" * 20 + "-secondary"


def _artifact(path: str) -> dict[str, Any]:
    return {"path": path, "digest": DIGEST, "size": 3, "url": "http://hub/b"}


def _spec(**fields: Any) -> dict[str, Any]:
    return {"name": "m", "service": "m", "artifacts": [_artifact("src/score.py"), _artifact("model/m.onnx")], **fields}


@pytest.mark.parametrize(
    ("entry_script", "fragment"),
    [
        ("/etc/passwd", "relative path"),
        ("../model/m.onnx", "relative path"),
        ("sub/../../x.py", "relative path"),
        ("./score.py", "relative path"),
        ("a\\b.py", "relative path"),
        ("score.py\x00.txt", "relative path"),
        ("", "relative path"),
        ("other.py", "not one of its src/ artifacts"),
    ],
)
def test_an_entry_script_outside_the_source_files_is_refused(entry_script: str, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        ModuleSpec.model_validate(_spec(entryScript=entry_script))


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/etc/cron.d/x", "relative path"),
        ("model/../../x", "relative path"),
        ("model//x", "relative path"),
        ("instance.json", "under model/ or src/"),  # the agent's record of the instance
        ("run/status.json", "under model/ or src/"),  # the module's status file
        ("tls/key.pem", "under model/ or src/"),
        ("model", "under model/ or src/"),
    ],
)
def test_an_artifact_outside_model_or_src_is_refused(path: str, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        ModuleSpec.model_validate(_spec(artifacts=[_artifact(path)]))


def test_an_artifact_that_is_another_ones_directory_is_refused() -> None:
    with pytest.raises(ValidationError, match="also a directory of another artifact"):
        ModuleSpec.model_validate(_spec(artifacts=[_artifact("model/a"), _artifact("model/a/b")]))


def test_a_spec_inside_its_directory_is_accepted() -> None:
    spec = ModuleSpec.model_validate(_spec(entryScript="score.py", listenAddress="0.0.0.0"))
    assert spec.entry_script == "score.py" and spec.listen_address == "0.0.0.0"
    with pytest.raises(ValidationError, match="listenAddress must be an IP address"):
        ModuleSpec.model_validate(_spec(listenAddress="example.org"))


def test_scoring_keys_are_on_the_wire_but_never_in_repr_or_errors() -> None:
    spec = ModuleSpec.model_validate(_spec(auth={"primaryKey": PRIMARY, "secondaryKey": SECONDARY}))
    assert spec.auth is not None and spec.auth.keys() == (PRIMARY, SECONDARY)
    assert spec.to_wire()["auth"] == {"primaryKey": PRIMARY, "secondaryKey": SECONDARY}
    assert ModuleSpec.model_validate(spec.to_wire()) == spec
    assert PRIMARY not in repr(spec) and PRIMARY not in str(spec)
    rotated = ModuleSpec.model_validate(_spec(auth={"primaryKey": "n" * 30, "secondaryKey": SECONDARY}))
    assert rotated.spec_hash() != spec.spec_hash()  # a new key is a new spec: it rolls out
    with pytest.raises(ValidationError) as err:  # a model-level error must not quote the input
        ModuleSpec.model_validate(_spec(entryScript="nope.py", auth={"primaryKey": PRIMARY, "secondaryKey": SECONDARY}))
    assert PRIMARY not in str(err.value)
    for bad in ({"primaryKey": "short", "secondaryKey": SECONDARY}, {"primaryKey": PRIMARY, "secondaryKey": PRIMARY}):
        with pytest.raises(ValidationError) as err:
            ScoringAuth.model_validate(bad)
        assert PRIMARY not in str(err.value) and "short" not in str(err.value)


def test_a_rejected_manifest_names_the_problem_without_quoting_keys() -> None:
    key = HubKey.generate()
    good = DeviceManifest(
        device_id="dev-1",
        generation=2,
        modules=[ModuleSpec.model_validate(_spec(auth={"primaryKey": PRIMARY, "secondaryKey": SECONDARY}))],
    )
    body = good.to_wire()
    body["modules"][0]["entryScript"] = "/etc/shadow"  # signed by the hub, yet pointing outside
    signed = sign_manifest(good, key).to_wire()
    signed["manifest"] = body
    signed["signature"] = key.sign(canonical_json(body))
    with pytest.raises(ManifestRejected) as err:
        verify_manifest(signed, key.public_key_b64, device_id="dev-1", last_generation=1)
    message = str(err.value)
    assert "modules.0.entryScript: entryScript must be a relative path" in message and "/etc/shadow" in message
    assert PRIMARY not in message and SECONDARY not in message


def test_where_artifacts_download_from_is_not_part_of_the_spec_hash() -> None:
    spec = ModuleSpec.model_validate(_spec())
    moved = [{**a, "url": "https://hub.example/api/v1/blobs/x?device=d&grant=g"} for a in _spec()["artifacts"]]
    assert ModuleSpec.model_validate(_spec(artifacts=moved)).spec_hash() == spec.spec_hash()  # nothing restarts
    other = [{**a, "digest": "sha256:" + "cd" * 32} for a in _spec()["artifacts"]]
    assert ModuleSpec.model_validate(_spec(artifacts=other)).spec_hash() != spec.spec_hash()  # new bytes: it does
    renamed = [_artifact("src/score.py"), _artifact("model/n.onnx")]
    assert ModuleSpec.model_validate(_spec(artifacts=renamed)).spec_hash() != spec.spec_hash()
