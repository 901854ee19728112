"""Every site map in configs/ passes `edge-agent check` and reads its simulator profile right."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from demo.__main__ import SITE_PROFILES
from drivers.modbus.codec import DataType, Order, Table
from edge_agent.cli import main
from edge_agent.config import Address, SiteConfig, load_site_config
from edge_agent.kinds.modbus import ModbusTcpDevice
from simulators.profiles import profile_domain, profile_map
from simulators.tankfarm import SimPoint
from specs.catalogue import default_catalogue

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
NOT_SITE_MAPS = {"collector.yaml"}
SITE_MAPS = sorted(p for p in CONFIGS.glob("*.yaml") if p.name not in NOT_SITE_MAPS)
DOMAINS = {"WHP", "WKK", "YHBZ", "MK", "BP"}
# Registers: (table, start, type, byte order, word order, bit) as the wire sees them.
Location = tuple[Table, int, DataType, Order, Order, int | None]


def _site(path: Path) -> SiteConfig:
    return load_site_config(path)


def _location(address: Address) -> Location:
    return (
        Table(address.table),
        address.start,
        DataType(address.type),
        Order(address.byte_order),
        Order(address.word_order),
        address.bit,
    )


def _sim_points(site: str) -> dict[Location, SimPoint]:
    found: dict[Location, SimPoint] = {}
    for sim in profile_map(SITE_PROFILES[site]):
        p = sim.point
        found[(p.table, p.start, p.dtype, p.byte_order, p.word_order, p.bit)] = sim
    return found


def test_every_site_map_has_a_simulator_profile_and_every_domain_a_site() -> None:
    assert {p.stem for p in SITE_MAPS} == set(SITE_PROFILES)
    assert {profile_domain(profile) for profile in SITE_PROFILES.values()} == DOMAINS


@pytest.mark.parametrize("path", SITE_MAPS, ids=lambda p: p.stem)
def test_site_map_passes_check(path: Path) -> None:
    result = CliRunner().invoke(main, ["check", "-c", str(path)])
    assert result.exit_code == 0, result.output
    site = _site(path)
    points = sum(len(site.points_of(device)) for device in site.devices)
    assert result.stdout.splitlines()[-1].startswith(f"{len(site.devices)} devices, {points} ")
    assert site.site.domain == profile_domain(SITE_PROFILES[path.stem])
    assert site.uplink.broker.host == "127.0.0.1"
    assert site.uplink.broker.port == 1883
    for device in site.devices:
        # The simulators speak Modbus TCP; the demo and the e2e harness rewrite host and
        # port, and by hand the simulator's default port is the one to use.
        assert isinstance(device, ModbusTcpDevice), device.id
        assert (device.host, device.port) == ("127.0.0.1", 5020), device.id


@pytest.mark.parametrize("path", SITE_MAPS, ids=lambda p: p.stem)
def test_site_map_points_are_the_profile_registers(path: Path) -> None:
    site = _site(path)
    served = _sim_points(path.stem)
    used: set[Location] = set()
    for device in site.devices:
        for code, point in site.points_of(device):
            assert point.address is not None, code
            where = _location(point.address)
            sim = served.get(where)
            assert sim is not None, f"{code}: the simulator serves nothing at {where}"
            assert point.quota == sim.quota, code
            assert point.scale == sim.scale, code
            assert point.offset == 0, code
            used.add(where)
    # Every moving value the simulator offers shows up on the site (test patterns aside).
    assert {where for where, sim in served.items() if sim.quota} <= used


@pytest.mark.parametrize("site", sorted(SITE_PROFILES))
def test_profile_values_lie_in_the_catalogue_ranges(site: str) -> None:
    catalogue = default_catalogue()
    for sim in profile_map(SITE_PROFILES[site]):
        if not sim.quota:
            continue
        indicator = catalogue.get(sim.quota)
        assert indicator is not None, sim.quota
        bounds = [v for v in (sim.low, sim.high, sim.expected) if v is not None]
        assert bounds, sim.point.key
        for value in bounds:
            assert indicator.plausible(value), (sim.point.key, value)


def test_identities_differ_per_site() -> None:
    sites = [_site(path).site for path in SITE_MAPS]
    assert len({s.enterprise for s in sites}) == len(sites)
    assert len({s.gateway for s in sites}) == len(sites)
    for info in sites:
        assert info.gateway == f"{info.enterprise}-GW01"
        assert info.enterprise[2:8] == info.district, "the credit code's district is the site's"


def test_coal_points_are_coded_mine_station_transducer() -> None:
    site = _site(CONFIGS / "coalmine.yaml")
    mine = site.site.mine_code
    assert mine is not None
    assert len(mine) == 9
    codes = [code for device in site.devices for code, _ in site.points_of(device)]
    assert codes
    pattern = re.compile(rf"^{mine}-(?P<station>[0-9]{{6}})-(?P<transducer>[0-9]{{6}})$")
    transducers = []
    for code in codes:
        match = pattern.fullmatch(code)
        assert match, code
        transducers.append(match["transducer"])
    assert len(set(transducers)) == len(transducers), "transducer codes are unique in a mine"
    # The profile keys its registers {station}-{transducer}: the site map codes agree.
    keys = {sim.point.key for sim in profile_map("coalmine")}
    assert {code.removeprefix(f"{mine}-") for code in codes} == keys
