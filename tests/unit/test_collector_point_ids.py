"""Point ids outside the contract's rule are refused by the collector, as by the agent's config.

Found by a hostile tester: a signed block whose readings named points such as "line\\nbreak",
'a,"b"', U+202E or "../../etc" was stored with no audit row (the collector refused only ids
over 256 characters), and those ids went on into the API's JSON and CSV and the exports. The
rule (`specs.identifiers.check_point_code`, what the agent's site map is checked by): 1-64 ASCII
letters, digits, `-`, `_`, `.`, the first a letter or digit. A block naming a point outside it
(a reading's, an alarm event's or its related point, a gap record's) is refused whole, audited
`malformed`, as a block any of whose records is malformed is; a meta naming one likewise.
"""

from __future__ import annotations

from typing import Final

import pytest

from collector.ingest.core import Inbound
from collector.ingest.judge import judge_block, judge_meta
from collector.model import AuditEntry, IncomingBlock, IncomingMeta, Reason
from specs.catalogue import default_catalogue
from specs.identifiers import IdentifierError, check_point_code
from specs.meta import PointMeta
from specs.records import AlarmEvent, AlarmRecord, Quality, Reading, Record, iso_time
from tests.support.collector_client import BASE_TIME, gap_record, key_grants, sim_gateway

GW: Final = sim_gateway(1, district="360100")
T: Final = iso_time(BASE_TIME)
ODD: Final = (
    "点位 一",
    'a,"b"',
    "line\nbreak",
    "T001\n",
    '=HYPERLINK("http://x")',
    "\u202eevil",
    " ",
    "../../etc",
    "_hidden",
    "\uff54\uff41\uff4e\uff4b\uff11",  # fullwidth "tank1"
    "P" * 65,
)
GOOD: Final = ("T001-LT-01", "a", "9.x_y-z", "P" * 64)


def _records(point: str) -> dict[str, Record]:
    """One record naming `point` in each place a block names a point."""
    return {
        "reading point": Reading(point, "WHP-LT", T, 1.0, "m", Quality.GOOD),
        "alarm point": AlarmRecord(
            "a1", point, "WHP-LT", T, AlarmEvent.RAISE, "H", 8.7, 8.5, "m", T
        ),
        "alarm related point": AlarmRecord(
            "a1", "T001-LT-01", "WHP-LT", T, AlarmEvent.RAISE, "H", 8.7, 8.5, "m", T, point
        ),
        "gap point": gap_record(1, point=point),
    }


def _block(record: Record) -> IncomingBlock | AuditEntry:
    payload = GW.block(1, records=[record])
    message = Inbound(GW.topics.block, payload, tuple(GW.sign(payload)), BASE_TIME)
    return judge_block(message, key_grants(GW), default_catalogue())


def _meta(point: str) -> IncomingMeta | AuditEntry:
    payload = GW.meta([PointMeta(point, "WHP-LT", "m", "name", "dev-1", {"high": 8.5})])
    message = Inbound(GW.topics.meta, payload, tuple(GW.sign(payload)), BASE_TIME)
    return judge_meta(message, key_grants(GW), default_catalogue())


@pytest.mark.parametrize("where", list(_records("x")))
@pytest.mark.parametrize("point", ODD)
def test_a_block_naming_a_point_outside_the_rule_is_malformed(where: str, point: str) -> None:
    verdict = _block(_records(point)[where])
    assert isinstance(verdict, AuditEntry)
    assert verdict.reason is Reason.MALFORMED
    assert f"{where} {point!r}"[:60] in verdict.detail
    assert "starting with a letter or digit" in verdict.detail


@pytest.mark.parametrize("point", ODD)
def test_a_meta_naming_a_point_outside_the_rule_is_malformed(point: str) -> None:
    verdict = _meta(point)
    assert isinstance(verdict, AuditEntry)
    assert verdict.reason is Reason.MALFORMED
    assert f"meta point {point!r}"[:60] in verdict.detail


@pytest.mark.parametrize("point", ODD)
def test_the_agent_config_rule_refuses_the_same_ids(point: str) -> None:
    """The agent's site map checks point codes with this same function (edge_agent.config)."""
    with pytest.raises(IdentifierError, match="starting with a letter or digit"):
        check_point_code(point)


@pytest.mark.parametrize("point", GOOD)
def test_points_within_the_rule_are_taken(point: str) -> None:
    assert check_point_code(point) == point
    for record in _records(point).values():
        assert isinstance(_block(record), IncomingBlock)
    assert isinstance(_meta(point), IncomingMeta)
