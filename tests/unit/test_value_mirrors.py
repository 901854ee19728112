"""Values written twice where one side may not import the other are held to one set here.

A sibling of `test_literal_mirrors.py` (config `Literal`s against driver and wire enums): these
are the other restated vocabularies. `drivers/` and `specs/` import nothing of each other, so
the driver's and the wire's `Quality` are two enums; the agent's running core may not import
the site map's models (G7: no pydantic in the runner), nor they the core (which builds from
them), so the tailings colours are written in both; and the alarm vocabulary lives in the
catalogue's data file, which the config's `Literal`s and the core's tables restate. A value
added on one side only would fail at run time (a driver quality `normalize` has no wire quality
for) or be silently unusable (a catalogue level no site map can set); each test here fails
first.
"""

from __future__ import annotations

from typing import get_args

from collector.api.routes.verify import BrokenOut, HoleOut, VerifyOut, verify_out
from collector.export.aqss import TRANSDUCER_STATE
from collector.verify.core import StoredBlock, VerifyReport, key_ring, report_json, tally
from drivers.base import Quality as DriverQuality
from edge_agent.config import SITE_ALARM_KINDS, THRESHOLD_FAMILIES, THRESHOLD_LEVELS
from edge_agent.config.alarms import EscalationAlarm
from edge_agent.config.limits import COLOURS as CONFIG_COLOURS
from edge_agent.core.alarms import build
from edge_agent.core.alarms.rules import COLOURS, ESCALATION
from edge_agent.core.normalize import _QUALITY
from specs.catalogue import DERIVED_FAMILY, RATE_LEVEL, default_catalogue
from specs.records import Quality
from specs.signing import Signature

CATALOGUE = default_catalogue()

# --- quality: the driver's, the wire's and what the agent maps between them ---------------


def test_the_driver_and_the_wire_quality_have_the_same_members_and_values() -> None:
    assert [(q.name, q.value) for q in DriverQuality] == [(q.name, q.value) for q in Quality]


def test_normalize_maps_every_driver_quality_to_the_wire_quality_of_its_value() -> None:
    assert set(_QUALITY) == set(DriverQuality)
    assert {(driver.value, wire.value) for driver, wire in _QUALITY.items()} == {
        (q.value, q.value) for q in DriverQuality
    }
    assert all(type(wire) is Quality for wire in _QUALITY.values())


def test_the_aqss_export_has_a_transducer_state_for_every_quality() -> None:
    # A quality it lacks would be exported as "2" (bad) by the lookup's default.
    assert set(TRANSDUCER_STATE) == {q.value for q in Quality}


# --- the alarm vocabulary: the catalogue's levels, the site map's keys, the core's tables ---


def levels_of(*families: str) -> set[str]:
    return {a.level for a in CATALOGUE.alarm_levels.values() if a.family in families}


def test_the_derived_alarm_kinds_are_the_catalogues_derived_levels() -> None:
    # A CompareAlarm's or OvertimeAlarm's kind is the level of the AlarmRecord it raises.
    escalation = set(get_args(EscalationAlarm.model_fields["kind"].annotation))
    assert set(SITE_ALARM_KINDS) - escalation == levels_of(DERIVED_FAMILY)


def test_the_threshold_keys_name_every_level_a_threshold_sets() -> None:
    families = {a.family for a in CATALOGUE.alarm_levels.values()} - {DERIVED_FAMILY}
    thresholds = levels_of(*families) - {RATE_LEVEL}
    assert set(THRESHOLD_LEVELS.values()) == thresholds
    assert {key for family in THRESHOLD_FAMILIES for key in family} == set(THRESHOLD_LEVELS)


def test_the_builder_makes_a_rule_of_every_threshold_key() -> None:
    made = {name: level for name, level, _ in build._LEVELS} | {c: c for c in COLOURS}
    # `restore` is no level: it is where power_off clears (`level_rules`).
    assert made == {k: v for k, v in THRESHOLD_LEVELS.items() if k != "restore"}


def test_the_colours_and_their_escalation_are_the_catalogues() -> None:
    colours = tuple(a.level for a in CATALOGUE.vocabulary("colour"))
    assert CONFIG_COLOURS == COLOURS == colours
    assert COLOURS in THRESHOLD_FAMILIES
    assert tuple((e.level, e.count, e.to) for e in CATALOGUE.escalation) == ESCALATION


# --- the API's verify response is every key of the report it is made from ----------------


def a_report() -> VerifyReport:
    """A report of a real run with a broken block and a hole under it (every key filled)."""
    block = StoredBlock(
        gateway="G1",
        epoch="e1",
        seq=5,
        payload=b"{}",
        signature=Signature("ed25519", "k9", b"\0"),
        stored_hash="0" * 64,
        received_at=0.0,
        below_seq=2,
    )
    report = tally(VerifyReport(), block, key_ring(()))
    assert report.broken
    assert report.holes
    return report


def test_the_verify_response_has_exactly_the_keys_of_the_report() -> None:
    body = report_json(a_report())
    assert set(VerifyOut.model_fields) == set(body)
    broken, holes = body["broken"], body["holes"]
    assert isinstance(broken, list)
    assert isinstance(holes, list)
    assert set(BrokenOut.model_fields) == set(broken[0])
    assert set(HoleOut.model_fields) == set(holes[0])
    # Nothing dropped on the way (a response model ignores keys it does not declare).
    assert verify_out(a_report()).model_dump(mode="json") == body
