"""Node ids are checked by our own grammar (drivers.opcua.model), so validating a site map
does not load asyncua; whatever the grammar accepts, asyncua parses to the same node."""

from __future__ import annotations

import base64
import string
import uuid

import pytest
from asyncua import ua
from hypothesis import given
from hypothesis import strategies as st

from drivers.opcua.model import check_node_id

GOOD = (
    "ns=2;s=Slope.G1.X",
    "i=2258",
    "ns=0;i=4294967295",
    "ns=65535;s=a;b=c",  # a string identifier runs to the end, semicolons included
    "ns=3;g=09087e75-8e5e-499b-954f-f2a9603db28a",
    "ns=1;b=M/RbKBsRVkePCePcx24oRA==",
    "ns=1;b=0x0a0b",
    "nsu=urn:ganzhi:sim:slope;s=Slope.G1.X",
    "nsu=http://x.org/UA/?a=b;i=5",
)
BAD = (
    "",
    "Slope.G1.X",
    "ns=x;s=1",
    "ns=2",
    "ns=2;",
    "s=",
    "ns=65536;i=1",
    "i=4294967296",
    "i=-1",
    "i= 1",
    "i=1;s=2",
    "ns=2;nsu=urn:a;s=x",
    "ns=2;ns=3;s=x",
    "nsu=;s=x",
    "ns=2;svr=1;s=x",
    "x=1;s=a",
    "ns=1;g=not-a-guid",
    "ns=1;b=###",
    "ns=1;b=0xzz",
    "ns=1;b=0x",  # no bytes, as "b=" (it passed: the text was not empty)
    "ns=1;q=5",
)


@pytest.mark.parametrize("text", GOOD)
def test_the_standard_forms_are_accepted_and_asyncua_agrees(text: str) -> None:
    assert check_node_id(text) == text
    ua.NodeId.from_string(text)


@pytest.mark.parametrize("text", ["svr=1;ns=2;s=Remote", "svr=0;i=2258", "svr=7;nsu=urn:a;s=x"])
def test_a_node_of_another_server_is_refused(text: str) -> None:
    """asyncua parses `svr=1;ns=2;s=X` (an ExpandedNodeId) and the driver read ns=2;s=X of the
    server at `endpoint`, silently: a hostile tester's find. The agent follows no other server.
    """
    ua.NodeId.from_string(text)  # well formed
    with pytest.raises(ValueError, match=r"names a node of another server \(svr="):
        check_node_id(text)


@pytest.mark.parametrize("text", BAD)
def test_malformed_node_ids_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="invalid OPC UA node id"):
        check_node_id(text)


def _parts() -> st.SearchStrategy[str]:
    number = st.one_of(st.integers(0, 70_000).map(str), st.text("0123456789x- ", max_size=6))
    word = st.text(string.printable, max_size=12)
    identifier = st.one_of(
        st.tuples(st.just("i="), number),
        st.tuples(st.just("s="), word),
        st.tuples(st.just("g="), st.one_of(st.uuids().map(str), word)),
        st.tuples(
            st.just("b="),
            st.one_of(st.binary(max_size=8).map(lambda b: base64.b64encode(b).decode()), word),
        ),
        st.tuples(st.sampled_from(["ns=", "nsu=", "svr=", "x=", ""]), word),
    ).map("".join)
    prefix = st.tuples(st.sampled_from(["ns=", "nsu=", "svr=", "", "q="]), number).map(
        lambda p: "".join(p) + ";"
    )
    return st.tuples(st.lists(prefix, max_size=3), identifier).map(lambda t: "".join(t[0]) + t[1])


def _identifier(text: str) -> tuple[str, str]:
    """(type, identifier) of a node id the grammar accepted: what follows its prefixes."""
    rest = text
    while rest.partition("=")[0] in {"ns", "nsu", "svr"}:
        rest = rest.partition(";")[2]
    kind, _, value = rest.partition("=")
    return kind, value


def _decoded(kind: str, value: str) -> object:
    if kind == "i":
        return int(value)
    if kind == "g":
        return uuid.UUID(value)
    if kind == "b":
        return bytes.fromhex(value[2:]) if value.startswith("0x") else base64.b64decode(value)
    return value


@given(_parts())
def test_what_the_grammar_accepts_asyncua_parses_to_the_same_node(text: str) -> None:
    try:
        check_node_id(text)
    except ValueError:
        return
    node = ua.NodeId.from_string(text)  # must not raise
    kind, value = _identifier(text)
    assert node.Identifier == _decoded(kind, value)
    if text.startswith("ns=") or ";ns=" in text.partition(f"{kind}=")[0]:
        namespace = text.partition("ns=")[2].partition(";")[0]
        assert node.NamespaceIndex == int(namespace)
