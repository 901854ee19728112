"""`edge-agent outbox stats|export|resend` on real outbox files, with and without a running agent.

The live test runs simulator, Mosquitto, collector and `edge-agent run` as real processes and
calls the installed command beside them. The resend test plays the case resend exists for:
the collector loses its database, and only blocks marked for resending can fill it again.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from click.testing import CliRunner, Result
from paho.mqtt.enums import CallbackAPIVersion

from demo.__main__ import write_configs
from edge_agent.cli import main
from edge_agent.config import load_site_config
from edge_agent.core.outbox_view import ExportedBlock, count_readings, export_document
from edge_agent.core.plan_compile import identity_of
from edge_agent.shell.outbox_open import open_outbox
from specs.block import decode_block
from specs.records import AlarmEvent, GapReason, GapRecord, Reading, Record, iso_time
from specs.signing import Signature, load_signing_key, load_verify_key
from specs.topics import GatewayTopics
from tests.e2e.harness import BIN, Site, wait_until
from tests.support.cli_runs import stops_quietly_when_the_reader_goes_away
from tests.support.records import alarm_record, reading_at

T0 = 1.7e9


# --- against a running site ---------------------------------------------------------------


def outbox_cmd(site: Site, *args: str, expect: int = 0) -> str:
    done = subprocess.run(
        [str(BIN / "edge-agent"), "outbox", args[0], "-c", "site.yaml", *args[1:]],
        cwd=site.work,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == expect, done.stderr
    return done.stdout


def db_of(site: Site) -> closing[sqlite3.Connection]:
    return closing(sqlite3.connect(f"file:{site.work / 'state' / 'outbox.db'}?mode=ro", uri=True))


def delivered_seqs(site: Site) -> list[int]:
    if not (site.work / "state" / "outbox.db").exists():
        return []
    try:
        with db_of(site) as db:
            rows = db.execute("SELECT seq FROM blocks WHERE delivered_at IS NOT NULL ORDER BY seq")
            return [int(seq) for (seq,) in rows]
    except sqlite3.OperationalError:  # the file exists, its tables not yet
        return []


def test_stats_and_export_while_the_agent_runs(site: Site) -> None:
    site.start_agent()
    wait_until(lambda: len(delivered_seqs(site)) >= 6, 60, "six blocks ACKed")
    public = load_verify_key((site.work / "keys" / "gateway.key.pub").read_bytes())

    exported = json.loads(outbox_cmd(site, "export", "--json", "--from-seq", "2", "--to-seq", "5"))
    assert set(exported) == {"blocks"}
    blocks = exported["blocks"]
    assert [b["seq"] for b in blocks] == [2, 3, 4, 5]
    with db_of(site) as db:
        stored = {
            int(seq): (str(epoch), bytes(payload), bytes(sig))
            for epoch, seq, payload, sig in db.execute(
                "SELECT epoch, seq, payload, sig FROM blocks"
            )
        }
    for block in blocks:
        assert set(block) == {"epoch", "seq", "payload", "alg", "kid", "sig", "delivered"}
        payload = block["payload"].encode("utf-8")
        sig = base64.b64decode(block["sig"], validate=True)
        assert (block["epoch"], payload, sig) == stored[block["seq"]], "exact bytes"
        public.verify(Signature(block["alg"], block["kid"], sig), payload)
        assert block["delivered"] is True
    everything = json.loads(outbox_cmd(site, "export", "--json"))["blocks"]
    seqs = [b["seq"] for b in everything]
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) >= 6
    listing = outbox_cmd(site, "export", "--from-seq", "1", "--to-seq", "1").split()
    assert listing == [
        blocks[0]["epoch"],
        "1",
        str(len(stored[1][1])),
        blocks[0]["kid"],
        "delivered",
    ]

    # Without a collector nothing is delivered any more: the undelivered blocks up to the
    # last_seq stats reports are then fixed, and its counts can be checked exactly.
    site.stop("collector")
    sealed = site.sealed_blocks()
    wait_until(lambda: site.sealed_blocks() >= sealed + 4, 60, "blocks sealed meanwhile")
    before = time.time()
    stats = json.loads(outbox_cmd(site, "stats", "--json"))
    after = time.time()
    assert set(stats) == {
        "epoch",
        "last_seq",
        "undelivered_blocks",
        "undelivered_readings",
        "oldest_undelivered_age_s",
        "bytes",
        "max_bytes",
    }
    with db_of(site) as db:
        (epoch,) = db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
        undelivered = db.execute(
            "SELECT payload, sealed_at FROM blocks WHERE delivered_at IS NULL AND seq <= ?",
            (stats["last_seq"],),
        ).fetchall()
    records = [r for payload, _ in undelivered for r in decode_block(bytes(payload)).records]
    assert stats["epoch"] == epoch
    assert stats["last_seq"] >= sealed + 4
    assert stats["undelivered_blocks"] == len(undelivered) >= 4
    assert stats["undelivered_readings"] == sum(isinstance(r, Reading) for r in records)
    oldest = min(float(sealed_at) for _, sealed_at in undelivered)
    assert before - oldest - 0.001 <= stats["oldest_undelivered_age_s"] <= after - oldest + 0.001
    assert stats["bytes"] >= (site.work / "state" / "outbox.db").stat().st_size // 2
    assert stats["max_bytes"] == 2 * 1024**3
    assert site.alive("agent")


def test_resend_refills_a_collector_that_lost_its_database(site: Site) -> None:
    site.start_agent()
    wait_until(lambda: len(delivered_seqs(site)) >= 8, 60, "eight blocks ACKed")
    site.stop("collector")
    for stale in (site.work / "state").glob("collector.db*"):
        stale.unlink()
    # The new database knows no gateway. Registered in-process as Site.setup does it (a process
    # cost 2-4 s of start-up under load; `outbox resend` is the command under test here).
    site.register_gateway()
    # Marked while no collector runs, and once the agent has taken every ACK the old one sent:
    # one taken after the count (late under load) marked delivered again what resend marked.
    _old_acks_taken(site)
    delivered = len(delivered_seqs(site))
    result = json.loads(outbox_cmd(site, "resend", "--from-seq", "1", "--json"))
    assert result["from_seq"] == 1
    assert result["marked"] == delivered
    assert result["pruned"] == 0
    assert result["marked"] + result["waiting"] == result["last_seq"]
    assert delivered_seqs(site) == []
    site.start_collector()
    site.drain_and_stop_agent(timeout=120)
    committed, served = site.outbox_readings(), site.collector_readings()
    assert committed == served, "the new collector holds every reading exactly once"


def _old_acks_taken(site: Site) -> None:
    """Wait until the running agent has taken every ACK sent to it before this call.

    The broker queues the messages of the agent's session in the order they came, and the
    agent takes them one by one: once it has rejected an unsigned one published now, it has
    taken those before it.
    """
    config = load_site_config(site.work / "site.yaml")
    topic = GatewayTopics(config.site.district, config.site.enterprise, site.gateway).ack
    probe = paho.Client(CallbackAPIVersion.VERSION2, client_id="ack-probe", protocol=paho.MQTTv5)
    probe.connect("127.0.0.1", site.broker.port)
    probe.loop_start()
    try:
        probe.publish(topic, b"probe", qos=1).wait_for_publish(timeout=30)
    finally:
        probe.disconnect()
        probe.loop_stop()
    wait_until(lambda: '"ack_rejected"' in site.log("agent"), 60, "the agent to take the probe")


# --- on a file, agent stopped -------------------------------------------------------------


@pytest.fixture
def site_yaml(tmp_path: Path) -> Path:
    path = write_configs(tmp_path, "tankfarm", "mqtt://127.0.0.1:1", 1, 1)
    assert invoke("keys", "init", "-c", str(path)).exit_code == 0
    return path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _seal(site_yaml: Path, blocks: list[tuple[Record, ...]], *, deliver: int, prune: bool) -> None:
    """Seal `blocks` with the agent's own outbox, ACK the first `deliver`, maybe prune them."""
    config = load_site_config(site_yaml)
    key = load_signing_key(config.signing.key_file.read_bytes())

    async def run() -> None:
        async with open_outbox(config.outbox.path, identity_of(config), key) as outbox:
            for records in blocks:
                await outbox.seal(records, now=T0, clock_synced=True)
            if deliver:
                await outbox.delivery.mark_delivered(
                    epoch=outbox.epoch, through=deliver, also=None, now=T0
                )
            if prune:
                await outbox.prune(delivered_before=T0 + 1)

    asyncio.run(run())


def test_stats_count_readings_not_alarm_or_gap_records(site_yaml: Path) -> None:
    alarm_1 = alarm_record("a1", AlarmEvent.RAISE, T0 + 1, value=9.0, threshold=8.0)
    alarm_3 = alarm_record("a3", AlarmEvent.RAISE, T0 + 3, value=9.0, threshold=8.0)
    blocks: list[tuple[Record, ...]] = [
        (reading_at(T0, 0.0), reading_at(T0 + 1, 1.0), alarm_1),
        (GapRecord(iso_time(T0 + 2), GapReason.THINNED, 3),),
        (
            reading_at(T0 + 3, 3.0),
            alarm_3,
            GapRecord(iso_time(T0 + 3), GapReason.THINNED, 3),
            reading_at(T0 + 4, 4.0),
        ),
    ]
    _seal(site_yaml, blocks, deliver=1, prune=False)
    result = invoke("outbox", "stats", "-c", str(site_yaml), "--json")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert (stats["last_seq"], stats["undelivered_blocks"], stats["undelivered_readings"]) == (
        3,
        2,
        2,
    )
    assert stats["oldest_undelivered_age_s"] >= time.time() - T0 - 60
    # A file written before the agent kept a readings column counts from the payloads.
    with sqlite3.connect(site_yaml.parent / "state" / "outbox.db") as db:
        db.execute("UPDATE blocks SET readings = NULL")
    again = json.loads(invoke("outbox", "stats", "-c", str(site_yaml), "--json").stdout)
    assert again["undelivered_readings"] == 2
    human = invoke("outbox", "stats", "-c", str(site_yaml)).stdout
    assert "undelivered readings  2\n" in human


def test_resend_says_which_blocks_are_gone_for_good(site_yaml: Path) -> None:
    _seal(site_yaml, [(reading_at(T0 + i, float(i)),) for i in range(6)], deliver=4, prune=True)
    gone = invoke("outbox", "resend", "-c", str(site_yaml), "--from-seq", "2", "--json")
    assert gone.exit_code == 1
    assert json.loads(gone.stdout) | {"epoch": "-"} == {
        "epoch": "-", "from_seq": 2, "last_seq": 6, "marked": 0, "waiting": 2, "pruned": 3,
    }  # fmt: skip
    assert "3 delivered blocks from seq 2 on were pruned" in gone.stderr
    exported = json.loads(invoke("outbox", "export", "-c", str(site_yaml), "--json").stdout)
    assert [(b["seq"], b["delivered"]) for b in exported["blocks"]] == [(5, False), (6, False)]
    assert invoke("outbox", "resend", "-c", str(site_yaml), "--from-seq", "5").exit_code == 0


def test_resend_marks_delivered_blocks_from_the_seq_on(site_yaml: Path) -> None:
    _seal(site_yaml, [(reading_at(T0 + i, float(i)),) for i in range(6)], deliver=5, prune=False)
    done = invoke("outbox", "resend", "-c", str(site_yaml), "--from-seq", "3")
    assert done.exit_code == 0, done.output
    assert done.stdout.endswith("seq 3..6: 3 blocks marked for resending, 1 were waiting already\n")
    exported = json.loads(invoke("outbox", "export", "-c", str(site_yaml), "--json").stdout)
    assert [b["delivered"] for b in exported["blocks"]] == [True, True, False, False, False, False]


def test_resend_past_the_last_seq_is_refused_naming_it(site_yaml: Path) -> None:
    """--from-seq past the last sealed seq marks nothing: a usage error naming the last seq
    (it exited 0 with "seq 9..6: 0 blocks marked", as if it had done what was asked)."""
    _seal(site_yaml, [(reading_at(T0 + i, float(i)),) for i in range(6)], deliver=6, prune=False)
    for extra in ([], ["--json"]):
        past = invoke("outbox", "resend", "-c", str(site_yaml), "--from-seq", "9", *extra)
        assert past.exit_code == 2, past.output
        assert past.stdout == ""
        assert "--from-seq 9 is past the last sealed seq 6 of epoch " in past.stderr
    just_past = invoke("outbox", "resend", "-c", str(site_yaml), "--from-seq", "7")
    assert just_past.exit_code == 2
    assert "the last sealed seq 6 " in just_past.stderr
    exported = json.loads(invoke("outbox", "export", "-c", str(site_yaml), "--json").stdout)
    assert all(b["delivered"] for b in exported["blocks"])
    last = invoke("outbox", "resend", "-c", str(site_yaml), "--from-seq", "6")
    assert last.exit_code == 0, last.output
    assert last.stdout.endswith("seq 6..6: 1 blocks marked for resending, 0 were waiting already\n")


def test_usage_and_missing_outbox(site_yaml: Path) -> None:
    for command in (["stats"], ["export", "--json"], ["resend", "--from-seq", "1"]):
        result = invoke("outbox", command[0], "-c", str(site_yaml), *command[1:])
        assert result.exit_code == 1
        assert "no outbox yet" in result.stderr
    _seal(site_yaml, [(reading_at(T0, 0.0),)], deliver=0, prune=False)
    assert invoke("outbox", "resend", "-c", str(site_yaml)).exit_code == 2
    assert invoke("outbox", "resend", "-c", str(site_yaml), "--from-seq", "0").exit_code == 2
    backwards = invoke("outbox", "export", "-c", str(site_yaml), "--from-seq", "3", "--to-seq", "2")
    assert backwards.exit_code == 2


def test_export_document_is_json_with_exact_payload_text() -> None:
    assert json.loads("".join(export_document([]))) == {"blocks": []}
    payload = '{"records":[{"type":"reading","unit":"℃","point":"储罐-1\\"x"}]}'.encode()
    block = ExportedBlock("e1", 7, payload, "ed25519", "k1", b"\x00\xff", delivered=False)
    document = json.loads("".join(export_document([block, block])))
    assert [b["payload"].encode("utf-8") for b in document["blocks"]] == [payload, payload]
    assert document["blocks"][0]["sig"] == "AP8="
    assert count_readings(payload) == 1


def test_export_to_a_reader_that_goes_away_stops_quietly(site_yaml: Path) -> None:
    """`edge-agent outbox export --json | head -1`: exit 141 as a shell reports for `seq | head`,
    nothing on stderr (it was 1 and "Error: [Errno 32] Broken pipe", as for the collector)."""
    _seal(site_yaml, [(reading_at(T0 + i, float(i)),) for i in range(3000)], deliver=0, prune=False)
    stops_quietly_when_the_reader_goes_away(
        "edge-agent", "outbox", "export", "-c", str(site_yaml), "--json"
    )


def test_an_outbox_export_cannot_read_prints_nothing_on_stdout(site_yaml: Path) -> None:
    """With no outbox, an empty file or another SQLite database at outbox.path, `export --json`
    printed '{"blocks": [' (half a document) before it found out, and an empty file or a
    database without the outbox's tables was 'no such table: meta'."""
    outbox = load_site_config(site_yaml).outbox.path
    outbox.parent.mkdir(parents=True, exist_ok=True)
    for made in ("none", "empty", "other database"):
        if made == "empty":
            outbox.write_bytes(b"")
        elif made == "other database":
            outbox.unlink()
            with closing(sqlite3.connect(outbox)) as other:
                other.execute("CREATE TABLE readings (point TEXT)")
        for command in (["export", "--json"], ["export"], ["stats"]):
            result = invoke("outbox", command[0], "-c", str(site_yaml), *command[1:])
            assert (result.exit_code, result.stdout) == (1, ""), (made, command)
            if made != "none":
                assert result.stderr == f"{outbox}: not an outbox (no chain state)\n", made
