"""Whether the registry takes a registration or an announced key (pure; both backends ask)."""

from __future__ import annotations

from collector.model import Gateway, GatewayKey, KeyAnnouncement
from collector.storage.base import RegistryError
from specs.records import iso_time


def refusal(held: GatewayKey | None, announced: KeyAnnouncement) -> str | None:
    """Why the announced key is not taken, or None: new, or this gateway's key already.

    A kid registered to another gateway stays theirs (a gateway may publish anyone's public
    key as its "next" one); a revoked key never comes back; a kid held with other bytes is
    a collision, refused; nor does a key this gateway has retired, or is retiring (its
    successor announced, the overlap running): taken, it would retire the key that
    announced it, and after the overlap every key of the gateway would be retired.
    """
    key = announced.key
    if held is None:
        return None
    if held.gateway != key.gateway:
        return f"it is registered to gateway {held.gateway}"
    if held.revoked_at is not None:
        return f"it was revoked at {iso_time(held.revoked_at)}"
    if held.public_pem.strip() != key.public_pem.strip() or held.alg != key.alg:
        return "its kid is registered with another public key"
    return _leaving(held, key.added_at)


def _leaving(held: GatewayKey, at: float) -> str | None:
    """Why a key of the gateway's own cannot be announced again at `at`: retired, or retiring."""
    if held.retired_at is None:
        return None
    if held.retired_at <= at:
        return f"it was retired at {iso_time(held.retired_at)}"
    return f"it is being replaced: it retires at {iso_time(held.retired_at)}"


def retire_at(announced: KeyAnnouncement, overlap: float) -> float:
    """When the replaced key stops signing: the announcement's arrival plus the overlap."""
    return announced.key.added_at + overlap


def check_owner(gateway: Gateway, key: GatewayKey) -> None:
    """Raise unless `key`, registered with `gateway`, names that gateway as its owner."""
    if key.gateway != gateway.gateway:
        raise RegistryError(f"key {key.kid} is for {key.gateway}, not {gateway.gateway}")


def check_same_gateway(held: Gateway, gateway: Gateway) -> None:
    """Raise unless a registration names the enterprise and district `held` has."""
    if (held.enterprise, held.district) != (gateway.enterprise, gateway.district):
        raise RegistryError(
            f"gateway {gateway.gateway} is registered in district {held.district}"
            f" (enterprise {held.enterprise}), not {gateway.district}"
        )


def check_same_key(held: GatewayKey, key: GatewayKey) -> None:
    """Raise unless registering `key` again finds it stored as it is (`held`)."""
    if held.gateway != key.gateway:
        raise RegistryError(f"key {key.kid} is registered to gateway {held.gateway}")
    if held.revoked_at is not None:
        raise RegistryError(f"key {key.kid} was revoked; a revoked key cannot come back")
    if held.public_pem.strip() != key.public_pem.strip() or held.alg != key.alg:
        raise RegistryError(f"key id {key.kid} is registered with another public key")
