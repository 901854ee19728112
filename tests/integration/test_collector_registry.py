"""Gateway and key registration: the same answers on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from collector.model import Gateway
from collector.storage import open_storage
from collector.storage.base import RegistryError
from tests.support.collector_client import sim_gateway

FIRST = sim_gateway(1)
SECOND = sim_gateway(2)


async def test_registering_twice_the_same_is_harmless_and_keys_are_listed(
    storage_url: str,
) -> None:
    async with open_storage(storage_url) as storage:
        for _ in range(2):
            await storage.register(*FIRST.registration())
        await storage.register(*SECOND.registration())
        assert [g.gateway for g in await storage.gateways()] == sorted(
            [FIRST.gateway, SECOND.gateway]
        )
        (key,) = await storage.keys(FIRST.gateway)
        assert (key.kid, key.public_pem) == (FIRST.key.kid, FIRST.key.public().public_pem())
        grants = await storage.grants([FIRST.key.kid, "nobody"])
        assert set(grants) == {FIRST.key.kid}
        assert grants[FIRST.key.kid].owner.district == FIRST.district
        found = await storage.find_gateways([SECOND.gateway, "nobody"])
        assert list(found) == [SECOND.gateway]


async def test_contradicting_registrations_are_refused(storage_url: str) -> None:
    gateway, key = FIRST.registration()
    async with open_storage(storage_url) as storage:
        await storage.register(gateway, key)
        moved = dataclasses.replace(gateway, district="110101")
        with pytest.raises(RegistryError, match="registered in district 360100"):
            await storage.register(moved, key)
        other, _ = SECOND.registration()
        stolen = dataclasses.replace(key, gateway=other.gateway)
        with pytest.raises(RegistryError, match=f"registered to gateway {gateway.gateway}"):
            await storage.register(other, stolen)
        # The refused registration left nothing behind, not even its new gateway.
        assert [g.gateway for g in await storage.gateways()] == [gateway.gateway]
        assert await storage.revoke(gateway.gateway, None, at=5.0) == (key.kid,)
        assert await storage.revoke(gateway.gateway, None, at=6.0) == ()
        with pytest.raises(RegistryError, match="was revoked"):
            await storage.register(gateway, key)
        (held,) = await storage.keys()
        assert held.revoked_at == 5.0


async def test_collectors_registering_the_same_gateway_at_once_agree(storage_url: str) -> None:
    gateway, key = FIRST.registration()
    async with open_storage(storage_url) as a, open_storage(storage_url) as b:
        await asyncio.gather(*(s.register(gateway, key) for s in (a, b, a, b)))
        assert await a.gateways() == (Gateway(*dataclasses.astuple(gateway)),)
        assert len(await b.keys()) == 1


async def test_a_key_naming_another_gateway_as_its_owner_is_refused(storage_url: str) -> None:
    """The store checks the owner itself (DialectStore.register's `check_owner`): neither
    backend's registry module does any more, and a registration whose key says another
    gateway must leave nothing behind, whether that gateway is registered yet or not."""
    first, first_key = FIRST.registration()
    second, _ = SECOND.registration()
    refusal = f"key {first_key.kid} is for {first.gateway}, not {second.gateway}"
    async with open_storage(storage_url) as storage:
        with pytest.raises(RegistryError, match=refusal):
            await storage.register(second, first_key)
        assert await storage.gateways() == ()
        assert await storage.keys() == ()
        await storage.register(first, first_key)
        with pytest.raises(RegistryError, match=refusal):
            await storage.register(second, first_key)
        assert [g.gateway for g in await storage.gateways()] == [first.gateway]
        (held,) = await storage.keys()
        assert (held.kid, held.gateway) == (first_key.kid, first.gateway)
