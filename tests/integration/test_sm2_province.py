"""A mixed province: an SM2 gateway beside an Ed25519 one, delivering to one collector.

Real Mosquitto, real storage (SQLite and PostgreSQL): both gateways' blocks and metas are
verified, stored and ACKed; every ACK verifies under the collector's key (itself Ed25519 or
SM2); `collector verify` re-checks the stored SM2 and Ed25519 blocks alike; and an SM2 block
signed under the Ed25519 gateway's key id is rejected.
"""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from collector.model import Reason
from collector.readmodel import EVERYTHING, ReadingFilter
from collector.storage.capabilities import BlockArchive
from collector.verify.service import verify_stored
from specs.meta import PointMeta
from specs.signing import ED25519, SM2_SM3, Signature, signature_properties, signing_key_from_seed
from tests.support.broker import Broker
from tests.support.collector_client import SimGateway, gateway_link, sim_gateway
from tests.support.collector_env import register, running_ingest, wait_until


def sm2_gateway() -> SimGateway:
    base = sim_gateway(serial=7, district="360100")
    seed = hashlib.sha256(f"gz-test-sm2-key/{base.gateway}".encode()).digest()
    return dataclasses.replace(base, key=signing_key_from_seed(seed, SM2_SM3))


@pytest.mark.parametrize("collector_alg", [ED25519, SM2_SM3])
async def test_sm2_and_ed25519_gateways_are_stored_and_acked_by_one_collector(
    broker: Broker, storage_url: str, collector_alg: str
) -> None:
    collector_key = signing_key_from_seed(b"mixed-province-collector-key-32b", collector_alg)
    collector = collector_key.public()
    sm2, ed = sm2_gateway(), sim_gateway(serial=8, district="360100")
    assert (sm2.key.alg, ed.key.alg) == (SM2_SM3, ED25519)

    async with running_ingest(broker.port, storage_url, collector_key) as (_, storage):
        await register(storage, sm2, ed)
        async with (
            gateway_link(broker.port, sm2) as sm2_link,
            gateway_link(broker.port, ed) as ed_link,
        ):
            for link in (sm2_link, ed_link):
                meta = link.gateway.meta(
                    [PointMeta("T001-LT-01", "WHP-LT", "m", "储罐液位", "tank-plc", {"high": 8.5})]
                )
                await link.publish(meta, topic=link.gateway.topics.meta)
            for seq in (1, 2, 3):
                for link in (sm2_link, ed_link):
                    await link.send(seq)
                    signed = await link.next_ack()
                    # The collector signs every ACK with its own key, whatever the gateway's.
                    collector.verify(signed.signature, signed.payload)
                    assert signed.signature.alg == collector_alg
                    assert (signed.ack.gateway, signed.ack.acked_through) == (
                        link.gateway.gateway,
                        seq,
                    )

            # An SM2 signature presented under the Ed25519 gateway's key id does not pass.
            forged = ed_link.gateway.block(4, prev=ed_link.prev(4))
            sm2_sig = sm2.key.sign(forged)
            await ed_link.publish(
                forged, signature_properties(Signature(SM2_SM3, ed.key.kid, sm2_sig.sig))
            )
            rejected = await wait_until(
                lambda: storage.audit(reason=Reason.BAD_ALGORITHM),
                lambda rows: len(rows) >= 1,
            )
            assert rejected[0].gateway == ed.gateway

        for gateway in (sm2, ed):
            page = await storage.readings(
                EVERYTHING, ReadingFilter(gateway=gateway.gateway), after=None, limit=100
            )
            assert len(page.items) == 3
            metas = await storage.point_metas(gateway.gateway)
            assert set(metas) == {"T001-LT-01"}
        assert isinstance(storage, BlockArchive)
        report = await verify_stored(storage, EVERYTHING)
        assert (report.blocks, report.verified, report.broken) == (6, 6, ())
