"""The MQTT side of the hub.

- ingests registered devices' reported state, presence, telemetry and direct-method responses into
  the store; a device that is not registered, or is revoked, is not listened to (logged once, nothing
  stored), and a report's labels are never the device's (operators set labels);
- believes no device about generations it was never issued: once the hub has issued a device a
  manifest and believed a report of it, a report of a generation past the last one issued is refused
  (not stored; logged once per device and claim: forged, or the database restored from an older
  backup). Before that, a device ahead of the hub is caught up (generations.py);
- answers a device that reports it rejected a manifest, and a generation below the current one (it
  never took the current manifest: e.g. garbage left retained over it on its desired topic), by
  publishing the stored manifest again, retained, with a per-device back-off so a device that
  rejects the real manifest too is not flooded (republish.py);
- connects as the hub's own identity (client certificate or username/password, over TLS for
  ``mqtts://``), so a locked-down broker gives it every edgefleet topic and devices only their own;
- reconciles: renders every device's modules and, when they differ from the manifest last
  published to it (or the key it is signed with, or announces, changed: rotation.py), signs a new
  manifest with the next generation and publishes it retained, QoS 1; whatever one device's data
  makes fail is logged and skipped, and the pass goes on with the other devices;
- republishes every stored manifest after (re)connecting, so a broker that lost its retained
  messages gets them back;
- calls direct methods: a call signed for one device with the next sequence number on its
  ``commands`` topic; a response counts only from that device's own ``responses`` topic, with the
  pending correlation id and the digest of the very call published (anything else is logged and
  ignored, so no other client can answer for a device).

Rendering and the decisions are pure (render.py, generations.py, republish.py); this module only
moves bytes and calls the store.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, get_args

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from edgefleet.hub.errors import HubError, InvalidRequest, MethodTimeout
from edgefleet.hub.server import republish
from edgefleet.hub.server.generations import next_generation, report_refused
from edgefleet.hub.server.grants import BlobGrants
from edgefleet.hub.server.method_sequence import MethodSequence
from edgefleet.hub.server.mqtt_url import MqttConnection
from edgefleet.hub.server.render import DeviceView, ModelIndex, index_models, modules_wire, render_device
from edgefleet.hub.server.rotation import HubKeys, trust_of
from edgefleet.hub.server.store import DesiredRecord, DeviceRecord, ServiceRecord, Store
from edgefleet.protocol.models import (
    DeviceManifest,
    DirectMethodName,
    DirectMethodRequest,
    DirectMethodResponse,
    MethodCall,
    Presence,
    PresenceState,
    ReportedState,
    Telemetry,
    utcnow,
)
from edgefleet.protocol.signing import METHOD_MAX_LIFETIME_S, request_digest, sign_manifest, sign_method
from edgefleet.protocol.topics import TopicKind, parse_topic, subscription, topic

log = logging.getLogger(__name__)
_INGESTED = (TopicKind.REPORTED, TopicKind.PRESENCE, TopicKind.TELEMETRY, TopicKind.RESPONSES)


@dataclass
class _PendingCall:
    device_id: str  # only this device's responses topic may answer
    digest: str | None = None  # request_digest of the call published; the answer must echo it
    done: threading.Event = field(default_factory=threading.Event)
    response: DirectMethodResponse | None = None


def parse_presence(device_id: str, payload: bytes) -> Presence | None:
    """Presence as JSON, or the bare words ``online``/``offline`` (a simple LWT)."""
    text = payload.decode("utf-8", errors="replace").strip()
    if text in ("online", "offline"):
        return Presence(device_id=device_id, state=PresenceState(text))
    try:
        return Presence.model_validate_json(payload)
    except ValidationError:
        return None


class Controller:
    def __init__(
        self,
        store: Store,
        keys: HubKeys,
        connection: MqttConnection,
        grants: BlobGrants,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.clock = clock  # for the republish back-off (seconds; tests may stop it)
        self.keys = keys
        self.grants = grants
        self.broker_url = connection.url
        self._host, self._port = connection.address.host, connection.address.port
        self.connected = threading.Event()
        self._ignored: set[str] = set()  # ids not listened to, each logged once
        # Kept by ingest (the MQTT thread), popped when a device leaves: single dict operations.
        self._refused_claims: dict[str, int] = {}  # device -> the refused generation last logged for it
        self._republishing: dict[str, republish.Backoff] = {}  # device -> its republish back-off
        self.telemetry: dict[str, Telemetry] = {}
        self._pending: dict[str, _PendingCall] = {}
        self._pending_lock = threading.Lock()
        self._sequences = MethodSequence()
        self._reconcile_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"edgefleet-hub-{uuid.uuid4().hex[:8]}", clean_session=True
        )
        self._client.reconnect_delay_set(min_delay=1, max_delay=10)
        self._client.max_queued_messages_set(0)
        if connection.tls is not None:
            tls = connection.tls
            self._client.tls_set(
                ca_certs=str(tls.ca_file),
                certfile=str(tls.cert_file) if tls.cert_file else None,
                keyfile=str(tls.key_file) if tls.key_file else None,
            )
        if connection.username:
            self._client.username_pw_set(connection.username, connection.password)
        if connection.tls is None and connection.username is None:
            log.warning(
                "broker %s: plain MQTT without an identity; any client that reaches it can read every manifest "
                "and forge reports (README, Security: `edgefleet hub broker-config` and an mqtts:// URL)",
                connection.url,
            )
        self.identity = connection.identity
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    # lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._client.connect_async(self._host, self._port, keepalive=30)
        self._client.loop_start()
        self._worker = threading.Thread(target=self._run, name="hub-reconcile", daemon=True)
        self._worker.start()
        self.request_reconcile()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._worker:
            self._worker.join(timeout=5)
        self._client.disconnect()
        self._client.loop_stop()

    def request_reconcile(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(timeout=30.0)  # periodic pass as a safety net against a lost wake-up
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self.reconcile()
            except Exception:  # the loop must survive anything one pass trips over
                log.exception("reconcile pass failed; retrying on the next change")

    # MQTT callbacks ----------------------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("broker %s refused the hub's connection: %s", self.broker_url, reason)
            return
        client.subscribe([(subscription(kind), 1) for kind in _INGESTED])
        for record in self.store.list_desired():
            client.publish(topic(record.device_id, TopicKind.DESIRED), record.payload, qos=1, retain=True)
        for device in self.store.list_devices():  # in case the clearing at revocation never reached the broker
            if device.status == "revoked":
                client.publish(topic(device.device_id, TopicKind.DESIRED), b"", qos=1, retain=True)
        self.connected.set()
        log.info("hub connected to broker %s (%s)", self.broker_url, self.identity)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.connected.clear()
        if not self._stopping.is_set():
            log.warning("hub lost the broker %s (%s); reconnecting", self.broker_url, reason)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        parsed = parse_topic(msg.topic)
        if parsed is None or not msg.payload:  # empty payload: a cleared retained message
            return
        device_id, kind = parsed
        try:
            self.ingest(device_id, kind, bytes(msg.payload))
        except Exception:  # a bad message from one device must not stop the hub
            log.exception("device %s: could not ingest %s message", device_id, kind.value)

    # devices joining and leaving -------------------------------------------------------------
    @property
    def reconcile_lock(self) -> threading.Lock:
        """Held by a reconcile pass: hold it to change a device's membership without a pass in between."""
        return self._reconcile_lock

    def welcome(self, device_id: str) -> None:
        """A device was just registered: listen to it, and read what it already left retained."""
        self._ignored.discard(device_id)
        retained = [topic(device_id, TopicKind.REPORTED), topic(device_id, TopicKind.PRESENCE)]
        # the broker sends the retained messages on subscribing, before it handles the unsubscribe
        self._client.subscribe([(t, 1) for t in retained])
        self._client.unsubscribe(retained)

    def clear_retained(self, device_id: str, kinds: tuple[TopicKind, ...]) -> None:
        """Empty retained messages on the device's topics (``desired``: nothing left to fetch for it)."""
        for kind in kinds:
            self._client.publish(topic(device_id, kind), b"", qos=1, retain=True)
        self.telemetry.pop(device_id, None)
        self._republishing.pop(device_id, None)
        self._refused_claims.pop(device_id, None)

    @property
    def ignored(self) -> frozenset[str]:
        """Ids whose messages arrived but were not listened to (unregistered or revoked)."""
        return frozenset(self._ignored)

    def _not_listened(self, device_id: str, kind: TopicKind, why: str) -> None:
        if device_id not in self._ignored:
            self._ignored.add(device_id)
            log.warning(
                "device %s is %s: its %s messages are ignored (logged once; `edgefleet device register %s`)",
                device_id,
                why,
                kind.value,
                device_id,
            )

    def _listened(self, device_id: str, kind: TopicKind) -> DeviceRecord | None:
        """The device when it is listened to (registered), else None (logged once)."""
        device = self.store.get_device(device_id)
        if device is None:
            self._not_listened(device_id, kind, "not registered")
            return None
        if device.status != "registered":
            self._not_listened(device_id, kind, "revoked")
            return None
        return device

    # ingestion ---------------------------------------------------------------------------------
    def ingest(self, device_id: str, kind: TopicKind, payload: bytes) -> None:
        now = utcnow()
        if kind is TopicKind.REPORTED:
            try:
                report = ReportedState.model_validate_json(payload)
            except ValidationError as exc:
                log.warning("device %s: malformed reported state ignored: %s", device_id, exc)
                return
            if report.device_id != device_id:
                log.warning("report on %s's topic names device %s; ignored", device_id, report.device_id)
                return
            device = self._listened(device_id, kind)
            if device is None:
                return
            desired = self.store.get_desired(device_id)
            if desired is not None and report_refused(
                desired.generation, device.last_report is not None, report.generation
            ):
                self._refuse(device_id, report.generation, desired.generation)
                return
            recorded = self.store.record_report(report, now)  # None: revoked since
            if recorded is None:
                self._not_listened(device_id, kind, "not registered or revoked")
                return
            if recorded[1] or (desired is not None and report.generation > desired.generation):
                self.request_reconcile()  # new capabilities, or a device first heard ahead of the hub
            if desired is not None:
                self._answer_rejection(report, desired)
        elif kind is TopicKind.PRESENCE:
            presence = parse_presence(device_id, payload)
            if presence is None:
                log.warning("device %s: malformed presence ignored: %r", device_id, payload[:80])
                return
            seen = self.store.record_presence(
                device_id, presence.state is PresenceState.ONLINE, presence.agent_version, now
            )
            if seen is None:
                self._not_listened(device_id, kind, "not registered or revoked")
            elif seen[1]:
                self.request_reconcile()
        elif not self._listened(device_id, kind):
            return
        elif kind is TopicKind.TELEMETRY:
            try:
                self.telemetry[device_id] = Telemetry.model_validate_json(payload)
            except ValidationError:
                log.debug("device %s: malformed telemetry ignored", device_id)
        elif kind is TopicKind.RESPONSES:
            try:
                response = DirectMethodResponse.model_validate_json(payload)
            except ValidationError as exc:
                log.warning("device %s: malformed direct-method response ignored: %s", device_id, exc)
                return
            with self._pending_lock:
                call = self._pending.get(response.correlation_id)
                if call is None:
                    log.info(
                        "device %s: response %s answers no pending call; ignored", device_id, response.correlation_id
                    )
                elif call.device_id != device_id:
                    log.warning(
                        "response to the call %s on device %s arrived on device %s's topic; ignored (spoofed?)",
                        response.correlation_id,
                        call.device_id,
                        device_id,
                    )
                elif response.request_digest != call.digest:
                    log.warning(
                        "device %s: response %s does not answer the call the hub published (request digest %s); "
                        "ignored (a copied or forged call provoked it?)",
                        device_id,
                        response.correlation_id,
                        response.request_digest,
                    )
                elif not call.done.is_set():  # the first genuine answer counts
                    call.response = response
                    call.done.set()

    def _refuse(self, device_id: str, claimed: int, issued: int) -> None:
        """A report claims a generation the hub never issued (generations.report_refused): not stored."""
        if self._refused_claims.get(device_id) == claimed:
            return  # a retained forgery comes back on every reconnect: said once is enough
        self._refused_claims[device_id] = claimed
        log.warning(
            "device %s reports generation %d, but the hub issued it only up to generation %d: report refused, "
            "nothing in it is believed (logged again only for another claimed generation). Either the report is forged (by the "
            "device, or by anyone who can publish on its topic: a broker without ACLs, see `edgefleet hub "
            "broker-config`), or the hub's database was restored from an older backup and the device really took "
            "a later generation. Then it refuses every manifest up to that one, and no command raises the hub's "
            "generation: delete the device (`edgefleet device delete %s`), register it again (`edgefleet device "
            "register %s`) and start it with the new bundle; the hub then publishes past what it reports",
            device_id,
            claimed,
            issued,
            device_id,
            device_id,
        )

    def _answer_rejection(self, report: ReportedState, desired: DesiredRecord) -> None:
        """Give the stored manifest again to a device that rejected something instead (republish.py)."""
        device_id = report.device_id
        decision = republish.decide(
            self._republishing.get(device_id),
            desired.generation,
            report.generation,
            bool(report.rejected),
            self.clock(),
        )
        if decision.backoff is None:
            self._republishing.pop(device_id, None)
        else:
            self._republishing[device_id] = decision.backoff
        if decision.action is republish.Action.REPUBLISH:
            assert decision.backoff is not None
            self._client.publish(topic(device_id, TopicKind.DESIRED), desired.payload, qos=1, retain=True)
            log.info(
                "device %s reports generation %d and rejected a manifest (%.200r): republished generation %d "
                "(again no sooner than in %.0f s)",
                device_id,
                report.generation,
                report.rejected,
                desired.generation,
                decision.backoff.delay_s,
            )
        elif decision.action is republish.Action.SUPPRESSED:
            log.debug(
                "device %s still rejects (%.200r); generation %d not republished yet (back-off)",
                device_id,
                report.rejected,
                desired.generation,
            )

    # reconcile ---------------------------------------------------------------------------------
    def reconcile(self) -> dict[str, int]:
        """Publish a new manifest to every device whose rendered modules changed; returns {device: generation}.

        One device's data (a corrupted stored manifest, say) fails only that device: the others are
        still reconciled in the same pass."""
        published: dict[str, int] = {}
        with self._reconcile_lock:
            services = self.store.list_services()
            models = index_models(self.store.list_models())
            for device in self.store.list_devices():
                if device.status != "registered":
                    continue  # revoked: its desired state was cleared, nothing is published to it
                try:
                    generation = self._reconcile_device(device, services, models)
                except Exception:
                    log.exception("device %s: reconcile failed; went on with the other devices", device.device_id)
                    continue
                if generation is not None:
                    published[device.device_id] = generation
        return published

    def _reconcile_device(self, device: DeviceRecord, services: list[ServiceRecord], models: ModelIndex) -> int | None:
        """The generation published to ``device``, or None when it already has what it should."""
        try:
            modules = render_device(services, DeviceView.of(device), models, self.grants)
        except HubError as exc:
            log.error("device %s: cannot render its manifest: %s", device.device_id, exc)
            return None
        wire = modules_wire(modules)
        current = self.store.get_desired(device.device_id)
        trust = (self.keys.current.key_id, self.keys.announced)
        resign = trust_of(current.payload) != trust if current else self.keys.announced is not None
        generation = next_generation(
            current.generation if current else None,
            current.modules if current else None,
            wire,
            device.last_report.generation if device.last_report else 0,
            resign=resign,
        )
        if generation is None:
            return None
        manifest = DeviceManifest(
            device_id=device.device_id, generation=generation, modules=modules, next_hub_key=self.keys.announced
        )
        return self._publish_manifest(manifest, wire)

    def _publish_manifest(self, manifest: DeviceManifest, wire: list[dict[str, Any]]) -> int:
        signed = sign_manifest(manifest, self.keys.current)
        payload = json.dumps(signed.to_wire(), separators=(",", ":"))
        # Stored before publishing: if the publish is lost, the reconnect republishes it.
        self.store.save_desired(
            DesiredRecord(
                device_id=manifest.device_id,
                generation=manifest.generation,
                modules=wire,
                payload=payload,
                published_at=manifest.issued_at,
            )
        )
        self._client.publish(topic(manifest.device_id, TopicKind.DESIRED), payload, qos=1, retain=True)
        log.info(
            "published generation %d to device %s (%d module(s))",
            manifest.generation,
            manifest.device_id,
            len(manifest.modules),
        )
        return manifest.generation

    # direct methods ----------------------------------------------------------------------------
    def call_method(self, device_id: str, method: str, params: dict[str, Any], timeout: float) -> DirectMethodResponse:
        """Sign a call for ``device_id``, publish it, and wait for that device's answer to exactly it.

        The call is valid for ``timeout`` (at least 1 s, at most what a device accepts): a call
        delayed past the time the operator waits for it is not run later.
        """
        if method not in get_args(DirectMethodName):
            raise InvalidRequest(f"unknown direct method {method!r}; use one of: ping, restart-module, logs")
        try:
            request = DirectMethodRequest(correlation_id=uuid.uuid4().hex, method=method, params=params)  # type: ignore[arg-type]
        except ValidationError as exc:
            raise InvalidRequest(f"direct method {method!r}: invalid params: {exc}") from None
        call = _PendingCall(device_id)
        with self._pending_lock:
            self._pending[request.correlation_id] = call
        try:
            with self._sequences.draw(device_id) as sequence:  # published in the order of the numbers
                issued = utcnow()
                lifetime = timedelta(seconds=min(max(timeout, 1.0), METHOD_MAX_LIFETIME_S))
                signed = sign_method(
                    MethodCall(
                        device_id=device_id,
                        sequence=sequence,
                        issued_at=issued,
                        expires_at=issued + lifetime,
                        request=request,
                    ),
                    self.keys.current,
                ).to_wire()
                call.digest = request_digest(signed)
                self._client.publish(topic(device_id, TopicKind.COMMANDS), json.dumps(signed), qos=1, retain=False)
            if not call.done.wait(timeout):
                raise MethodTimeout(
                    f"device {device_id} did not answer {method!r} within {timeout:g} s; is it online? "
                    f"(see `edgefleet device show {device_id}`)"
                )
        finally:
            with self._pending_lock:
                self._pending.pop(request.correlation_id, None)
        assert call.response is not None
        return call.response
