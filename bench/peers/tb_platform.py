"""A stand-in for the ThingsBoard server side, enough for ThingsBoard IoT Gateway to publish.

The gateway (thingsboard-gateway 3.8, tb-mqtt-client 1.13) connects to "ThingsBoard" over
MQTT with its access token as the user name, subscribes to its RPC and attribute topics and,
once per process (tb_device_mqtt.TBDeviceMqttClient.request_service_configuration), publishes
``{"method": "getSessionLimits", ...}`` on ``v1/devices/me/rpc/request/<id>``. It sends no
telemetry until it has an answer: tb_client.TBClient.is_connected() is "socket connected and
rate_limits_received", and the storage reader sends only while that holds. On a reconnect it
sets rate_limits_received itself and does not ask again. Nothing else is awaited: the
attribute requests of its remote configuration may go unanswered.

`TbPlatform` subscribes to the gateway's topics on the broker the bench gives the gateway as
"ThingsBoard", answers getSessionLimits as a ThingsBoard CE with rate limits off would
(SESSION_LIMITS), and keeps every telemetry value it receives on ``v1/gateway/telemetry``
(``{"<device>": [{"ts": ms, "values": {"<key>": v, ...}}, ...]}``) as (device, key) -> the
set of ts. It reconnects at once after a broker restart (every RECONNECT_S), so it is
subscribed again before the gateway, whose reconnect loop waits seconds, sends its backlog.

ThingsBoard never sends a device its own publications back; Mosquitto does, and the gateway
subscribes to topics it also publishes on (v1/devices/me/attributes, .../rpc/request/+,
v1/gateway/attributes, v1/gateway/rpc). Echoed, its own client attributes reach its remote
configurator as "configuration updates" (KeyError 'name' tracebacks, and sending from storage
pauses while the configurator is in_process) and its getSessionLimits request reaches its RPC
handler. `TbBroker` runs the bench's Mosquitto with an ACL (ACL) that lets the gateway's user
read only the response topics, as ThingsBoard's own MQTT transport would behave here.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import defaultdict
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from demo.broker import MOSQUITTO, Broker, wait_for_port

RPC_REQUEST = "v1/devices/me/rpc/request/"
RPC_RESPONSE = "v1/devices/me/rpc/response/"
GATEWAY_TELEMETRY = "v1/gateway/telemetry"
# What a ThingsBoard CE 3.x/4.x answers with its default tenant profile (rate limits off).
SESSION_LIMITS: dict[str, Any] = {
    "maxPayloadSize": 65536,
    "maxInflightMessages": 100,
    "rateLimits": {"messages": "", "telemetryMessages": "", "telemetryDataPoints": ""},
    "gatewayRateLimits": {"messages": "", "telemetryMessages": "", "telemetryDataPoints": ""},
}
RECONNECT_S = 0.1
GATEWAY_USER = "bench-gateway"  # the gateway's access token, its MQTT user name
# Before any `user` line: anonymous clients (the stand-in platform) read and write anything.
ACL = f"""topic readwrite #

user {GATEWAY_USER}
topic write #
topic read v1/devices/me/rpc/response/+
topic read v1/devices/me/attributes/response/+
topic read v1/gateway/attributes/response
"""


class TbBroker(Broker):
    """demo.broker's Mosquitto (same settings) with the ACL above.

    Started as root, Mosquitto reads its ACL file after dropping to its own user: the work
    directory and its parents must be open to it (the bench makes its scratch dirs 0755).
    """

    def start(self) -> None:
        acl = self.workdir / "acl"
        acl.write_text(ACL, encoding="ascii")
        acl.chmod(0o644)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            f"acl_file {self.workdir / 'acl'}\n"
            "persistence false\n"
            "max_queued_messages 0\n"
            "max_inflight_messages 0\n"
            "log_type error\n"
            "log_type warning\n",
            encoding="ascii",
        )
        with (self.workdir / "mosquitto.log").open("ab") as log:
            self.process = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=log)
        wait_for_port(self.port)


class TbPlatform:
    """Answers the gateway's session-limits RPC and records the telemetry it delivers."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], set[int]] = defaultdict(set)
        self.values = 0  # data points received, duplicates included
        self.messages = 0
        self.payload_bytes = 0  # topic + payload of the telemetry messages
        self.limits_answered = 0
        self.subscribed_at: list[float] = []  # wall clock of every SUBACK (one per connection)
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="tb-stand-in", protocol=mqtt.MQTTv311
        )
        self._client.reconnect_delay_set(min_delay=RECONNECT_S, max_delay=RECONNECT_S)  # type: ignore[arg-type]
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def start(self) -> None:
        """Connect (the broker must be up) and keep the session in a background thread."""
        self._client.connect("127.0.0.1", self.port, keepalive=5)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: mqtt.Client, *_: object) -> None:
        client.subscribe([(RPC_REQUEST + "+", 1), (GATEWAY_TELEMETRY, 1)])

    def _on_subscribe(self, *_: object) -> None:
        with self._lock:
            self.subscribed_at.append(time.time())

    def _on_message(self, client: mqtt.Client, _: object, message: mqtt.MQTTMessage) -> None:
        if message.topic.startswith(RPC_REQUEST):
            request = json.loads(message.payload)
            if request.get("method") == "getSessionLimits":
                request_id = message.topic[len(RPC_REQUEST) :]
                client.publish(RPC_RESPONSE + request_id, json.dumps(SESSION_LIMITS), qos=1)
                with self._lock:
                    self.limits_answered += 1
            return
        telemetry: dict[str, list[dict[str, Any]]] = json.loads(message.payload)
        with self._lock:
            self.messages += 1
            self.payload_bytes += len(message.topic) + len(message.payload)
            for device, entries in telemetry.items():
                for entry in entries:
                    ts = int(entry["ts"])
                    for key in entry["values"]:
                        self._series[(device, key)].add(ts)
                        self.values += 1

    def series(self) -> dict[tuple[str, str], list[float]]:
        """Every (device, key)'s distinct timestamps, in seconds, oldest first."""
        with self._lock:
            return {k: sorted(ts / 1000 for ts in v) for k, v in self._series.items()}

    def distinct_values(self) -> int:
        """Distinct (device, key, ts) received so far."""
        with self._lock:
            return sum(len(v) for v in self._series.values())
