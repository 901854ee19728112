"""Alarm state on a real outbox file: it survives restarts and crashes, and commits with its block.

The oracle is the outbox itself: reading every sealed block in order, each alarm slot must
alternate raise, clear, raise, ... with a clear carrying its raise's alarm_id, and the stored
state must name exactly the alarms the blocks left active.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import sys
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
import structlog

from edge_agent.config import SiteConfig, parse_site_config
from edge_agent.core.alarms import AlarmRules, decode_state
from edge_agent.core.alarms.build import rules_for_site
from edge_agent.core.chain import Identity
from edge_agent.shell import runtime, shutdown
from edge_agent.shell.alarm_stage import load_alarm_stage
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.sealer import Sealer
from hostkit.keyfiles import create_key_pair
from hostkit.logs import configure_logging
from simulators.tankfarm import serve_tankfarm
from specs.block import decode_block
from specs.catalogue import default_catalogue
from specs.records import AlarmEvent, AlarmRecord, Quality, Reading, Record, iso_time
from specs.signing import signing_key_from_seed
from tests.support.broker import free_port
from tests.support.sealer_rig import count_transactions, running_sealer
from tests.support.sigkill_writer import kill_in_rounds

KEY = signing_key_from_seed(bytes(32))
SITE = Identity("91360100MA35GW001H-GW01", "91360100MA35GW001H", "360100", "WHP")

SITE_MAP = """\
site:
  enterprise: 91360100MA35GW001H
  district: "360100"
  domain: WHP
  gateway: 91360100MA35GW001H-GW01
uplink: {{broker: "mqtt://127.0.0.1:{broker_port}", collector_key: keys/collector.key.pub}}
signing: {{key_file: keys/gateway.key}}
outbox: {{path: state/outbox.db, flush_interval: 50ms}}
devices:
  - id: plc
    driver: modbus_tcp
    host: 127.0.0.1
    port: {modbus_port}
    poll: 100ms
    points:
      - {{point: G1, quota: WHP-LEL, address: {{table: input, start: 0, type: float32}},
          thresholds: {{level1: 20, level2: 50}}, deadband: 1}}
      - {{point: T1, quota: WHP-TT, address: {{table: holding, start: 2, type: float32}},
          thresholds: {{high: {high}}}, deadband: 0.5}}
"""


def site(
    tmp_path: Path, *, high: float = 5.0, modbus_port: int = 1, broker_port: int = 1
) -> SiteConfig:
    text = SITE_MAP.format(high=high, modbus_port=modbus_port, broker_port=broker_port)
    return parse_site_config(text, "site.yaml", tmp_path)


def lel(i: int, value: float | None) -> Reading:
    quality = Quality.BAD if value is None else Quality.GOOD
    return Reading("G1", "WHP-LEL", iso_time(1.7e9 + i), value, "%LEL", quality)


def outbox_alarms(path: Path) -> list[AlarmRecord]:
    """Every alarm event of every sealed block, in seal order."""
    with sqlite3.connect(path) as db:
        payloads = [bytes(r[0]) for r in db.execute("SELECT payload FROM blocks ORDER BY seq")]
    return [r for p in payloads for r in decode_block(p).records if isinstance(r, AlarmRecord)]


def stored_state_ids(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        row = db.execute("SELECT state FROM alarm_state").fetchone()
    return (
        set() if row is None else {a.alarm_id for a in decode_state(bytes(row[0])).active.values()}
    )


def assert_consistent(path: Path) -> set[str]:
    """Raises and clears alternate per slot with matching ids; the state agrees with the blocks."""
    active: dict[str, str] = {}
    for event in outbox_alarms(path):
        slot = event.alarm_id.rpartition("/")[0]
        if event.event is AlarmEvent.RAISE:
            assert slot not in active, f"{slot} raised twice without a clear"
            active[slot] = event.alarm_id
        else:
            assert active.pop(slot) == event.alarm_id
    assert stored_state_ids(path) == set(active.values())
    return set(active.values())


async def seal_through_sealer(path: Path, rules: AlarmRules, readings: list[Reading]) -> None:
    """One agent life: load the stored state, seal `readings` (with alarms), close."""
    queue: asyncio.Queue[Record] = asyncio.Queue()
    async with open_outbox(path, SITE, KEY) as outbox:
        sealer = Sealer(
            outbox,
            queue,
            flush_interval=3600.0,
            flush_readings=2,
            clock_synced=lambda: True,
            on_sealed=lambda _: None,
            alarms=await load_alarm_stage(outbox, rules),
        )
        for reading in readings:
            queue.put_nowait(reading)
        await sealer.flush()


async def test_an_active_alarm_survives_a_restart_and_clears_with_its_id(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    rules = rules_for_site(site(tmp_path), default_catalogue())
    await seal_through_sealer(path, rules, [lel(0, 5), lel(1, 30), lel(2, 31)])
    (raised,) = outbox_alarms(path)
    assert (raised.event, raised.level, raised.trigger_t) == (AlarmEvent.RAISE, "L1", lel(1, 0).t)
    assert stored_state_ids(path) == {raised.alarm_id}

    # The restarted agent knows L1 is active: 30 %LEL again raises nothing, BAD holds, and the
    # value must fall below 20 - 1 before the clear, which carries the same id.
    await seal_through_sealer(path, rules, [lel(3, 30), lel(4, None), lel(5, 19.5), lel(6, 18)])
    assert [(e.event, e.alarm_id, e.trigger_t) for e in outbox_alarms(path)] == [
        (AlarmEvent.RAISE, raised.alarm_id, lel(1, 0).t),
        (AlarmEvent.CLEAR, raised.alarm_id, lel(6, 0).t),
    ]
    assert assert_consistent(path) == set()

    # After another restart the next raise gets a new id: the serial was stored too.
    await seal_through_sealer(path, rules, [lel(7, 25)])
    assert outbox_alarms(path)[-1].alarm_id != raised.alarm_id
    with sqlite3.connect(path) as db:
        epoch = db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0]
    assert outbox_alarms(path)[-1].alarm_id == f"G1/L1/{epoch}.2"


async def test_the_state_commits_with_its_block_or_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    rules = rules_for_site(site(tmp_path), default_catalogue())
    async with open_outbox(path, SITE, KEY) as outbox:
        stage = await load_alarm_stage(outbox, rules)
        # Writing the state fails (a real SQLite error inside the seal transaction): the
        # block must not commit either, and the stage must keep its old state.
        await outbox._file.db.execute(
            "CREATE TRIGGER fail_state BEFORE INSERT ON alarm_state"
            " BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )
        async with running_sealer(outbox, alarms=stage) as run:
            run.queue.put_nowait(lel(0, 30))
            await asyncio.sleep(0.3)  # several failed attempts, each evaluating the same reading
            assert (await outbox.stats()).last_seq == 0
            assert stage.state.active == {}
            await outbox._file.db.execute("DROP TRIGGER fail_state")
            await run.until_sealed(1)
        assert list(stage.state.active) == ["G1/L1"]
    events = outbox_alarms(path)
    assert [(e.event, e.alarm_id.rpartition(".")[2]) for e in events] == [(AlarmEvent.RAISE, "1")]
    assert_consistent(path)


async def test_a_block_without_alarm_changes_leaves_the_state_row_alone(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    rules = rules_for_site(site(tmp_path), default_catalogue())
    await seal_through_sealer(path, rules, [lel(0, 30)])
    with sqlite3.connect(path) as db:
        before = db.execute("SELECT state, saved_at FROM alarm_state").fetchall()
    await seal_through_sealer(path, rules, [lel(1, 31), lel(2, 32)])
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT state, saved_at FROM alarm_state").fetchall() == before
        assert db.execute("SELECT COUNT(*) FROM blocks").fetchone() == (2,)


async def test_an_unreadable_state_starts_over_with_new_ids(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    rules = rules_for_site(site(tmp_path), default_catalogue())
    await seal_through_sealer(path, rules, [lel(0, 30)])
    with sqlite3.connect(path) as db:
        db.execute("UPDATE alarm_state SET state = x'00ff'")
    await seal_through_sealer(path, rules, [lel(1, 31)])
    first, second = outbox_alarms(path)
    assert first.alarm_id != second.alarm_id
    assert second.alarm_id.startswith(first.alarm_id.rpartition(".")[0] + "-")


_WRITER = """
import asyncio, sys, time
from pathlib import Path
from edge_agent.core.alarms.build import rules_for_site
from edge_agent.shell.alarm_stage import load_alarm_stage
from edge_agent.shell.outbox_open import open_outbox
from specs.catalogue import default_catalogue
from tests.integration.test_alarm_state import KEY, SITE, lel, site

async def main() -> None:
    path = Path(sys.argv[1])
    rules = rules_for_site(site(path.parent), default_catalogue())
    async with open_outbox(path, SITE, KEY) as outbox:
        stage = await load_alarm_stage(outbox, rules)
        i = int(sys.argv[2])
        while True:
            # 30, 30, 5, 5, ...: an L1 raise and a clear every four readings.
            batch = tuple(lel(j, 30.0 if j % 4 < 2 else 5.0) for j in (i, i + 1))
            staged = stage.evaluate(batch)
            block = await outbox.seal(
                staged.records, now=time.time(), clock_synced=True, alarm_state=staged.snapshot
            )
            stage.commit(staged)
            print("sealed", block.seq, flush=True)
            i += 2

asyncio.run(main())
"""


def test_sigkill_never_splits_alarm_events_from_their_state(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    # Each life starts where the pattern is in another phase, so some restarts happen with L1
    # active and some with it clear.
    kill_in_rounds(_WRITER, rounds=6, step=5, args=lambda n: (str(path), str(n * 1000 + n)))
    assert len(outbox_alarms(path)) > 6
    assert_consistent(path)


# --- the whole agent: poll a simulator, seal, stop, start again ------------------------------


def t1_records(path: Path) -> list[Record]:
    """T1's records of every sealed block, in seal order (none before the outbox has its table).

    Read-only: the running agent owns the file, and a plain connect would create it.
    """
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT payload FROM blocks ORDER BY seq").fetchall()
    except sqlite3.OperationalError:  # not made yet, or its tables not yet
        return []
    records = (r for row in rows for r in decode_block(bytes(row[0])).records)
    return [r for r in records if isinstance(r, Reading | AlarmRecord) and r.point == "T1"]


def t1_readings(path: Path) -> int:
    return sum(isinstance(r, Reading) for r in t1_records(path))


def t1_alarms(path: Path) -> list[AlarmRecord]:
    return [r for r in t1_records(path) if isinstance(r, AlarmRecord)]


async def _run_agent_until(config: SiteConfig, done: Callable[[], bool], what: str) -> None:
    """Run the agent in-process until `done()` holds, then stop it.

    Until a condition, not for a fixed time: on a loaded machine the agent's start-up alone can
    take longer than a second, and a run that never read T1 proves nothing.
    """
    stop = asyncio.Event()
    agent = asyncio.create_task(runtime.run_agent(config, stop), name="agent")
    deadline = time.monotonic() + 30
    try:
        while not done() and not agent.done():
            assert time.monotonic() < deadline, f"timed out after 30 s waiting for {what}"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(agent, 30)
    assert done(), f"the agent stopped before {what}"


async def test_the_agent_keeps_its_alarms_across_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No collector in this test: nothing is ever ACKed, so do not wait for ACKs at stop.
    monkeypatch.setattr(shutdown, "_SHUTDOWN_DRAIN", 0.05)
    create_key_pair(tmp_path / "keys" / "gateway.key")
    create_key_pair(tmp_path / "keys" / "collector.key")
    outbox = tmp_path / "state" / "outbox.db"
    broker_port = free_port()  # nobody listens: the publisher just keeps retrying
    async with await serve_tankfarm("127.0.0.1", 0, tanks=1, seed=5, interval=0.05) as farm:
        # Tank temperatures stay far above 5 degC: T1 raises H at its first reading.
        hot = site(tmp_path, high=5.0, modbus_port=farm.port, broker_port=broker_port)
        await _run_agent_until(
            hot,
            lambda: bool(t1_alarms(outbox)) and t1_readings(outbox) >= 5,
            "T1's alarm and five of its readings sealed",
        )
        raised = t1_alarms(outbox)
        assert [(e.event, e.level) for e in raised] == [(AlarmEvent.RAISE, "H")]
        # Restarted on the same map, the agent reads T1 (still hot) again and raises nothing.
        seen = t1_readings(outbox)
        await _run_agent_until(
            hot, lambda: t1_readings(outbox) >= seen + 3, "three more readings of T1 sealed"
        )
        assert t1_alarms(outbox) == raised
        # The limit moves up (a new site map): the next reading clears the same alarm.
        cool = site(tmp_path, high=200.0, modbus_port=farm.port, broker_port=broker_port)
        seen = t1_readings(outbox)
        await _run_agent_until(
            cool,
            lambda: len(t1_alarms(outbox)) > 1 and t1_readings(outbox) >= seen + 3,
            "T1's clear and three more of its readings sealed",
        )
    events = [(e.event, e.alarm_id) for e in t1_alarms(outbox)]
    assert events == [
        (AlarmEvent.RAISE, raised[0].alarm_id),
        (AlarmEvent.CLEAR, raised[0].alarm_id),
    ]
    assert_consistent(outbox)


async def test_a_raise_logs_at_warning_with_its_alarm_level_in_the_journal_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the agent's real logging set-up (JSON lines, as journald gets them): the alarm
    level was lost (`level=` is the log level's own key) and a raise logged at info."""
    saved = structlog.get_config()
    handlers = logging.getLogger().handlers[:]
    configure_logging(stream=sys.stdout)  # the agent's service logs on stdout
    # Loggers cached under this set-up would keep it for the rest of the session.
    structlog.configure(cache_logger_on_first_use=False)
    try:
        await _raise_and_clear(tmp_path)
    finally:
        structlog.configure(**saved)
        logging.getLogger().handlers[:] = handlers
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    raised, cleared = (line for line in lines if line["event"] in {"alarm_raised", "alarm_cleared"})
    assert (raised["event"], raised["level"], raised["alarm_level"]) == (
        "alarm_raised",
        "warning",
        "L1",
    )
    assert (cleared["event"], cleared["level"], cleared["alarm_level"]) == (
        "alarm_cleared",
        "info",
        "L1",
    )


async def _raise_and_clear(tmp_path: Path) -> None:
    rules = rules_for_site(site(tmp_path), default_catalogue())
    async with open_outbox(tmp_path / "outbox.db", SITE, KEY) as outbox:
        stage = await load_alarm_stage(outbox, rules)
        stage.commit(stage.evaluate([lel(0, 30)]))
        stage.commit(stage.evaluate([lel(1, 0)]))


async def test_blocks_sealed_by_one_transaction_evaluate_alarms_in_turn(tmp_path: Path) -> None:
    # A sealer behind its readings seals several blocks per transaction (GROUP_BLOCKS); with
    # alarms each block's batch is evaluated from the state the block before it leaves, and
    # the transaction stores the last one's. Two readings a block: raise in block 1, clear in
    # block 2, raise again in block 3, all sealed by one transaction.
    path = tmp_path / "outbox.db"
    rules = rules_for_site(site(tmp_path), default_catalogue())
    async with open_outbox(path, SITE, KEY) as outbox:
        groups = count_transactions(outbox)
        stage = await load_alarm_stage(outbox, rules)
        readings = [lel(0, 5), lel(1, 30), lel(2, 10), lel(3, 18), lel(4, 31), lel(5, 32)]
        async with running_sealer(outbox, alarms=stage, flush_readings=2) as run:
            for reading in readings:  # all queued before the run starts (no await in between)
                run.queue.put_nowait(reading)
            await run.until_sealed(len(readings) + 3)
        assert groups[0] == 3
        assert list(stage.state.active) == ["G1/L1"]
    events = outbox_alarms(path)
    assert [(e.event, e.trigger_t) for e in events] == [
        (AlarmEvent.RAISE, lel(1, 0).t),
        (AlarmEvent.CLEAR, lel(2, 0).t),
        (AlarmEvent.RAISE, lel(4, 0).t),
    ]
    assert [e.alarm_id.rpartition(".")[2] for e in events] == ["1", "1", "2"]
    with sqlite3.connect(path) as db:
        per_block = [r[0] for r in db.execute("SELECT records FROM blocks ORDER BY seq")]
    assert per_block == [3, 3, 3]  # each block: its two readings and the event one triggered
    assert assert_consistent(path) == {events[-1].alarm_id}
