"""Normalization, alarms and meta through a real Mosquitto into SQLite and PostgreSQL."""

from __future__ import annotations

from collector.model import Reason
from collector.readmodel import EVERYTHING, AlarmFilter, AlarmState, ReadingFilter, ReadingRow
from specs.meta import PointMeta
from specs.records import AlarmEvent, Quality, Reading, iso_time
from tests.support.collector_client import BASE_TIME
from tests.support.collector_env import CollectorEnv, wait_until
from tests.support.records import alarm_record


def _level(
    value: float | None, unit: str = "m", *, quota: str = "WHP-LT", point: str = "T001-LT-01"
) -> Reading:
    return Reading(point, quota, iso_time(BASE_TIME), value, unit, Quality.GOOD)


async def _readings(env: CollectorEnv) -> tuple[ReadingRow, ...]:
    page = await env.storage.readings(EVERYTHING, ReadingFilter(), after=None, limit=1000)
    return page.items


async def test_a_level_in_mm_is_stored_in_m_and_the_block_bytes_stay(env: CollectorEnv) -> None:
    payload = await env.link.send(1, records=[_level(1234.0, "mm")])
    assert (await env.ack()).acked_through == 1
    (row,) = await _readings(env)
    assert (row.value, row.unit, row.quality, row.flags) == (1.234, "m", "good", ())
    assert await env.rows("SELECT payload FROM blocks") == [(payload,)]
    assert b'"value":1234.0' in payload


async def test_unknown_quota_and_unit_reject_only_their_record_and_the_block_is_acked(
    env: CollectorEnv,
) -> None:
    records = [
        _level(1.0),
        _level(2.0, quota="WHP-NOPE", point="X-1"),
        _level(3.0, "furlong", point="X-2"),
        _level(4.0, point="T001-LT-02"),
    ]
    payload = await env.link.send(1, records=records)
    ack = await env.ack()
    assert (ack.seq, ack.acked_through, ack.missing) == (1, 1, ())
    assert [(r.point, r.value) for r in await _readings(env)] == [
        ("T001-LT-01", 1.0),
        ("T001-LT-02", 4.0),
    ]
    (quota,) = await env.audited(Reason.UNKNOWN_QUOTA)
    (unit,) = await env.audited(Reason.UNKNOWN_UNIT)
    assert quota.detail.startswith(f"gateway {env.gateway.gateway} epoch epoch-1 seq 1 record 1")
    assert "point X-1" in quota.detail
    assert "record 2 point X-2" in unit.detail
    assert quota.payload_hash == (await env.rows("SELECT hash FROM blocks"))[0][0]
    # The agent resends (it missed the ACK): a duplicate, acked again, and not audited twice.
    await env.link.publish(payload)
    assert (await env.ack()).acked_through == 1
    await env.audited(Reason.DUPLICATE)
    assert len(await env.storage.audit(reason=Reason.UNKNOWN_QUOTA)) == 1
    assert len(await _readings(env)) == 2


async def test_an_out_of_range_value_keeps_its_value_and_is_flagged(env: CollectorEnv) -> None:
    await env.link.send(1, records=[_level(52.0)])
    await env.signed_ack()
    (row,) = await _readings(env)
    assert (row.value, row.quality, row.flags) == (52.0, "uncertain", ("out_of_range",))
    latest = await env.storage.latest(
        EVERYTHING, enterprise=None, gateway=None, after=None, limit=10
    )
    assert latest.items[0].flags == ("out_of_range",)


async def _alarms(env: CollectorEnv, where: AlarmFilter | None = None) -> tuple[AlarmState, ...]:
    chosen = AlarmFilter() if where is None else where
    return (await env.storage.alarms(EVERYTHING, chosen, after=None, limit=100)).items


async def test_a_clear_that_arrives_before_its_raise_is_paired(env: CollectorEnv) -> None:
    raise_ = alarm_record(
        "tank1-H-1", AlarmEvent.RAISE, BASE_TIME + 10, value=8700, threshold=8500, unit="mm"
    )
    clear = alarm_record("tank1-H-1", AlarmEvent.CLEAR, BASE_TIME + 20, value=8.2)
    await env.link.send(2, records=[clear])
    await env.signed_ack()
    (alone,) = await _alarms(env)
    assert (alone.raised_at, alone.cleared_at, alone.active_at(BASE_TIME)) == (
        None,
        BASE_TIME + 20,
        False,
    )
    await env.link.send(1, records=[_level(8.7), raise_])
    await env.signed_ack()
    (paired,) = await _alarms(env)
    assert (paired.raised_at, paired.cleared_at) == (BASE_TIME + 10, BASE_TIME + 20)
    assert (paired.value, paired.threshold, paired.unit, paired.level) == (8.7, 8.5, "m", "H")
    assert (paired.raised_in, paired.cleared_in) == (("epoch-1", 1, 1), ("epoch-1", 2, 0))
    assert paired.trigger_t == BASE_TIME + 10
    assert await _alarms(env, AlarmFilter(active=True)) == ()


async def test_an_active_alarm_stays_active_until_cleared(env: CollectorEnv) -> None:
    await env.link.send(1, records=[alarm_record("a", AlarmEvent.RAISE, BASE_TIME)])
    await env.signed_ack()
    assert [a.alarm_id for a in await _alarms(env, AlarmFilter(active=True))] == ["a"]
    await env.link.send(2, records=[alarm_record("a", AlarmEvent.CLEAR, BASE_TIME + 5)])
    await env.signed_ack()
    assert await _alarms(env, AlarmFilter(active=True)) == ()
    assert [a.cleared_at for a in await _alarms(env, AlarmFilter(active=False))] == [BASE_TIME + 5]


POINTS = (
    PointMeta("T001-LT-01", "WHP-LT", "m", "1号罐液位", "tank-1", {"high": 8.5, "high_high": 9.0}),
    PointMeta("T001-PT-01", "WHP-PT", "kPa", "1号罐压力", "tank-1", {"high": 800.0}),
)


async def test_meta_is_stored_newest_first_and_served_by_points(env: CollectorEnv) -> None:
    newer = env.gateway.meta(POINTS, issued_at=BASE_TIME + 100)
    older = env.gateway.meta(POINTS[:1], issued_at=BASE_TIME)
    await env.link.publish(newer, topic=env.gateway.topics.meta)
    await env.link.publish(older, topic=env.gateway.topics.meta)

    async def stored() -> int:
        return len(await env.rows("SELECT hash FROM metas"))

    await wait_until(stored, lambda count: count == 2)
    metas = await env.storage.point_metas(env.gateway.gateway)
    assert set(metas) == {"T001-LT-01", "T001-PT-01"}
    assert metas["T001-LT-01"].issued_at == BASE_TIME + 100  # the older message did not win
    assert (metas["T001-PT-01"].unit, dict(metas["T001-PT-01"].thresholds)) == (
        "MPa",
        {"high": 0.8},
    )
    page = await env.storage.points(EVERYTHING, gateway=None, quota=None, after=None, limit=10)
    assert [(p.point, p.name, p.device, p.unit) for p in page.items] == [
        ("T001-LT-01", "1号罐液位", "tank-1", "m"),
        ("T001-PT-01", "1号罐压力", "tank-1", "MPa"),
    ]
    assert not await env.storage.audit()  # meta is not an unsupported topic any more


async def test_a_meta_with_a_bad_signature_is_audited_and_not_stored(env: CollectorEnv) -> None:
    meta = env.gateway.meta(POINTS)
    properties = env.gateway.sign(meta)
    tampered = meta.replace(b"tank-1", b"tank-9")
    await env.link.publish(tampered, properties, topic=env.gateway.topics.meta)
    (row,) = await env.audited(Reason.BAD_SIGNATURE)
    assert row.topic == env.gateway.topics.meta
    assert row.gateway == env.gateway.gateway
    assert await env.rows("SELECT count(*) FROM metas") == [(0,)]
    assert await env.storage.point_metas(env.gateway.gateway) == {}
