"""The agent's MQTT link to the hub (MQTT 3.1.1 features only).

- client id = device id; last will: presence "offline" (QoS 1, retained)
- ``mqtts://``: TLS, the broker's certificate checked against the CA (the hub's, from the bootstrap
  bundle), and the device proves itself with its client certificate or username and password
- on every (re)connect: publish presence "online" (retained), subscribe desired + commands
  (the broker then re-delivers the retained manifest, so one published while offline is applied),
  and publish the latest reported snapshot
- reconnects with capped exponential back-off (paho's reconnect delay)
- while offline only the latest reported snapshot is kept: reports are full snapshots, so older
  ones carry no information the newest lacks
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edgefleet.agent.bootstrap import MqttCredentials
from edgefleet.protocol.models import Presence, PresenceState, utcnow
from edgefleet.protocol.topics import TopicKind, topic

log = logging.getLogger(__name__)

MessageHandler = Callable[[TopicKind, bytes], None]


class MqttLink:
    def __init__(
        self,
        device_id: str,
        host: str,
        port: int,
        on_message: MessageHandler,
        *,
        agent_version: str = "",
        keepalive_s: int = 30,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        credentials: MqttCredentials | None = None,
    ) -> None:
        self.device_id = device_id
        self.host = host
        self.port = port
        self._on_message_cb = on_message
        self._agent_version = agent_version
        self._keepalive_s = keepalive_s
        self._lock = threading.Lock()
        self._latest_report: bytes | None = None
        self._connected = threading.Event()

        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=device_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        client.will_set(topic(device_id, TopicKind.PRESENCE), self._presence(PresenceState.OFFLINE), qos=1, retain=True)
        # paho's delay doubles from min to max on every failed attempt: capped exponential back-off
        client.reconnect_delay_set(min_delay=reconnect_min_s, max_delay=reconnect_max_s)  # type: ignore[arg-type]
        creds = credentials or MqttCredentials()
        if creds.tls:
            client.tls_set(
                ca_certs=str(creds.ca_file) if creds.ca_file else None,
                certfile=str(creds.cert_file) if creds.cert_file else None,
                keyfile=str(creds.key_file) if creds.key_file else None,
            )
        if creds.username:
            client.username_pw_set(creds.username, creds.password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def start(self) -> None:
        # connect_async + loop_start: paho keeps retrying in its thread, also for the first connect
        self._client.connect_async(self.host, self.port, keepalive=self._keepalive_s)
        self._client.loop_start()

    def stop(self) -> None:
        """Graceful: say offline (the will is not sent on a clean disconnect), then disconnect."""
        if self.connected:
            info = self._client.publish(
                topic(self.device_id, TopicKind.PRESENCE), self._presence(PresenceState.OFFLINE), qos=1, retain=True
            )
            try:
                info.wait_for_publish(timeout=2.0)
            except (RuntimeError, ValueError):
                pass
        self._client.disconnect()
        self._client.loop_stop()

    def publish_reported(self, payload: bytes) -> None:
        with self._lock:
            self._latest_report = payload
        if self.connected:
            self._client.publish(topic(self.device_id, TopicKind.REPORTED), payload, qos=1, retain=True)

    def publish_telemetry(self, payload: bytes) -> None:
        if self.connected:  # QoS 0 and only when connected: stale telemetry is worthless
            self._client.publish(topic(self.device_id, TopicKind.TELEMETRY), payload, qos=0)

    def publish_response(self, payload: bytes) -> None:
        self._client.publish(topic(self.device_id, TopicKind.RESPONSES), payload, qos=1)

    # --- paho callbacks (run in paho's thread) ---------------------------------------------------

    def _presence(self, state: PresenceState) -> bytes:
        msg = Presence(device_id=self.device_id, state=state, agent_version=self._agent_version, at=utcnow())
        return msg.model_dump_json(by_alias=True).encode()

    def _on_connect(
        self, client: mqtt.Client, _userdata: object, _flags: object, reason: object, _props: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("broker %s:%d refused the connection: %s", self.host, self.port, reason)
            return
        log.info("connected to broker %s:%d as %s", self.host, self.port, self.device_id)
        client.subscribe(
            [(topic(self.device_id, TopicKind.DESIRED), 1), (topic(self.device_id, TopicKind.COMMANDS), 1)]
        )
        client.publish(
            topic(self.device_id, TopicKind.PRESENCE), self._presence(PresenceState.ONLINE), qos=1, retain=True
        )
        with self._lock:
            latest = self._latest_report
        if latest is not None:
            client.publish(topic(self.device_id, TopicKind.REPORTED), latest, qos=1, retain=True)
        self._connected.set()

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: object, _flags: object, reason: object, _props: object
    ) -> None:
        if self._connected.is_set():
            log.warning("lost the broker %s:%d (%s); reconnecting with back-off", self.host, self.port, reason)
        self._connected.clear()

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        for kind in (TopicKind.DESIRED, TopicKind.COMMANDS):
            if msg.topic == topic(self.device_id, kind):
                try:
                    self._on_message_cb(kind, bytes(msg.payload))
                except Exception:  # a bug in a handler must not kill paho's network thread
                    log.exception("handling a %s message failed", kind.value)
                return
