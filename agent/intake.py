"""Manifest intake: which desired-state messages the agent believes, and the hub key it checks them with.

A message is accepted only when it verifies against the hub key, is addressed to this device and
has a newer generation than the last accepted one; anything else is rejected with the reason (and
reported), never disturbing what runs. The retained copy of what already runs, re-delivered on
every (re)subscribe, is ignored silently. Until a hub key is known (from the bootstrap bundle or
configured, pinned, or fetched once and pinned against a fingerprint: hubkey.py) only the newest
message is kept, and the key is asked for again with capped exponential back-off.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefleet.agent.errors import HubKeyUnavailable
from edgefleet.agent.hubkey import announced_key, pin_announced, pin_rotated, resolve_hub_key
from edgefleet.agent.hubtls import HubTrust
from edgefleet.agent.state import AgentState
from edgefleet.protocol.canonical import canonical_json
from edgefleet.protocol.errors import ManifestRejected, StaleGeneration
from edgefleet.protocol.models import DeviceManifest
from edgefleet.protocol.signing import key_id, public_key_raw, verify_manifest

log = logging.getLogger(__name__)

KEY_RETRY_MAX_S = 60.0


@dataclass(frozen=True)
class Accepted:
    manifest: DeviceManifest
    signed: dict[str, Any]  # as received: re-verifiable

    def applied_to(self, state: AgentState) -> AgentState:
        """The state with this generation accepted: its rollout clock and any rollback start over."""
        return state.model_copy(
            update={
                "generation": self.manifest.generation,
                "signed_manifest": self.signed,
                "applying_since": None,
                "rollback": None,
            }
        )


class ManifestIntake:
    """Holds the manifests the agent believes: the desired one and (parsed once) last-known-good."""

    def __init__(
        self,
        device_id: str,
        data_dir: Path,
        configured_key: str | None,
        hub_url: str,
        state: AgentState,
        key_fingerprint: str | None = None,
        hub_trust: HubTrust | None = None,
    ) -> None:
        self.device_id = device_id
        self._hub_trust = hub_trust
        self._data_dir = data_dir
        self._configured_key = configured_key
        self._hub_url = hub_url
        self._key_fingerprint = key_fingerprint
        self.hub_key: str | None = None
        self.next_hub_key: str | None = None  # announced by a manifest signed with hub_key (rotation)
        self.rejected: str | None = None  # why the last manifest was refused (reported), if it was
        signed = state.signed_manifest  # as accepted before a restart: converge without the broker
        self.desired: DeviceManifest | None = DeviceManifest.model_validate(signed["manifest"]) if signed else None
        self._known_good: tuple[dict[str, Any], DeviceManifest] | None = None
        self._pending: bytes | None = None
        self._key_failures = 0
        self.key_retry_at = 0.0

    def last_known_good(self, state: AgentState) -> DeviceManifest | None:
        raw = state.last_known_good_manifest
        if raw is None:
            return None
        if self._known_good is None or self._known_good[0] is not raw:  # parse once per stored manifest
            self._known_good = (raw, DeviceManifest.model_validate(raw["manifest"]))
        return self._known_good[1]

    def accept(self, payload: bytes, state: AgentState) -> AgentState | None:
        """The state with ``payload``'s generation accepted (now ``desired``), or None: not accepted."""
        accepted = self.judge(payload, state)
        if accepted is None:
            return None
        self.desired = accepted.manifest
        return accepted.applied_to(state)

    def offer(self, payload: bytes) -> None:
        """A desired-state message arrived: only the newest one matters."""
        self._pending = payload

    def take(self) -> bytes | None:
        """The newest message, once there is a key to check it with."""
        if self._pending is None or self.hub_key is None:
            return None
        payload, self._pending = self._pending, None
        return payload

    def next_key_retry_at(self) -> float | None:
        return self.key_retry_at if self.hub_key is None else None

    def try_hub_key(self, now: float | None = None) -> None:
        """Resolve the hub key unless known, or its retry is not due yet."""
        if self.hub_key is not None or (now is not None and now < self.key_retry_at):
            return
        try:
            self.hub_key = resolve_hub_key(
                self._configured_key, self._data_dir, self._hub_url, timeout_s=5.0, fingerprint=self._key_fingerprint,
                trust=self._hub_trust,
            )  # fmt: skip
            self.next_hub_key = announced_key(self._data_dir, self.hub_key)
        except HubKeyUnavailable as exc:
            self._key_failures += 1
            delay = min(2.0**self._key_failures, KEY_RETRY_MAX_S)
            self.key_retry_at = time.time() + delay
            log.warning("%s; trying again in %.0fs (manifests wait until then)", exc, delay)

    def judge(self, payload: bytes, state: AgentState) -> Accepted | None:
        """Verify a desired-state message against ``state`` (the last accepted generation)."""
        if not payload:
            log.info("desired state was cleared on the broker; keeping generation %d", state.generation)
            return None
        assert self.hub_key is not None
        if state.signed_manifest is not None and _same(payload, state.signed_manifest):
            # the retained copy of what we already run, re-delivered on (re)subscribe: verified when
            # accepted, so no need to verify it again (and to load cryptography for it)
            return None
        signing_key = self._signing_key(payload)
        try:
            manifest = verify_manifest(payload, signing_key, device_id=self.device_id, last_generation=state.generation)
        except StaleGeneration as exc:
            if exc.generation == state.generation and _same(payload, state.signed_manifest):
                return None  # the retained copy of what we already run, re-delivered on (re)subscribe
            self._reject(str(exc))
            return None
        except ManifestRejected as exc:
            self._reject(str(exc))
            return None
        log.info("accepted manifest generation %d (%d module(s))", manifest.generation, len(manifest.modules))
        self.rejected = None
        self._follow_rotation(signing_key, manifest)
        return Accepted(manifest, json.loads(payload))

    def _signing_key(self, payload: bytes) -> str:
        """The pinned key, or the announced next one when the manifest names that one's key id."""
        assert self.hub_key is not None
        if self.next_hub_key is None:
            return self.hub_key
        try:
            named = json.loads(payload).get("keyId")
        except (ValueError, AttributeError):
            return self.hub_key
        return self.next_hub_key if named == key_id(public_key_raw(self.next_hub_key)) else self.hub_key

    def _follow_rotation(self, signing_key: str, manifest: DeviceManifest) -> None:
        assert self.hub_key is not None
        if signing_key != self.hub_key:  # signed with the announced key: it is the hub key from now on
            pin_rotated(self._data_dir, self.hub_key, signing_key, manifest.generation)
            self.hub_key, self.next_hub_key = signing_key, None
        announced = manifest.next_hub_key
        if announced and announced not in (self.hub_key, self.next_hub_key):
            try:
                pin_announced(self._data_dir, self.hub_key, announced, manifest.generation)
            except ValueError as exc:
                log.warning("generation %d announces an unusable next hub key (%s); ignored", manifest.generation, exc)
                return
            self.next_hub_key = announced

    def _reject(self, why: str) -> None:
        log.warning("rejected desired state: %s", why)
        self.rejected = why


def _same(payload: bytes, signed: dict[str, Any] | None) -> bool:
    try:
        return canonical_json(json.loads(payload)) == canonical_json(signed)
    except ValueError:
        return False
