"""An audit row stays small whatever topic a rejected message arrives on.

Found by a hostile tester: aggregation bounds the number of rejection rows (per source, reason
and minute), but each row kept the message's topic, and the gateway name in it, whole. MQTT
topics run to 65,535 bytes, so 200 junk messages on made-up topics of 60 KB stored 33 rows of
6 MB together in one minute, for one reason: about 8 GB a day per reason, kept 180 days. The
same topic went whole into the `message_rejected` log line of every message. A topic of the
gz/1 contract is under 100 characters; what is kept of one is now bounded.
"""

from __future__ import annotations

from collector.audit.chain import MAX_SOURCES_PER_MINUTE
from collector.ingest.core import Inbound, plan_batch
from collector.ingest.judge import MAX_AUDIT_NAME, MAX_AUDIT_TOPIC
from collector.model import MAX_DETAIL, KeyGrant, Reason
from collector.storage import open_storage
from specs.catalogue import default_catalogue
from tests.support.collector_client import BASE_TIME, sim_gateway
from tests.support.postgres import sql_rows

T0 = BASE_TIME - BASE_TIME % 60  # the start of a minute
LONG = 60_000  # characters of a made-up gateway name; the topic is longer still
GW = sim_gateway(1)


def _junk(n: int) -> Inbound:
    """An unsigned block on a made-up gateway's topic of about 60 KB."""
    gateway = f"{n:04d}{'G' * LONG}"  # distinct within what is kept of it
    return Inbound(f"gz/1/360100/E/{gateway}/up/block", b"junk", (), T0 + n % 60)


def test_a_rejection_keeps_a_bounded_topic_and_gateway_name() -> None:
    (audit,) = plan_batch([_junk(1)], {}, default_catalogue()).audits
    assert audit.reason is Reason.BAD_SIGNATURE
    assert audit.topic == _junk(1).topic[:MAX_AUDIT_TOPIC]
    assert audit.gateway is not None
    assert len(audit.gateway) == MAX_AUDIT_NAME


def test_a_registered_gateways_rejection_keeps_its_name_and_topic_whole() -> None:
    """The bounds sit far above any name and topic of the contract: nothing real is cut."""
    owner, key = GW.registration()
    topic = f"{GW.topics.base}/up/no-such-kind"
    (audit,) = plan_batch(
        [Inbound(topic, b"{}", (), T0)], {key.kid: KeyGrant(key, owner)}, default_catalogue()
    ).audits
    assert (audit.gateway, audit.topic, audit.reason) == (
        GW.gateway,
        topic,
        Reason.UNSUPPORTED_TOPIC,
    )


async def test_a_flood_on_huge_topics_stores_small_rows(storage_url: str) -> None:
    async with open_storage(storage_url) as storage:
        await storage.ingest(plan_batch([_junk(n) for n in range(200)], {}, default_catalogue()))
    ((rows, stored, longest),) = await sql_rows(
        storage_url,
        "SELECT count(*), sum(length(topic) + length(source) + length(coalesce(gateway, ''))"
        " + length(detail)), max(length(topic)) FROM audit",
    )
    assert rows == MAX_SOURCES_PER_MINUTE + 1  # every junk source of that minute, capped
    assert longest == MAX_AUDIT_TOPIC
    assert stored <= rows * (MAX_AUDIT_TOPIC + 2 * MAX_AUDIT_NAME + MAX_DETAIL)
