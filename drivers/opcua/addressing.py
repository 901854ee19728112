"""Where an OPC UA driver reads: the endpoint URL, the configured node ids, one Read call.

Poll mode reads every distinct node in one Read service call (MaxAge 0: the server is to
take a fresh value from its source); both modes resolve ``nsu=`` namespace URIs once per
connection, on the server that is connected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from asyncua import ua
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.uaerrors import UaError

from drivers.base import DriverProtocolError
from drivers.opcua.translate import reduce_value, translate

if TYPE_CHECKING:
    from collections.abc import Sequence

    from asyncua.client.client import Client

    from drivers.opcua.link import Link
    from drivers.opcua.model import UaPoint, UaValue

DEFAULT_PORT = 4840


def normalize_endpoint(endpoint: str) -> str:
    """Check an ``opc.tcp://`` URL and fill in the default port."""
    parts = urlsplit(endpoint)
    if parts.scheme != "opc.tcp" or not parts.hostname:
        raise ValueError(f"endpoint must be opc.tcp://host[:port][/path], got {endpoint!r}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"endpoint {endpoint!r}: {exc}") from None
    if port is None:
        return urlunsplit(parts._replace(netloc=f"{parts.netloc}:{DEFAULT_PORT}"))
    return endpoint


async def resolve_nodes(
    client: Client, points: Sequence[UaPoint]
) -> tuple[dict[str, ua.NodeId], dict[str, str]]:
    """Parse each point's node id; ``nsu=`` namespace URIs are looked up on the server.

    Returns the node of each point, and why not for each point whose namespace URI the
    server does not have: that point reads BAD with the reason, the others are read (a
    mistyped URI is one point's mistake, as a wrong ``ns=`` index is).
    """
    namespaces: list[str] | None = None
    nodes: dict[str, ua.NodeId] = {}
    unresolved: dict[str, str] = {}
    for point in points:
        parsed = ua.NodeId.from_string(point.node_id)
        uri = getattr(parsed, "NamespaceUri", None)
        if uri:
            if namespaces is None:
                namespaces = list(await client.get_namespace_array())
            if uri not in namespaces:
                unresolved[point.key] = f"unknown_namespace: the server has no namespace {uri!r}"
                continue
            parsed = ua.NodeId(
                parsed.Identifier, ua.Int16(namespaces.index(uri)), parsed.NodeIdType
            )
        nodes[point.key] = ua.NodeId(parsed.Identifier, parsed.NamespaceIndex, parsed.NodeIdType)
    return nodes, unresolved


async def read_values(link: Link, device_id: str) -> dict[str, UaValue]:
    """One Read service call for every distinct node."""
    unique = list(dict.fromkeys(link.nodes.values()))
    if not unique:  # a Read of nothing is a service fault (BadNothingToDo)
        return {}
    params = ua.ReadParameters(
        MaxAge=0,
        TimestampsToReturn=ua.TimestampsToReturn.Both,
        NodesToRead=[ua.ReadValueId(NodeId=n, AttributeId=AttributeIds.Value) for n in unique],
    )
    try:
        results = await link.client.uaclient.read(params)
    except (OSError, UaError) as exc:
        # OSError covers the dropped socket and TimeoutError; UaError the service faults.
        raise translate(exc, device_id, connecting=False) from exc
    if len(results) != len(unique):
        raise DriverProtocolError(
            f"{device_id}: Read returned {len(results)} results for {len(unique)} nodes"
        )
    by_node = {node: reduce_value(dv) for node, dv in zip(unique, results, strict=True)}
    return {key: by_node[node] for key, node in link.nodes.items()}
