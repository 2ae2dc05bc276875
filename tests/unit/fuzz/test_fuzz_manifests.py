"""Fuzzing desired-state messages: verify_manifest and the agent's intake, as the reconcile loop runs it.

Properties: verification raises nothing but ManifestRejected; whatever it accepts is exactly a
manifest the hub key signed, for this device, with a newer generation; handing any message to a
running agent (``_on_message`` then ``_drain_inbox``, the loop's own path) never raises, and the
agent adopts only such a manifest.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from edgefleet.agent.daemon import Agent
from edgefleet.agent.settings import AgentSettings
from edgefleet.agent.state import AgentState
from edgefleet.protocol import (
    MAX_GENERATION,
    ArtifactRef,
    DeviceManifest,
    HubKey,
    ManifestRejected,
    ModuleSpec,
    TopicKind,
    canonical_json,
    sign_manifest,
    verify_manifest,
)
from tests.unit.fuzz.strategies import EXAMPLE_COUNTS, fuzz_settings, payloads

KEY = HubKey.generate()
OTHER = HubKey.generate()
DEVICE = "dev-1"
MODULES = [
    ModuleSpec(name="m", service="s"),
    ModuleSpec(
        name="d",
        service="s",
        runtime="docker",
        image="img:1",
        env={"A": "1"},
        artifacts=[ArtifactRef(path="model/x.onnx", digest="sha256:" + "a" * 64, size=3, url="http://h/x")],
    ),
]
SIGNED_BY_KEY: set[bytes] = set()  # canonical bodies the hub key signed: nothing else may be accepted


def _signed(generation: int, device: str, modules: list[ModuleSpec], key: HubKey) -> dict[str, Any]:
    wire = sign_manifest(DeviceManifest(device_id=device, generation=generation, modules=modules), key).to_wire()
    if key is KEY:
        SIGNED_BY_KEY.add(canonical_json(wire["manifest"]))
    return wire


signed_manifests = st.builds(
    _signed,
    st.one_of(st.integers(1, 50), st.integers(1, MAX_GENERATION), st.just(MAX_GENERATION)),
    st.sampled_from([DEVICE, DEVICE, "dev-2"]),
    st.lists(st.sampled_from(MODULES), max_size=2, unique_by=lambda m: m.name),
    st.sampled_from([KEY, KEY, KEY, OTHER]),
)
last_generations = st.one_of(st.integers(0, 50), st.integers(0, MAX_GENERATION))


def _check_genuine(manifest: DeviceManifest, payload: bytes, last_generation: int) -> None:
    assert manifest.device_id == DEVICE and last_generation < manifest.generation <= MAX_GENERATION
    assert canonical_json(json.loads(payload)["manifest"]) in SIGNED_BY_KEY


@EXAMPLE_COUNTS
def test_verify_manifest_accepts_only_what_the_hub_key_signed_for_this_device(examples: int) -> None:
    @fuzz_settings(examples)
    @given(payloads(signed_manifests), last_generations)
    def check(payload: bytes, last_generation: int) -> None:
        try:
            manifest = verify_manifest(payload, KEY.public_key_b64, device_id=DEVICE, last_generation=last_generation)
        except ManifestRejected as exc:
            event(f"rejected: {type(exc).__name__}")
            return
        event("accepted")
        _check_genuine(manifest, payload, last_generation)

    check()


@EXAMPLE_COUNTS
def test_no_desired_state_message_escapes_into_the_agents_loop(examples: int, tmp_path: Path) -> None:
    settings = AgentSettings(
        device_id=DEVICE,
        data_dir=tmp_path,
        hub_public_key=KEY.public_key_b64,
        module_command=[sys.executable, "-c", "pass"],
    )
    agent = Agent(settings)
    agent.intake.try_hub_key()

    @fuzz_settings(examples)
    @given(payloads(signed_manifests), last_generations)
    def check(payload: bytes, last_generation: int) -> None:
        agent.saved.replace(AgentState(generation=last_generation))
        agent._on_message(TopicKind.DESIRED, payload)  # as the MQTT thread hands it over
        agent._drain_inbox()  # as the loop takes it in: must not raise
        adopted = agent.state.generation != last_generation
        event("adopted" if adopted else "not adopted")
        if adopted:
            assert agent.desired is not None and agent.state.signed_manifest is not None
            _check_genuine(agent.desired, payload, last_generation)
            assert agent.intake.rejected is None
        agent.build_report(agent.last_plan)  # and whatever was refused can be reported

    check()
