"""Modbus TCP site simulators, one profile per domain: `serve_profile(name, host, port)`.

    profile    domain  site
    tankfarm   WHP     危化品储罐区 tank farm (simulators.tankfarm, with its test pattern)
    tailings   WKK     尾矿库 tailings pond
    fireworks  YHBZ    烟花爆竹 fireworks workshops
    slope      BP      露天矿山边坡 open-pit slope
    coalmine   MK      煤矿 coal mine safety monitoring

Each module's docstring holds its register map; `profile_map(name)` returns it as data and
``python -m simulators --profile NAME --map`` prints it.
"""

from __future__ import annotations

import random
from types import MappingProxyType
from typing import TYPE_CHECKING

from simulators.faults import Fault
from simulators.profiles import coalmine, fireworks, slope, tailings
from simulators.profiles.base import Profile, ProfileServer, SimServer
from simulators.tankfarm import register_map, serve_tankfarm

if TYPE_CHECKING:
    from collections.abc import Mapping

    from simulators.tankfarm import SimPoint

__all__ = [
    "PROFILES",
    "PROFILE_NAMES",
    "TANKFARM",
    "Profile",
    "ProfileServer",
    "SimServer",
    "profile_domain",
    "profile_map",
    "serve_profile",
]

TANKFARM = "tankfarm"
"""The original simulator's profile; it keeps its own server and options (`--tanks`)."""

PROFILES: Mapping[str, Profile] = MappingProxyType(
    {p.name: p for p in (tailings.PROFILE, fireworks.PROFILE, slope.PROFILE, coalmine.PROFILE)}
)
"""Every profile served by `ProfileServer`, by name."""

PROFILE_NAMES = (TANKFARM, *PROFILES)
"""Every profile `serve_profile` knows."""


def _profile(name: str) -> Profile:
    """Return a `ProfileServer` profile by name.

    Raises:
        ValueError: no such profile.
    """
    profile = PROFILES.get(name)
    if profile is None:
        raise ValueError(f"unknown profile {name!r}; known: {', '.join(PROFILE_NAMES)}")
    return profile


def profile_map(name: str, *, tanks: int = 3) -> tuple[SimPoint, ...]:
    """Return every point the named profile serves (`tanks` applies to the tank farm).

    Raises:
        ValueError: no such profile.
    """
    return register_map(tanks) if name == TANKFARM else _profile(name).points


def profile_domain(name: str) -> str:
    """Return the catalogue domain (WHP, WKK, ...) of the named profile's site.

    Raises:
        ValueError: no such profile.
    """
    return "WHP" if name == TANKFARM else _profile(name).domain


async def serve_profile(
    name: str,
    host: str = "127.0.0.1",
    port: int = 5020,
    *,
    seed: int = 0,
    unit_id: int = 1,
    interval: float = 0.2,
    tanks: int = 3,
    fault: Fault | None = None,
) -> SimServer:
    """Start the named profile on `host:port` (port 0 picks a free one; see `.port`).

    Use the result as ``async with await serve_profile(...) as sim:`` or call `stop()`.
    `fault` starts it misbehaving; `set_fault` and `clear_fault` switch it live.

    Raises:
        ValueError: no such profile, a non-positive interval, or fewer than one tank.
        OSError: the address cannot be bound.
    """
    if name == TANKFARM:
        return await serve_tankfarm(
            host, port, tanks=tanks, seed=seed, unit_id=unit_id, interval=interval, fault=fault
        )
    profile = _profile(name)
    if interval <= 0:
        raise ValueError("need a positive interval")
    server = ProfileServer(
        host,
        port,
        profile=profile,
        unit_id=unit_id,
        rng=random.Random(seed),
        interval=interval,
        fault=fault,
    )
    await server.start()
    return server
