"""OPC UA driver against the real asyncua slope simulator on loopback (R13).

One unsecured simulator serves most tests (module scope: asyncua takes over a second to
build its address space); restarts and security get their own servers. Every wait is
bounded by a deadline, never a bare sleep-and-hope.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from drivers.base import (
    Driver,
    DriverConnectionError,
    DriverError,
    Quality,
    RawSample,
)
from drivers.opcua import (
    FLAG_HELD,
    FLAG_LOCAL_TIME,
    FLAG_SERVER_TIME,
    OpcUaDriver,
    OpcUaSecurityError,
    ReadMode,
    SecurityMode,
    UaPoint,
    UaSecurity,
    UaValue,
    check_node_id,
    quality_of,
    status_name,
    to_sample,
)
from simulators.opcua_security import SimSecurity
from simulators.pki import TestPki, make_test_pki
from simulators.slope_opcua import SlopeServer, main
from tests.support.broker import free_port
from tests.support.connected import connected

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
    from pathlib import Path

# One loop for the module, so the module-scoped simulators serve every async test.
module_loop = pytest.mark.asyncio(loop_scope="module")

PUBLISHING = 0.1
KEEPALIVE = 1.0
TIMEOUT = 2.0
PASSWORD = "s3cret"  # noqa: S105 -- the simulator's test user
SLOPE_KEYS = ("Slope.G1.X", "Slope.G1.Y", "Slope.G1.Z", "Slope.I1.Angle", "Slope.R1.Rain")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sim() -> AsyncIterator[SlopeServer]:
    async with SlopeServer(stations=2, seed=3, interval=0.1) as running:
        yield running


def points_for(sim: SlopeServer, keys: Sequence[str] = SLOPE_KEYS) -> list[UaPoint]:
    return [UaPoint(key, sim.node_id(key)) for key in keys]


def make_driver(
    endpoint: str,
    points: Sequence[UaPoint],
    *,
    mode: ReadMode = ReadMode.SUBSCRIBE,
    security: UaSecurity | None = None,
    username: str | None = None,
    password: str | None = None,
    timeout: float = TIMEOUT,
) -> OpcUaDriver:
    return OpcUaDriver(
        "slope-1",
        endpoint,
        points,
        mode=mode,
        publishing_interval=PUBLISHING,
        keepalive=KEEPALIVE,
        timeout=timeout,
        security=security,
        username=username,
        password=password,
    )


async def eventually(
    probe: Callable[[], Awaitable[bool]], *, within: float, every: float = 0.05
) -> float:
    """Await `probe()` until it is true; return the seconds it took, fail after `within`."""
    started = time.monotonic()
    while not await probe():
        if time.monotonic() - started > within:
            pytest.fail(f"condition not met within {within} s")
        await asyncio.sleep(every)
    return time.monotonic() - started


def by_key(samples: list[RawSample]) -> dict[str, RawSample]:
    return {s.key: s for s in samples}


# -- pure mapping ----------------------------------------------------------------------


def test_status_severity_maps_to_quality() -> None:
    assert quality_of(0) is Quality.GOOD
    assert quality_of(0x00960000) is Quality.GOOD  # GoodLocalOverride
    assert quality_of(0x40900000) is Quality.UNCERTAIN  # UncertainLastUsableValue
    assert quality_of(0x808C0000) is Quality.BAD  # BadSensorFailure
    assert quality_of(0xC0000000) is Quality.BAD  # reserved severity: never trusted
    assert status_name(0x808C0000 | 0x0400) == "BadSensorFailure"  # info bits ignored
    assert status_name(0x40900000) == "UncertainLastUsableValue"
    assert status_name(0x80FF0000) == "0x80FF0000"


def test_sample_rules() -> None:
    good = UaValue(1.5, 0, source_time=100.0, server_time=101.0)
    sample = to_sample("k", good, wall=200.0, mono=5.0)
    assert (sample.value, sample.quality, sample.t_wall, sample.flags) == (
        1.5,
        Quality.GOOD,
        100.0,
        (),
    )
    held = to_sample("k", good, wall=200.0, mono=5.0, previous=good)
    assert (held.value, held.t_wall, held.flags) == (1.5, 200.0, (FLAG_HELD,))
    server_only = to_sample("k", UaValue(2, 0, server_time=101.0), wall=200.0, mono=5.0)
    assert (server_only.value, server_only.t_wall) == (2.0, 101.0)
    assert server_only.flags == (FLAG_SERVER_TIME,)
    bare = UaValue(value=True, status=0)
    local = to_sample("k", bare, wall=200.0, mono=5.0, previous=bare)
    assert (local.value, local.t_wall, local.flags) == (1.0, 200.0, (FLAG_LOCAL_TIME,))
    bad = to_sample("k", UaValue(3.0, 0x808C0000, source_time=100.0), wall=200.0, mono=5.0)
    assert bad.quality is Quality.BAD
    assert bad.value is None
    assert bad.flags == ("BadSensorFailure",)
    assert bad.error is not None
    assert bad.error.startswith("BadSensorFailure: ")
    text = to_sample("k", UaValue("on", 0, source_time=100.0), wall=200.0, mono=5.0)
    assert text.quality is Quality.BAD
    assert text.error == "not_numeric: str value with status Good"


def test_configuration_is_checked() -> None:
    assert check_node_id("ns=2;s=Slope.G1.X") == "ns=2;s=Slope.G1.X"
    assert check_node_id("nsu=urn:ganzhi:sim:slope;s=Slope.G1.X")
    for bad in ("Slope.G1.X", "ns=x;s=1", ""):
        with pytest.raises(ValueError, match="node id"):
            UaPoint("k", bad)
    with pytest.raises(ValueError, match=r"opc\.tcp"):
        OpcUaDriver("d", "http://host:4840", [])
    with pytest.raises(ValueError, match="unique"):
        OpcUaDriver("d", "opc.tcp://h", [UaPoint("k", "i=1"), UaPoint("k", "i=2")])
    with pytest.raises(ValueError, match="keepalive"):
        OpcUaDriver("d", "opc.tcp://h", [], publishing_interval=2.0, keepalive=1.0)
    assert OpcUaDriver("d", "opc.tcp://plc.local", []).endpoint == "opc.tcp://plc.local:4840"


def test_simulator_prints_its_node_map(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--nodes", "--stations", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5
    assert '"node": "ns=2;s=Slope.G1.X"' in lines[0]


# -- subscribe mode --------------------------------------------------------------------


@module_loop
async def test_subscribe_delivers_values_with_source_timestamps(sim: SlopeServer) -> None:
    driver: Driver = make_driver(sim.endpoint, points_for(sim))
    assert isinstance(driver, OpcUaDriver)
    async with connected(driver):
        first = await driver.read()
        before = time.time()
        assert [s.key for s in first] == list(SLOPE_KEYS)
        for sample in first:
            assert sample.quality is Quality.GOOD, sample
            assert sample.value is not None
            assert sample.flags == (), sample  # a source timestamp, a new observation
            assert before - 5.0 < sample.t_wall <= before, sample

        latest = first[0]

        async def gnss_moved() -> bool:
            nonlocal latest
            latest = by_key(await driver.read())["Slope.G1.X"]
            return FLAG_HELD not in latest.flags

        await eventually(gnss_moved, within=2.0, every=0.15)
        assert latest.t_wall > first[0].t_wall  # the newest notification's SourceTimestamp


@module_loop
async def test_subscribe_falls_back_to_server_timestamp(sim: SlopeServer) -> None:
    async with connected(make_driver(sim.endpoint, points_for(sim))) as driver:
        sim.use_source_timestamps(on=False)
        try:

            async def server_stamped() -> bool:
                return FLAG_SERVER_TIME in by_key(await driver.read())["Slope.G1.X"].flags

            await eventually(server_stamped, within=2.0)
        finally:
            sim.use_source_timestamps(on=True)


@module_loop
async def test_silent_source_reads_as_held(sim: SlopeServer) -> None:
    async with connected(make_driver(sim.endpoint, points_for(sim))) as driver:
        sim.silence()
        try:
            await asyncio.sleep(0.3)  # let the last writes before the silence arrive
            last = by_key(await driver.read())
            wall = time.time()
            again = by_key(await driver.read())
        finally:
            sim.resume()
    for key in SLOPE_KEYS:
        assert again[key].value == last[key].value
        assert again[key].quality is Quality.GOOD
        assert FLAG_HELD in again[key].flags
        assert again[key].t_wall >= wall  # stamped with the read, not the old source time


@module_loop
@pytest.mark.parametrize("mode", [ReadMode.SUBSCRIBE, ReadMode.POLL])
async def test_status_codes_map_to_quality(sim: SlopeServer, mode: ReadMode) -> None:
    points = [*points_for(sim), UaPoint("missing", "ns=2;s=Slope.G9.X")]
    async with connected(make_driver(sim.endpoint, points, mode=mode)) as driver:
        await sim.set_status("Slope.G1.X", "BadSensorFailure")
        await sim.set_status("Slope.G1.Y", "UncertainLastUsableValue")
        try:

            async def both_flagged() -> bool:
                got = by_key(await driver.read())
                return (
                    got["Slope.G1.X"].quality is Quality.BAD
                    and got["Slope.G1.Y"].quality is Quality.UNCERTAIN
                )

            await eventually(both_flagged, within=2.0)
            got = by_key(await driver.read())
        finally:
            await sim.clear_status()
    bad, uncertain = got["Slope.G1.X"], got["Slope.G1.Y"]
    assert bad.value is None
    assert "BadSensorFailure" in bad.flags
    assert bad.error is not None
    assert bad.error.startswith("BadSensorFailure:")
    assert uncertain.value is not None
    assert "UncertainLastUsableValue" in uncertain.flags
    assert got["Slope.G1.Z"].quality is Quality.GOOD
    missing = got["missing"]
    assert missing.quality is Quality.BAD
    assert "BadNodeIdUnknown" in missing.flags


# -- poll mode -------------------------------------------------------------------------


@module_loop
async def test_poll_reads_all_nodes_in_one_service_call(sim: SlopeServer) -> None:
    keys = (*SLOPE_KEYS, "Slope.G2.X")
    points = [*points_for(sim, keys), UaPoint("alias", sim.node_id("Slope.G1.X"))]
    async with connected(make_driver(sim.endpoint, points, mode=ReadMode.POLL)) as driver:
        sim.read_calls.clear()
        samples = await driver.read()
        calls = [c for c in sim.read_calls if any("Slope" in node for node in c)]
    assert calls == [tuple(sim.node_id(k) for k in keys)]  # one call, each node once
    got = by_key(samples)
    assert [s.key for s in samples] == [p.key for p in points]
    assert all(s.quality is Quality.GOOD for s in samples), samples
    assert got["alias"].value == got["Slope.G1.X"].value
    assert got["alias"].t_wall == got["Slope.G1.X"].t_wall
    assert all(s.flags == () for s in samples)  # source timestamps present


@module_loop
async def test_poll_tells_a_frozen_sensor_from_a_silent_source(sim: SlopeServer) -> None:
    points = points_for(sim, ("Slope.G1.X", "Slope.G1.Y"))
    async with connected(make_driver(sim.endpoint, points, mode=ReadMode.POLL)) as driver:
        sim.freeze("Slope.G1.X")
        try:
            first = by_key(await driver.read())
            await asyncio.sleep(0.3)  # three simulator updates
            stuck = by_key(await driver.read())
            sim.silence()
            await asyncio.sleep(0.2)  # let a write in flight land
            await driver.read()
            wall = time.time()
            silent = by_key(await driver.read())
        finally:
            sim.resume()
            sim.unfreeze()
    # A stuck sensor: same value, new source timestamps; nothing for the driver to flag.
    assert stuck["Slope.G1.X"].value == first["Slope.G1.X"].value
    assert stuck["Slope.G1.X"].t_wall > first["Slope.G1.X"].t_wall
    assert stuck["Slope.G1.X"].flags == ()
    # A silent source: the same observation again, so `held`, stamped with the read.
    assert all(FLAG_HELD in s.flags and s.t_wall >= wall for s in silent.values())


@module_loop
async def test_poll_namespace_uri_node_ids_resolve(sim: SlopeServer) -> None:
    points = [UaPoint("x", "nsu=urn:ganzhi:sim:slope;s=Slope.G1.X")]
    async with connected(make_driver(sim.endpoint, points, mode=ReadMode.POLL)) as driver:
        (sample,) = await driver.read()
    assert sample.quality is Quality.GOOD


@module_loop
@pytest.mark.parametrize("mode", [ReadMode.POLL, ReadMode.SUBSCRIBE])
async def test_a_namespace_uri_the_server_lacks_fails_its_point_not_the_device(
    sim: SlopeServer, mode: ReadMode
) -> None:
    """One point's namespace URI mistyped failed `connect` for the whole device ('server has
    no namespace'), so none of its points was ever read; a wrong namespace index (ns=9) was
    the one point's BadNodeIdUnknown."""
    points = [
        UaPoint("x", "nsu=urn:ganzhi:sim:slope;s=Slope.G1.X"),
        UaPoint("typo", "nsu=urn:ganzhi:sim:slop;s=Slope.G1.Y"),
        UaPoint("y", sim.node_id("Slope.G1.Y")),
    ]
    async with connected(make_driver(sim.endpoint, points, mode=mode)) as driver:
        samples = {s.key: s for s in await driver.read()}
    assert (samples["x"].quality, samples["y"].quality) == (Quality.GOOD, Quality.GOOD)
    typo = samples["typo"]
    assert typo.quality is Quality.BAD
    assert typo.error is not None
    assert "'urn:ganzhi:sim:slop'" in typo.error


# -- link loss and recovery ------------------------------------------------------------


async def link_lost(driver: OpcUaDriver) -> bool:
    """A read fails as a lost link (the driver found the server gone)."""
    try:
        await driver.read()
    except DriverConnectionError:
        return True
    return False


@module_loop
async def test_hung_server_is_detected_within_two_keepalives(sim: SlopeServer) -> None:
    driver = make_driver(sim.endpoint, points_for(sim), timeout=1.0)
    await driver.connect()
    try:
        await driver.read()
        sim.hang()

        await eventually(lambda: link_lost(driver), within=2 * KEEPALIVE)
        started = time.monotonic()
        await driver.close()
        assert time.monotonic() - started < 3.0  # a hung server cannot stall close()
    finally:
        sim.unhang()
        await driver.close()


@module_loop
async def test_server_restart_resubscribes_within_two_keepalives() -> None:
    async with SlopeServer(stations=1, seed=5, interval=0.1) as sim:
        driver = make_driver(sim.endpoint, points_for(sim, ("Slope.G1.X", "Slope.I1.Angle")))
        await driver.connect()
        try:
            first_client = driver._link.client if driver._link else None
            assert all(s.quality is Quality.GOOD for s in await driver.read())
            await sim.stop_server()

            await eventually(lambda: link_lost(driver), within=2 * KEEPALIVE)
            await driver.close()
            with pytest.raises(DriverConnectionError):
                await driver.connect()  # nobody listening: refused, quickly

            await sim.start_server()

            async def fresh_values() -> bool:
                if not driver.connected:
                    try:
                        await driver.connect()
                    except DriverConnectionError:
                        return False
                samples = await driver.read()
                return all(s.quality is Quality.GOOD and FLAG_HELD not in s.flags for s in samples)

            took = await eventually(fresh_values, within=2 * KEEPALIVE, every=0.1)
            assert took < 2 * KEEPALIVE
            assert driver._link is not None
            assert driver._link.client is not first_client  # a new asyncua Client
        finally:
            await driver.close()


@module_loop
async def test_connect_to_nothing_is_a_connection_error() -> None:
    driver = make_driver(f"opc.tcp://127.0.0.1:{free_port()}", [UaPoint("k", "i=2258")])
    with pytest.raises(DriverConnectionError):
        await driver.connect()
    with pytest.raises(DriverConnectionError, match="not connected"):
        await driver.read()
    await driver.close()


# -- security --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def secure_sim(pki: TestPki) -> AsyncIterator[SlopeServer]:
    security = SimSecurity(
        cert=pki.server_cert,
        key=pki.server_key,
        trusted=(pki.client_cert,),
        modes=("SignAndEncrypt",),
    )
    async with SlopeServer(
        stations=1,
        interval=0.2,
        security=security,
        users={"agent": PASSWORD},
        allow_anonymous=False,
    ) as running:
        yield running


def client_security(
    pki: TestPki,
    *,
    mode: SecurityMode = SecurityMode.SIGN_AND_ENCRYPT,
    cert: Path | None = None,
    key: Path | None = None,
    server_cert: Path | None = None,
) -> UaSecurity:
    return UaSecurity(
        cert=cert or pki.client_cert,
        key=key or pki.client_key,
        server_cert=server_cert or pki.server_cert,
        mode=mode,
    )


@module_loop
async def test_sign_and_encrypt_with_certificate_files_and_user(
    secure_sim: SlopeServer, pki: TestPki
) -> None:
    driver = make_driver(
        secure_sim.endpoint,
        points_for(secure_sim, ("Slope.G1.X",)),
        security=client_security(pki),
        username="agent",
        password=PASSWORD,
    )
    async with connected(driver):
        (sample,) = await driver.read()
    assert sample.quality is Quality.GOOD


@module_loop
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("untrusted_cert", "BadCertificateUntrusted"),
        ("wrong_password", "BadUserAccessDenied"),
        ("no_user", "BadIdentityTokenRejected"),
        ("sign_only", "no Basic256Sha256/Sign endpoint"),
        ("no_security", "no None/None endpoint"),
        ("other_server_cert", "differs from the pinned server_cert"),
    ],
)
async def test_refused_clients_get_a_security_error(
    secure_sim: SlopeServer, pki: TestPki, case: str, expected: str
) -> None:
    security: UaSecurity | None = client_security(pki)
    username: str | None = "agent"
    password: str | None = PASSWORD
    if case == "untrusted_cert":
        security = client_security(pki, cert=pki.rogue_cert, key=pki.rogue_key)
    elif case == "wrong_password":
        password = "guess"  # noqa: S105 -- a deliberately wrong password
    elif case == "no_user":
        username = password = None
    elif case == "sign_only":
        security = client_security(pki, mode=SecurityMode.SIGN)
    elif case == "no_security":
        security = None
    elif case == "other_server_cert":
        security = client_security(pki, server_cert=pki.rogue_cert)
    driver = make_driver(
        secure_sim.endpoint,
        points_for(secure_sim, ("Slope.G1.X",)),
        security=security,
        username=username,
        password=password,
        timeout=1.0,
    )
    # The message names the reason: refused outright, not a timeout after a silent server.
    with pytest.raises(OpcUaSecurityError, match=expected) as refused:
        await driver.connect()
    assert isinstance(refused.value, DriverError)
    assert not driver.connected
    await driver.close()


@module_loop
async def test_unreadable_key_file_is_a_security_error(pki: TestPki, tmp_path: Path) -> None:
    broken = tmp_path / "broken-key.pem"
    broken.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    driver = make_driver(
        "opc.tcp://127.0.0.1:9",
        [UaPoint("k", "i=2258")],
        security=client_security(pki, key=broken),
    )
    with pytest.raises(OpcUaSecurityError, match="private key"):
        await driver.connect()
