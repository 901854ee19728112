"""The run plan crosses `edge-agent run`'s exec as JSON and comes back equal (plan_codec).

The agent's runner rebuilds everything from this JSON alone, so a value that came back as
something else (a StrEnum as its str, a tuple as a list) would reach the drivers and the
publisher changed. Checked on the plans of real site maps (every driver kind, an RTU bus,
alarms) and, with hypothesis, on arbitrary nestings of what a plan may hold.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.config import parse_site_config
from edge_agent.core.plan import AgentPlan, Backoff, StartWarning
from edge_agent.core.plan_codec import PlanCodecError, decode_plan, encode_plan, write_plan
from edge_agent.core.plan_compile import compile_plan
from specs.catalogue import default_catalogue
from specs.encoding import Encoding
from tests.support.config_files import (
    DESIGN_DEVICES,
    OPCUA_POLL_DEVICE,
    SERIAL_GAS_DEVICE,
    TCP_SITE,
    site_head,
)

BP_HEAD = site_head("BP")


def _plan(text: str) -> AgentPlan:
    config = parse_site_config(text, "site.yaml", Path("/etc/ganzhi"))
    return compile_plan(config, default_catalogue(), site_file=Path("site.yaml"), site_text=text)


@pytest.mark.parametrize(
    "text",
    [TCP_SITE + OPCUA_POLL_DEVICE + SERIAL_GAS_DEVICE, BP_HEAD + DESIGN_DEVICES],
    ids=["tcp-opcua-serial", "rtu-bus"],
)
def test_the_plan_of_a_site_map_comes_back_equal(text: str) -> None:
    plan = _plan(text)
    back = decode_plan(encode_plan(plan), AgentPlan)
    assert back == plan
    assert isinstance(back.uplink.encoding, Encoding), "a StrEnum comes back as its enum"
    assert {d.driver for d in back.devices} == {d.driver for d in plan.devices}


def test_a_plan_written_in_pieces_is_the_encoded_plan_byte_for_byte() -> None:
    plan = _plan(TCP_SITE + OPCUA_POLL_DEVICE + SERIAL_GAS_DEVICE)
    out = io.StringIO()
    write_plan(plan, out)
    assert out.getvalue().encode("ascii") == encode_plan(plan)


def test_the_rtu_bus_plan_and_each_kinds_settings_survive() -> None:
    plan = _plan(BP_HEAD + DESIGN_DEVICES)
    back = decode_plan(encode_plan(plan), AgentPlan)
    assert back.buses == plan.buses
    assert len(back.buses) == 1
    assert [type(d.settings) for d in back.devices] == [type(d.settings) for d in plan.devices]


def test_a_plan_naming_a_class_outside_the_project_is_refused() -> None:
    with pytest.raises(PlanCodecError, match="not a type of this project"):
        decode_plan(json.dumps({"$": "subprocess:Popen", "args": "true"}).encode(), AgentPlan)


def test_a_plan_of_another_type_is_refused() -> None:
    data = encode_plan(Backoff(initial=1.0, cap=2.0))
    with pytest.raises(PlanCodecError, match="not a AgentPlan"):
        decode_plan(data, AgentPlan)


_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(max_size=16)
    | st.builds(Path, st.text(alphabet="abc/._-", min_size=1, max_size=12))
    | st.sampled_from(list(Encoding))
)
_KEYS = st.text(max_size=8) | st.integers()
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4).map(tuple)
        | st.frozensets(st.text(max_size=6) | st.integers(), max_size=4)
        | st.dictionaries(_KEYS, inner, max_size=4)
        | st.builds(StartWarning, st.text(max_size=8), st.dictionaries(st.text(max_size=6), inner))
    ),
    max_leaves=12,
)


@given(value=_VALUES, cap=st.floats(min_value=0, allow_infinity=True, allow_nan=False))
def test_any_value_a_plan_may_hold_comes_back_equal_and_of_its_type(
    value: object, cap: float
) -> None:
    plan = StartWarning("probe", {"value": value, "backoff": Backoff(initial=0.5, cap=cap)})
    back = decode_plan(encode_plan(plan), StartWarning)
    assert back == plan
    assert type(back.fields["value"]) is type(value)
    assert math.isinf(cap) == math.isinf(back.fields["backoff"].cap)  # type: ignore[attr-defined]


def test_equal_strings_of_a_decoded_plan_are_kept_once() -> None:
    # G7: a point's device id, quota and units repeat per point; the runner holds them once.
    plan = decode_plan(encode_plan(_plan(BP_HEAD + DESIGN_DEVICES)), AgentPlan)
    by_device: dict[str, list[str]] = {}
    for point in plan.points:
        by_device.setdefault(point.device_id, []).append(point.device_id)
    shared = [ids for ids in by_device.values() if len(ids) > 1]
    assert shared, "the map has a device with several points"
    for ids in shared:
        assert all(device_id is ids[0] for device_id in ids)


def test_equal_frozen_scalar_values_are_shared_and_unequal_ones_kept_apart() -> None:
    # G7: 1,000 points' all-None Limits decode as one object. Sharing must never merge values
    # that only compare equal: -0.0 and 0.0, or 1, 1.0 and True.
    values = (
        Backoff(initial=0.0, cap=1.0),
        Backoff(initial=-0.0, cap=1.0),
        Backoff(initial=0.0, cap=1.0),
        Backoff(initial=1, cap=True),
        Backoff(initial=1.0, cap=1.0),
    )
    back = decode_plan(encode_plan(StartWarning("probe", {"values": values})), StartWarning)
    decoded = back.fields["values"]
    assert isinstance(decoded, tuple)
    assert decoded == values
    assert decoded[0] is decoded[2]
    assert math.copysign(1.0, decoded[1].initial) == -1.0
    assert [(type(b.initial), type(b.cap)) for b in decoded[3:]] == [(int, bool), (float, float)]
