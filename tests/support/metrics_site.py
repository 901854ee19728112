"""The site map of the tests that scrape a whole agent's `metrics.listen` (integration and e2e).

Modbus RTU slaves on one bus (one YHBZ-PC point each, on the pattern slave's ramp register
210) and a Modbus TCP device at a port nobody listens on, so the figures show good readings,
a silent slave and a refused connection side by side.
"""

from __future__ import annotations

from collections.abc import Sequence

from tests.support.answering import ANSWERING_MAP
from tests.support.collector_client import SimGateway


def metrics_site_map(
    gateway: SimGateway,
    *,
    broker: int,
    bus: str,
    slaves: Sequence[tuple[str, int]],
    nobody: int,
    metrics: int,
    uplink: str = "",
    nobody_poll: str = "300ms",
) -> str:
    """`slaves` as (device id, unit id); the point of unit N is `RN-A`, the TCP device's `R9-A`.

    Unit 2, which the simulators keep silent, has a short timeout, so its errors show soon;
    the others answer, and theirs is one no stall of this machine reaches.
    """
    rtu = "".join(
        f"  - {{id: {name}, driver: modbus_rtu, port: {bus}, baudrate: 19200, parity: N,"
        f" stopbits: 2, unit_id: {unit}, poll: 300ms,"
        f" timeout: {'150ms' if unit == 2 else ANSWERING_MAP}, points: [\n"
        f"     {{point: R{unit}-A, quota: YHBZ-PC, address: {{table: holding, start: 210,"
        " type: uint16}}]}\n"
        for name, unit in slaves
    )
    return (
        gateway.site_head(broker, uplink=uplink, outbox=", flush_interval: 100ms")
        + f'metrics: {{listen: "127.0.0.1:{metrics}"}}\n'
        "devices:\n"
        f"{rtu}"
        f"  - {{id: nobody, driver: modbus_tcp, host: 127.0.0.1, port: {nobody},"
        f" poll: {nobody_poll},\n"
        "     points: [{point: R9-A, quota: YHBZ-PC, address: {table: holding, start: 0,"
        " type: uint16}}]}\n"
    )
