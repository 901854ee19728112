"""The durable session a collector left under its previous default client id, retired once.

b28c625 put `api.listen` into the default client id (collector.config.default_client_id). A
collector without `ingest.client_id` upgraded past it connects under the new id, and the broker
keeps the session of the old one until `ingest.session_expiry` (a day by default), with its
place in the shared subscription: Mosquitto goes on handing it every N-th block into its queue
(collector.ingest.service). Measured with one collector, 20 blocks published once: 10 stored,
the other 10 waited for the agents' resends, each of which again had even odds of the orphan.

So before ingest starts, the collector connects once under the legacy id, clean start off (so
that the CONNACK says whether the broker had that session) with Session Expiry Interval 0: the
session then ends when that connection closes (MQTT 5.0, 3.1.2.11.2), its queue and its place
in the group with it. What was queued there (or handed to this connection meanwhile) is sent
again by the agents, which keep every block until it is ACKed. Not done:

- with `ingest.client_id` set: the id is the operator's, never changed by an upgrade;
- with a client certificate (`broker_tls.cert`): the isolating broker makes the certificate's
  name the client id (`use_username_as_clientid`), so no legacy id ever reached it, and a
  connect "under" one would end the collector's own session instead.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any, Final

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from collector.config import CollectorConfig, default_client_id, legacy_client_id
from collector.ingest.service import Ingest
from hostkit.mqtt import NO_DELAY, CancelSafeClient

RETIRE_TIMEOUT: Final = 10.0  # the connect and its CONNACK, at most
RETRY_AFTER: Final = 60.0  # a failed retirement is tried again this long after, once connected

log = structlog.get_logger("collector.legacy_session")


@dataclass(frozen=True, slots=True)
class LegacySession:
    """Where a legacy-id session may wait: the broker as ingest reaches it, and the id."""

    host: str
    port: int
    tls: ssl.SSLContext | None
    client_id: str


def legacy_session(
    config: CollectorConfig, host: str, tls: ssl.SSLContext | None
) -> LegacySession | None:
    """The legacy-id session to retire, or None where there can be none (see the module)."""
    if config.ingest.client_id is not None:
        return None
    if config.broker_tls is not None and config.broker_tls.cert is not None:
        return None
    legacy = legacy_client_id(host, config)
    if legacy == default_client_id(host, config):
        return None
    return LegacySession(config.broker.host, config.broker.port, tls, legacy)


class _SessionProbe(CancelSafeClient):
    """A client that keeps the CONNACK's session-present flag."""

    session_present = False

    def _on_connect(  # aiomqtt's callback, wrapped
        self,
        client: Any,  # noqa: ANN401
        userdata: Any,  # noqa: ANN401
        flags: Any,  # noqa: ANN401
        reason_code: ReasonCode,
        properties: Properties | None = None,
    ) -> None:
        self.session_present = bool(flags.session_present)
        super()._on_connect(client, userdata, flags, reason_code, properties)


async def session_present_at_end(session: LegacySession) -> bool:
    """Connect under the session's id (clean start off, expiry 0) and leave: the session ends.

    Returns the CONNACK's session present flag; raises aiomqtt.MqttError when the broker
    cannot be reached or refuses the connect.
    """
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call] # paho lacks hints here
    props.SessionExpiryInterval = 0
    async with _SessionProbe(
        session.host,
        session.port,
        identifier=session.client_id,
        tls_context=session.tls,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=False,
        properties=props,
        socket_options=NO_DELAY,
        timeout=RETIRE_TIMEOUT,
    ) as probe:
        return probe.session_present


async def retire(session: LegacySession) -> bool:
    """End the legacy-id session at the broker; False (logged) when the broker was not reached."""
    try:
        present = await session_present_at_end(session)
    except aiomqtt.MqttError as exc:
        log.warning("legacy_session_not_retired", client_id=session.client_id, error=str(exc))
        return False
    if not present:  # none left (expired, ended by hand, or a broker without persistence)
        log.debug("legacy_session_absent", client_id=session.client_id)
        return True
    # A session present may also be a process of the old version still running under that id
    # (another config on this host, same broker, storage and group): it lost its connection
    # here, and comes back with a new session of its own until it is upgraded too.
    log.info("legacy_session_retired", client_id=session.client_id, session_present=present)
    return True


async def ingest_after_retiring(session: LegacySession | None, ingest: Ingest) -> None:
    """Run `ingest` (until cancelled), the legacy-id `session` retired first when there is one.

    A broker not reached at the start holds ingest up for RETIRE_TIMEOUT at most: the
    retirement is tried again once ingest is connected, then every RETRY_AFTER while it is,
    until it is done (the next start tries it too).
    """
    if session is None or await retire(session):
        await ingest.run()
        return
    async with asyncio.TaskGroup() as group:
        group.create_task(_retire_on_connection(session, ingest.connected), name="legacy-session")
        await ingest.run()


async def _retire_on_connection(session: LegacySession, connected: asyncio.Event) -> None:
    while True:
        await connected.wait()
        if await retire(session):
            return
        await asyncio.sleep(RETRY_AFTER)
