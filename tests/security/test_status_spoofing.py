"""A `status` message cannot keep a dead gateway online: it is signed, fresh, or ignored.

Found when tried as a hostile tester would: an unsigned `{"online": true}` on a gateway's
status topic was accepted and moved its `last_seen`, so anyone able to publish kept it online.
"""

from __future__ import annotations

import httpx
import pytest

from collector.ingest.core import Inbound, plan_batch
from collector.ingest.judge import STATUS_TOLERANCE, judge_status
from collector.model import AuditEntry, KeyGrant, Reason, StatusUpdate
from collector.storage import open_storage
from specs.catalogue import default_catalogue
from specs.status import GatewayStatus
from tests.support.collector_api import NANCHANG, NOW, auth, serve
from tests.support.collector_client import BASE_TIME, key_grants, sim_gateway

GW = NANCHANG
OTHER = sim_gateway(7)


def _grants() -> dict[str, KeyGrant]:
    return key_grants(GW, OTHER)


def _status(*, online: bool, t: float) -> bytes:
    return GatewayStatus(online=online, t=t, epoch="epoch-1", last_seq=3, undelivered=0).encode()


def _signed(payload: bytes, by: object = GW, at: float = NOW) -> Inbound:
    signer = GW if by is GW else OTHER
    return Inbound(GW.topics.status, payload, tuple(signer.sign(payload)), at)


def _reason(verdict: object) -> Reason:
    assert isinstance(verdict, AuditEntry), verdict
    return verdict.reason


def test_a_signed_fresh_heartbeat_is_taken() -> None:
    verdict = judge_status(_signed(_status(online=True, t=NOW - 2)), _grants())
    assert verdict == StatusUpdate(GW.gateway, online=True, at=NOW)


@pytest.mark.parametrize(
    "payload", [b'{"online": true}', b'{"online":true,"t":1767225600}', _status(online=True, t=NOW)]
)
def test_an_unsigned_status_is_audited_not_taken(payload: bytes) -> None:
    verdict = judge_status(Inbound(GW.topics.status, payload, (), NOW), _grants())
    assert _reason(verdict) is Reason.BAD_SIGNATURE


def test_a_status_signed_by_another_gateway_is_refused() -> None:
    verdict = judge_status(_signed(_status(online=True, t=NOW), by=OTHER), _grants())
    assert _reason(verdict) is Reason.KEY_NOT_OWNED


def test_a_modified_status_does_not_verify() -> None:
    message = _signed(_status(online=False, t=NOW))
    forged = Inbound(message.topic, _status(online=True, t=NOW), message.properties, NOW)
    assert _reason(judge_status(forged, _grants())) is Reason.BAD_SIGNATURE


@pytest.mark.parametrize("age", [STATUS_TOLERANCE + 1, -(STATUS_TOLERANCE + 1), 86_400.0])
def test_a_replayed_or_future_heartbeat_is_stale(age: float) -> None:
    verdict = judge_status(_signed(_status(online=True, t=NOW - age)), _grants())
    assert _reason(verdict) is Reason.STALE_STATUS


def test_a_signed_last_will_is_taken_however_old() -> None:
    """The will is signed at connect time; it fires hours later and must still count."""
    verdict = judge_status(_signed(_status(online=False, t=NOW - 86_400)), _grants())
    assert verdict == StatusUpdate(GW.gateway, online=False, at=NOW)


@pytest.mark.parametrize(
    "payload",
    [b'{"online": true}', b'{"online": true, "t": "now"}', b'{"t": 1}', b"[]", b"\xff"],
)
def test_a_signed_status_that_is_not_a_status_is_malformed(payload: bytes) -> None:
    assert _reason(judge_status(_signed(payload), _grants())) is Reason.MALFORMED


async def test_unsigned_status_does_not_move_last_seen(storage_url: str) -> None:
    """Through real storage and the API: the forged heartbeat leaves the gateway unseen."""
    owner, key = GW.registration(at=BASE_TIME)
    grants = {key.kid: KeyGrant(key, owner)}
    forged = Inbound(GW.topics.status, b'{"online": true}', (), NOW)
    async with open_storage(storage_url) as storage:
        await storage.register(owner, key)
        batch = plan_batch([forged], grants, default_catalogue())
        assert [audit.reason for audit in batch.audits] == [Reason.BAD_SIGNATURE]
        assert batch.statuses == ()
        await storage.ingest(batch)
        async with serve(storage) as http:
            response = await http.get("/v1/gateways", headers=auth())
            assert response.status_code == httpx.codes.OK, response.text
            (body,) = [g for g in response.json()["items"] if g["gateway"] == GW.gateway]
            assert body["last_seen"] is None
            assert body["online"] is False
            audit = await storage.audit(gateway=GW.gateway)
            assert [row.reason for row in audit] == [Reason.BAD_SIGNATURE]
