"""`edge-agent backfill` on real CSV files into a real outbox file (the agent stopped).

Most cases run the command in-process (click's runner: real files, real SQLite); the exit
codes of the installed entry point are checked once with real processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from demo.__main__ import write_configs
from edge_agent.backfill.importer import MAX_LINE, CsvSource, exclusive_import, import_rows
from edge_agent.backfill.rows import RowParser, parse_offset, targets_of
from edge_agent.cli import main
from edge_agent.cli.backfill import LET_GO_EXIT
from edge_agent.config import load_site_config
from edge_agent.core.plan_compile import identity_of
from edge_agent.core.points import resolve_points
from edge_agent.shell import outbox_prune
from edge_agent.shell.outbox_open import open_outbox
from specs.block import GENESIS, Block, decode_block
from specs.catalogue import default_catalogue
from specs.records import Quality, Reading
from specs.signing import Signature, load_signing_key, load_verify_key
from tests.support.config_files import at_gateway_key_line
from tests.support.damage import erase_inside_column

BIN = Path(sys.executable).parent
HEADER = "point,t,value,quality,unit\n"
HEADER_PTV = "point,t,value\n"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """The tank farm's site map in tmp with its gateway key; no agent, no outbox yet."""
    site_yaml = write_configs(tmp_path, "tankfarm", "mqtt://127.0.0.1:1", 1, 1)
    result = invoke("keys", "init", "-c", str(site_yaml))
    assert result.exit_code == 0, result.output
    return site_yaml


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def backfill(site: Path, csv: Path, *extra: str) -> Result:
    return invoke("backfill", "-c", str(site), "--csv", str(csv), *extra)


def counts(result: Result) -> dict[str, object]:
    body = json.loads(result.stdout)
    assert isinstance(body, dict)
    return body


def write(path: Path, text: str, *, bom: bool = False) -> Path:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def outbox_path(site: Path) -> Path:
    return site.parent / "state" / "outbox.db"


def chain(site: Path) -> list[Block]:
    """Every block of the outbox, checked: seqs 1..n of one epoch, prev hashes, signatures."""
    public = load_verify_key((site.parent / "keys" / "gateway.key.pub").read_bytes())
    with sqlite3.connect(outbox_path(site)) as db:
        rows = db.execute("SELECT epoch, seq, payload, alg, kid, sig FROM blocks ORDER BY seq")
        blocks = []
        prev = GENESIS
        for index, (epoch, seq, payload, alg, kid, sig) in enumerate(rows, start=1):
            block = decode_block(bytes(payload))
            assert (seq, block.header.seq, block.header.epoch) == (index, index, epoch)
            assert block.header.prev == prev, f"block {seq} does not chain to {index - 1}"
            public.verify(Signature(alg, kid, bytes(sig)), bytes(payload))
            prev = block.digest
            blocks.append(block)
    return blocks


def readings(site: Path) -> list[Reading]:
    return [r for block in chain(site) for r in block.records if isinstance(r, Reading)]


def test_bom_both_separators_naive_times_and_units(site: Path, tmp_path: Path) -> None:
    csv = write(
        tmp_path / "log.csv",
        "Point, T ,value,unit\r\n"  # header names are trimmed and any case; CRLF lines
        "T001-LT-01,2024-03-01 08:00:00,5.25,\r\n"
        "T001-LT-01,2024-03-01T08:00:01,530,cm\r\n"
        "T001-LT-01,2024-03-01T00:00:02Z,5.35,m\r\n"
        "\r\n"  # a blank line is skipped, not rejected
        "T001-TT-01,2024-03-01 08:00:03.5+08:00,77,°F\r\n",
        bom=True,
    )
    result = backfill(site, csv, "--json")
    assert result.exit_code == 0, result.stderr
    body = counts(result)
    assert set(body) == {"imported", "duplicate", "conflict", "rejected", "let_go", "seconds"}
    assert (body["imported"], body["duplicate"], body["rejected"], body["let_go"]) == (4, 0, 0, 0)
    assert isinstance(body["seconds"], float)
    assert result.stderr == ""
    assert [(r.point, r.t, r.value, r.unit, r.quality, r.flags) for r in readings(site)] == [
        ("T001-LT-01", "2024-03-01T00:00:00.000+00:00", 5.25, "m", Quality.GOOD, ("backfill",)),
        ("T001-LT-01", "2024-03-01T00:00:01.000+00:00", 5.3, "m", Quality.GOOD, ("backfill",)),
        ("T001-LT-01", "2024-03-01T00:00:02.000+00:00", 5.35, "m", Quality.GOOD, ("backfill",)),
        ("T001-TT-01", "2024-03-01T00:00:03.500+00:00", 25.0, "℃", Quality.GOOD, ("backfill",)),
    ]


def test_tz_applies_to_naive_times_only(site: Path, tmp_path: Path) -> None:
    csv = write(
        tmp_path / "log.csv",
        "point,t,value\nT001-LT-01,2024-03-01 08:00:00,1\nT001-LT-01,2024-03-01 08:00:00+08:00,2\n",
    )
    result = backfill(site, csv, "--tz", "-05:00")
    assert result.exit_code == 0, result.stderr
    assert [(r.t, r.value) for r in readings(site)] == [
        ("2024-03-01T13:00:00.000+00:00", 1.0),
        ("2024-03-01T00:00:00.000+00:00", 2.0),
    ]


def test_every_rejected_row_is_reported_as_file_line_reason(site: Path, tmp_path: Path) -> None:
    csv = tmp_path / "rejects.csv"
    lines = [
        HEADER.rstrip("\n"),  # 1
        "T001-LT-01,2024-03-01 08:00:00,1.0,good,m",  # 2 imported
        "T009-LT-01,2024-03-01 08:00:00,1.0,,",  # 3 unknown point
        "T001-LT-01,2024-03-01,1.0,,",  # 4 bad time
        "T001-LT-01,2024-02-30 08:00:00,1.0,,",  # 5 no such date
        "T001-LT-01,2024-03-01 08:00:01,n/a,,",  # 6 not a number
        "T001-LT-01,2024-03-01 08:00:02,1.0,,ft",  # 7 unit not convertible
        "T001-LT-01,2024-03-01 08:00:03,1.0",  # 8 wrong column count
        "T001-LT-01,2024-03-01 08:00:04,1.0,fine,",  # 9 bad quality
        '"T001-LT-01","2024-03-01 08:00:05","1.0',  # 10 a quote left open: a row is a line
        '2","good","m"',  # 11 wrong column count (not the rest of row 10)
        "T001-LT-01,2024-03-01 08:00:06,1.0,good,m",  # 12 imported
        "T001-LT-01,2024-03-01 08:00:07,1.0,good,m",  # 13 latin-1 bytes below
        "T001-LT-01,2024-03-01 08:00:08,,good,",  # 14 empty value on a good reading
        "T001-LT-01,2024-03-01 08:00:09,,bad,",  # 15 imported, no value
    ]
    data = "\n".join(lines).encode("utf-8") + b"\n"
    data = data.replace(b"08:00:07,1.0,good,m", b"08:00:07,1.0,good,\xb0m")
    csv.write_bytes(data)
    result = backfill(site, csv, "--json")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{csv}:3: unknown point 'T009-LT-01'",
        f"{csv}:4: bad time '2024-03-01': not ISO 8601 (YYYY-MM-DD hh:mm:ss[+08:00])",
        f"{csv}:5: bad time '2024-02-30 08:00:00': no such date",
        f"{csv}:6: value 'n/a' is not a number",
        f"{csv}:7: unit 'ft' is not convertible to m for T001-LT-01 (WHP-LT accepts cm, m, mm)",
        f"{csv}:8: expected 5 columns, found 3",
        f"{csv}:9: quality 'fine' is not good|uncertain|bad",
        f"{csv}:10: a quote opened on this line is not closed on it",
        f"{csv}:11: expected 5 columns, found 3",
        f"{csv}:13: not UTF-8 text",
        f"{csv}:14: value '' is not a number",
    ]
    assert (counts(result)["imported"], counts(result)["rejected"]) == (3, 11)
    assert [(r.t, r.value, r.quality) for r in readings(site)] == [
        ("2024-03-01T00:00:00.000+00:00", 1.0, Quality.GOOD),
        ("2024-03-01T00:00:06.000+00:00", 1.0, Quality.GOOD),
        ("2024-03-01T00:00:09.000+00:00", None, Quality.BAD),
    ]


def test_a_time_finer_than_a_millisecond_is_rejected_at_its_line(
    site: Path, tmp_path: Path
) -> None:
    """gz/1 carries milliseconds: .0004 and .0009 are refused, not cut into one reading."""
    csv = write(
        tmp_path / "subms.csv",
        HEADER_PTV + "T001-LT-01,2026-12-03 13:00:00.0004,0.3\n"
        "T001-LT-01,2026-12-03 13:00:00.0009,0.4\n"
        "T001-LT-01,2026-12-03 13:00:00.9999,0.5\n"
        "T001-LT-01,2026-12-03 13:00:01.2500,0.6\n",
    )
    result = backfill(site, csv, "--json")
    assert result.exit_code == 1
    finer = "finer than the millisecond gz/1 carries (round it in the file)"
    assert result.stderr.splitlines() == [
        f"{csv}:2: bad time '2026-12-03 13:00:00.0004': {finer}",
        f"{csv}:3: bad time '2026-12-03 13:00:00.0009': {finer}",
        f"{csv}:4: bad time '2026-12-03 13:00:00.9999': {finer}",
    ]
    assert (counts(result)["imported"], counts(result)["rejected"]) == (1, 3)
    assert [r.t for r in readings(site)] == ["2026-12-03T05:00:01.250+00:00"]


def test_rerunning_a_file_imports_nothing_and_repeats_count_as_duplicate(
    site: Path, tmp_path: Path
) -> None:
    rows = [f"T00{1 + i % 3}-LT-01,2024-03-01 08:{i // 60:02d}:{i % 60:02d},{i}" for i in range(90)]
    # The same reading twice more in the file, once written differently (offset, fraction);
    # another value would be a conflict (test_backfill_held).
    rows += ["T001-LT-01,2024-03-01 08:00:00,0", "T001-LT-01,2024-03-01T00:00:00.000Z,0.0"]
    csv = write(tmp_path / "log.csv", "point,t,value\n" + "\n".join(rows) + "\n")
    first = backfill(site, csv, "--json")
    assert first.exit_code == 0, first.stderr
    assert (counts(first)["imported"], counts(first)["duplicate"]) == (90, 2)
    sealed = chain(site)
    second = backfill(site, csv, "--json")
    assert second.exit_code == 0, second.stderr
    assert (counts(second)["imported"], counts(second)["duplicate"]) == (0, 92)
    assert len(chain(site)) == len(sealed), "a re-run must seal no block"
    values = {(r.point, r.t): r.value for r in readings(site)}
    assert len(values) == 90
    assert values[("T001-LT-01", "2024-03-01T00:00:00.000+00:00")] == 0.0, "first one wins"


def _import(site: Path, csv: Path, block_readings: int) -> tuple[int, int, int]:
    config = load_site_config(site)
    key = load_signing_key(config.signing.key_file.read_bytes())
    targets = targets_of(resolve_points(config), default_catalogue())

    class Quiet:
        def rejected(self, line: int, reason: str) -> None:
            raise AssertionError(f"line {line}: {reason}")

        def conflicted(self, line: int, other: str) -> None:
            raise AssertionError(f"line {line}: conflicts with {other}")

        def advanced(self, position: int) -> None:
            assert position >= 0

    async def run() -> tuple[int, int, int]:
        source = CsvSource(csv)
        try:
            parser = RowParser(source.columns, targets, parse_offset("+08:00"))
            async with open_outbox(config.outbox.path, identity_of(config), key) as outbox:
                done = await import_rows(
                    source,
                    parser,
                    outbox,
                    progress=Quiet(),
                    clock_synced=lambda: True,
                    block_readings=block_readings,
                )
        finally:
            source.close()
        return done.imported, done.duplicate, done.rejected

    return asyncio.run(run())


def test_repeats_in_other_blocks_and_an_interrupted_import_are_found_in_the_outbox(
    site: Path, tmp_path: Path
) -> None:
    times = [f"2024-03-01 08:00:{s:02d}" for s in range(20)]
    half = write(
        tmp_path / "half.csv",
        "point,t,value\n" + "".join(f"T001-LT-01,{t},1\n" for t in times[:10]),
    )
    assert _import(site, half, block_readings=4) == (10, 0, 0)
    # The whole file, with the first half repeated at its end: blocks of 4 readings, so
    # each repeat sits in a different block than its original.
    body = "".join(f"T001-LT-01,{t},1\n" for t in times + times[:10])
    whole = write(tmp_path / "whole.csv", "point,t,value\n" + body)
    assert _import(site, whole, block_readings=4) == (10, 20, 0)
    blocks = chain(site)
    assert [len(b.records) for b in blocks] == [4, 4, 2, 2, 4, 4]
    assert sorted(r.t for r in readings(site)) == sorted(
        f"2024-03-01T00:00:{s:02d}.000+00:00" for s in range(20)
    )


def test_file_level_problems_exit_2_and_import_nothing(site: Path, tmp_path: Path) -> None:
    cases = {
        "no-value.csv": (
            "point,t\nT001-LT-01,2024-03-01 08:00:00\n",
            ":1: header: column 'value' is missing",
        ),
        "extra.csv": ("\n\npoint,t,value,site\n", ":3: header: column 'site' is unknown"),
        "empty.csv": ("", ": no header row (the file is empty)"),
    }
    for name, (text, message) in cases.items():
        result = backfill(site, write(tmp_path / name, text))
        assert result.exit_code == 2, name
        assert result.stderr.startswith(str(tmp_path / name) + message), result.stderr
    bad_tz = backfill(site, write(tmp_path / "ok.csv", "point,t,value\n"), "--tz", "+8")
    assert bad_tz.exit_code == 2
    assert "'+8' is not a UTC offset" in bad_tz.stderr
    missing = backfill(site, tmp_path / "missing.csv")
    assert missing.exit_code == 2
    assert not outbox_path(site).exists()


def test_a_key_run_would_refuse_is_refused_before_anything_is_imported(
    site: Path, tmp_path: Path
) -> None:
    """Backfill signs as the gateway, so it guards the key exactly as `edge-agent run` does."""
    csv = write(tmp_path / "log.csv", "point,t,value\nT001-LT-01,2024-03-01 08:00:00,1\n")
    key_file = site.parent / "keys" / "gateway.key"
    key_file.chmod(0o640)
    exposed = backfill(site, csv)
    assert exposed.exit_code == 2
    assert exposed.stderr == (
        f"{at_gateway_key_line(site)}{key_file}:"
        " private key has mode 0640, open to group or others;"
        f" run `chmod 600 {key_file}`\n"
    )
    key_file.chmod(0o600)
    yaml = site.read_text(encoding="utf-8")
    site.write_text(yaml.replace("algorithm: ed25519", "algorithm: sm2-sm3", 1), encoding="utf-8")
    other_algorithm = backfill(site, csv)
    assert other_algorithm.exit_code == 2
    assert other_algorithm.stderr == (
        f"{at_gateway_key_line(site)}{key_file}:"
        " the key is ed25519 but signing.algorithm is sm2-sm3;"
        " make a new key with `edge-agent keys init` or fix signing.algorithm\n"
    )
    assert not outbox_path(site).exists()


def test_an_outbox_path_run_would_refuse_is_refused_at_its_line(site: Path, tmp_path: Path) -> None:
    """A file where the outbox folder should be is a map mistake: not 'run it again'."""
    csv = write(tmp_path / "log.csv", "point,t,value\nT001-LT-01,2024-03-01 08:00:00,1\n")
    state = outbox_path(site).parent
    state.write_text("not a folder\n", encoding="utf-8")
    line = 1 + site.read_text(encoding="utf-8").splitlines().index("  path: state/outbox.db")
    result = backfill(site, csv)
    assert result.exit_code == 2, result.output
    assert result.stderr == f"{site}:{line}: outbox.path: {state} is not a folder\n"


def test_the_installed_command_exit_codes(site: Path, tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "edge-agent"), "backfill", "-c", str(site), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    good = write(tmp_path / "good.csv", "point,t,value\nT001-LT-01,2024-03-01 08:00:00,1\n")
    done = run("--csv", str(good))
    assert (done.returncode, done.stderr) == (0, "")
    assert (
        done.stdout
        == f"{good}: imported 1, duplicate 0, conflict 0, rejected 0 in "
        + done.stdout.split(" in ")[1]
    )
    bad = write(tmp_path / "bad.csv", "point,t,value\nT001-LT-01,2024-03-01 08:00:00,x\n")
    rejected = run("--csv", str(bad), "--json")
    assert (rejected.returncode, rejected.stderr) == (1, f"{bad}:2: value 'x' is not a number\n")
    header = write(tmp_path / "header.csv", "t,value\n")
    assert run("--csv", str(header)).returncode == 2
    assert run("--csv", str(good), "--tz", "Asia/Shanghai").returncode == 2
    (site.parent / "keys" / "gateway.key").unlink()
    no_key = run("--csv", str(good))
    assert no_key.returncode == 2
    assert "key file is missing" in no_key.stderr


def test_a_second_import_waits_for_the_first(site: Path, tmp_path: Path) -> None:
    csv = write(tmp_path / "log.csv", "point,t,value\nT001-LT-01,2024-03-01 08:00:00,1\n")
    waited: list[bool] = []
    with exclusive_import(outbox_path(site), lambda: waited.append(True)):
        process = subprocess.Popen(
            [str(BIN / "edge-agent"), "backfill", "-c", str(site), "--csv", str(csv), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        # The other import says it waits, and does not touch the outbox meanwhile.
        assert process.stderr is not None
        line = process.stderr.readline()
        assert "another backfill is running; waiting for it" in line
        assert process.poll() is None
        assert time.monotonic() < deadline
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    assert json.loads(out)["imported"] == 1
    assert waited == []


def test_a_progress_bar_on_a_terminal_only(site: Path, tmp_path: Path) -> None:
    rows = "".join(f"T001-LT-01,2024-03-01 08:00:{s:02d},1\n" for s in range(30))
    csv = write(
        tmp_path / "log.csv", "point,t,value\n" + rows + "T009-LT-01,2024-03-01 08:00:00,1\n"
    )
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [str(BIN / "edge-agent"), "backfill", "-c", str(site), "--csv", str(csv)],
        stdout=subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    terminal = b""
    with contextlib.suppress(OSError):  # EIO once the process closed the terminal
        while chunk := os.read(leader, 4096):
            terminal += chunk
    os.close(leader)
    stdout, _ = process.communicate(timeout=60)
    assert process.returncode == 1
    text = terminal.decode("utf-8")
    assert "backfill log.csv" in text
    assert "100%" in text
    # Each rejected row still stands on a line of its own, the bar's line cleared first.
    assert f"\r\x1b[K{csv}:32: unknown point 'T009-LT-01'\r\n" in text
    assert stdout.decode().startswith(f"{csv}: imported 30, duplicate 0, conflict 0, rejected 1")


def _run_limited(site: Path, csv: Path) -> tuple[subprocess.CompletedProcess[str], int]:
    """The installed `backfill` in a process held to 1 GiB of address space: (result, peak KiB).

    The limit keeps a process that reads without bound from taking the test machine with it.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    done = subprocess.run(
        [str(BIN / "edge-agent"), "backfill", "-c", str(site), "--csv", str(csv)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        preexec_fn=limit_memory,
    )
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return done, peak if peak > before else 0


def test_a_device_that_never_ends_is_refused_not_read(site: Path) -> None:
    """`--csv /dev/zero` (a slip of the hand) read NUL bytes with no line end until memory
    ran out, then exited 1 with a MemoryError traceback."""
    done, _ = _run_limited(site, Path("/dev/zero"))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "/dev/zero: not a file but a character device; give a CSV file\n"
    assert not outbox_path(site).exists()


def test_a_fifo_nobody_writes_to_is_refused_not_waited_on(site: Path, tmp_path: Path) -> None:
    """`--csv FIFO` with no writer waited for one for ever (opening it blocks); a pipe given
    as /dev/stdin is still read."""
    fifo = tmp_path / "log.csv"
    os.mkfifo(fifo)
    done, _ = _run_limited(site, fifo)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"{fifo}: not a file but a FIFO (named pipe); give a CSV file"
        " (or pipe it in as --csv /dev/stdin)\n"
    )
    assert not outbox_path(site).exists()
    piped = subprocess.run(
        [str(BIN / "edge-agent"), "backfill", "-c", str(site), "--csv", "/dev/stdin"],
        input="point,t,value\nT001-LT-01,2024-03-01 08:00:00,1\n",
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert piped.returncode == 0, piped.stderr
    assert "imported 1," in piped.stdout


def test_an_endless_line_is_rejected_at_its_line_and_the_rows_after_it_imported(
    site: Path, tmp_path: Path
) -> None:
    """A line of 300 MB with no line end (a binary file's worth of NUL bytes in the log) was
    held in memory whole before the CSV reader looked at it; now it is skipped in pieces."""
    csv = tmp_path / "log.csv"
    with csv.open("wb") as out:
        out.write(b"point,t,value\nT001-LT-01,2024-03-01 08:00:00,1\n")
        out.truncate(out.tell() + 300_000_000)  # a hole: reads as NUL bytes, takes no disk
        out.seek(0, os.SEEK_END)
        out.write(b"\nT001-LT-01,2024-03-01 08:00:01,2\n")
    done, peak_kib = _run_limited(site, csv)
    assert done.returncode == 1, done.stderr
    assert done.stderr == f"{csv}:3: a line longer than 1048576 characters\n"
    assert done.stdout.startswith(f"{csv}: imported 2, duplicate 0, conflict 0, rejected 1 in ")
    assert [r.value for r in readings(site)] == [1.0, 2.0]
    assert peak_kib < 200_000


def stored_readings(site: Path) -> list[Reading]:
    """Every reading of the outbox's blocks, whatever their seqs (making room removes some)."""
    with closing(sqlite3.connect(outbox_path(site))) as db:
        payloads = [bytes(p) for (p,) in db.execute("SELECT payload FROM blocks ORDER BY seq")]
    records = [r for p in payloads for r in decode_block(p).records]
    return [r for r in records if isinstance(r, Reading)]


def test_readings_a_full_outbox_let_go_are_imported_by_the_next_run(
    site: Path, tmp_path: Path
) -> None:
    """An import into a full outbox (outbox.max_bytes, or the disk) thins and then drops its
    own oldest blocks to make room, and says so with gap records. Their readings stayed
    'imported earlier' for good: the same file imported again once there was room counted
    them duplicate and imported nothing, though the collector never got them. (Their keys
    also filled the outbox itself: this import failed with 'database or disk is full'.)"""
    yaml = site.read_text(encoding="utf-8")
    site.write_text(yaml.replace("max_bytes: 2GiB", "max_bytes: 1MiB", 1), encoding="utf-8")
    rows = [
        f"T00{tank}-LT-01,2024-03-01 {8 + s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d},{s % 9}"
        for s in range(6000)
        for tank in (1, 2, 3)
    ]
    csv = write(tmp_path / "log.csv", "point,t,value\n" + "\n".join(rows) + "\n")
    first = backfill(site, csv, "--json")
    thinned = {(r.point, r.t) for r in stored_readings(site)}
    assert len(thinned) < len(rows), "the outbox really let readings go"
    # It said 'imported 18000', exit 0, as if all of them were held. Now it says how many the
    # room-making let go, and exits LET_GO_EXIT: the same command is to be run again later.
    assert first.exit_code == LET_GO_EXIT, first.output
    assert counts(first)["imported"] == len(rows)
    assert counts(first)["let_go"] == len(rows) - len(thinned)
    assert f"{len(rows) - len(thinned)} readings were let go" in first.stderr
    assert "run the same command again" in first.stderr

    site.write_text(yaml, encoding="utf-8")  # room again: max_bytes back to 2GiB
    again = backfill(site, csv, "--json")
    assert again.exit_code == 0, again.output
    assert counts(again)["duplicate"] == len(thinned)
    every = [(r.point, r.t) for r in stored_readings(site)]
    assert (len(every), len(set(every))) == (len(rows), len(rows)), "each row once, none lost"


def test_a_quote_left_open_rejects_its_row_not_the_rows_after_it(
    site: Path, tmp_path: Path
) -> None:
    """No cell of the import can hold a line break, but a quote left open at the end of a
    line made the CSV reader take the lines after it into that cell, up to its 131,072
    characters: about 4,000 good rows went with it, reported as one rejected row."""
    rows = [
        f"T001-LT-01,2024-03-01 {8 + s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d},{s % 9}"
        for s in range(1, 5001)
    ]
    stray = 'T001-LT-01,2024-03-01 08:00:00,"1'
    csv = write(tmp_path / "log.csv", "\n".join(["point,t,value", stray, *rows]) + "\n")
    result = backfill(site, csv, "--json")
    assert result.exit_code == 1
    assert result.stderr == f"{csv}:2: a quote opened on this line is not closed on it\n"
    assert (counts(result)["imported"], counts(result)["rejected"]) == (5000, 1)


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
@pytest.mark.parametrize("length", [MAX_LINE - 1, MAX_LINE, MAX_LINE + 1])
def test_the_line_limit_is_inclusive_and_keeps_the_line_numbers(
    site: Path, tmp_path: Path, length: int, ending: str
) -> None:
    """docs/contract.md: a line of more than 1,048,576 characters is rejected. One of exactly
    that many was rejected as 'longer than 1048576 characters' (the limit counted its line
    end), and one a character shorter ended by CR LF had its LF read as a line of its own:
    every later row was reported a line too far."""
    long_line = ("a," * (length // 2 + 1))[:length]
    rows = [
        "point,t,value",
        long_line,
        "T001-LT-01,2024-03-01 08:00:00,1",
        "T009-LT-01,2024-03-01 08:00:00,1",
        "T001-LT-01,2024-03-01 08:00:01,2",
    ]
    csv = write(tmp_path / "log.csv", ending.join(rows) + ending)
    result = backfill(site, csv, "--json")
    assert result.exit_code == 1, result.output
    if length > MAX_LINE:
        why = f"a line longer than {MAX_LINE} characters"
    else:
        why = f"expected 3 columns, found {long_line.count(',') + 1}"
    assert result.stderr == f"{csv}:2: {why}\n{csv}:4: unknown point 'T009-LT-01'\n"
    assert counts(result)["imported"] == 2
    assert [r.value for r in readings(site)] == [1.0, 2.0]


def test_a_last_line_of_exactly_the_limit_without_a_line_end_is_read(
    site: Path, tmp_path: Path
) -> None:
    last = ("a," * (MAX_LINE // 2 + 1))[:MAX_LINE]
    csv = write(tmp_path / "log.csv", f"point,t,value\nT001-LT-01,2024-03-01 08:00:00,1\n{last}")
    result = backfill(site, csv)
    assert result.exit_code == 1, result.output
    assert result.stderr == f"{csv}:3: expected 3 columns, found {last.count(',') + 1}\n"


def _sealed_blocks(site: Path) -> int:
    try:
        with closing(sqlite3.connect(f"file:{outbox_path(site)}?mode=ro", uri=True)) as db:
            return int(db.execute("SELECT count(*) FROM blocks").fetchone()[0])
    except sqlite3.Error:  # not made yet, or its schema not yet written
        return 0


def test_ctrl_c_stops_an_import_that_the_same_command_then_finishes(
    site: Path, tmp_path: Path
) -> None:
    """Ctrl-C printed click's 'Aborted!' and exited 1, saying nothing of what was imported.
    Now the import stops at a row, seals what it read, says how far it got as a finished one
    does, and exits 130; running the command again imports the rest, nothing twice."""
    total = 100_000  # the first block seals at 4,000 rows; the import takes seconds
    csv = tmp_path / "log.csv"
    with csv.open("w", encoding="utf-8") as out:
        out.write("point,t,value\n")
        start = datetime(2024, 3, 1, 8, tzinfo=UTC)
        for n in range(total):
            out.write(f"T001-LT-01,{(start + timedelta(seconds=n)).isoformat()},{n % 1000}\n")
    command = [str(BIN / "edge-agent"), "backfill", "-c", str(site), "--csv", str(csv)]
    process = subprocess.Popen(
        [*command, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while _sealed_blocks(site) == 0 and process.poll() is None:
        assert time.monotonic() < deadline, "no block sealed in 60 s"
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    shown, err = process.communicate(timeout=60)
    assert process.returncode == 130, (shown, err)
    first = json.loads(shown)
    assert first["interrupted"] is True
    assert 0 < first["imported"] < total
    assert (first["duplicate"], first["rejected"]) == (0, 0)
    assert err == (
        f"{csv}: interrupted after line {first['imported'] + 1}; run the same command again to"
        " import the rest: nothing is imported twice\n"
    )
    again = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    assert (again.returncode, again.stderr) == (0, "")
    rest = total - first["imported"]
    assert again.stdout.startswith(
        f"{csv}: imported {rest}, duplicate {first['imported']}, conflict 0, rejected 0 in "
    )
    stored = stored_readings(site)
    assert len(stored) == total
    assert len({r.t for r in stored}) == total


def test_ctrl_c_while_waiting_for_another_import_exits_130_having_imported_nothing(
    site: Path, tmp_path: Path
) -> None:
    csv = write(tmp_path / "log.csv", "point,t,value\nT001-LT-01,2024-03-01 08:00:00,1\n")
    with exclusive_import(outbox_path(site), lambda: None):
        process = subprocess.Popen(
            [str(BIN / "edge-agent"), "backfill", "-c", str(site), "--csv", str(csv)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stderr is not None
        assert "another backfill is running; waiting for it" in process.stderr.readline()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert (process.returncode, out) == (130, "")
    assert err == f"{csv}: interrupted before importing anything\n"
    assert not outbox_path(site).exists()


def _key_count(site: Path) -> int:
    with closing(sqlite3.connect(outbox_path(site))) as db:
        return int(db.execute("SELECT count(*) FROM backfill_keys").fetchone()[0])


def _deliver_and_prune(site: Path, *, through: int, delivered_at: float, before: float) -> int:
    """ACK blocks 1..`through` at `delivered_at`, then apply retention with cutoff `before`."""
    config = load_site_config(site)
    key = load_signing_key(config.signing.key_file.read_bytes())

    async def run() -> int:
        async with open_outbox(config.outbox.path, identity_of(config), key) as outbox:
            epoch = outbox.epoch
            await outbox.delivery.mark_delivered(
                epoch=epoch, through=through, also=None, now=delivered_at
            )
            return await outbox.prune(delivered_before=before)

    return asyncio.run(run())


@pytest.mark.parametrize("sealed_by", ["this version", "a version before the count"])
def test_keys_of_imported_readings_go_with_their_delivered_blocks(
    site: Path, tmp_path: Path, sealed_by: str
) -> None:
    """`backfill_keys` kept one row per imported reading for ever: retention deleted the
    delivered blocks but never their keys, so an outbox importing a log every day grew by a
    row per reading for good. Now a key goes with the block that carried its reading, once
    that block is delivered and past retention; keys of undelivered blocks stay."""
    rows = [
        f"T00{1 + n % 3}-LT-01,{(datetime(2024, 3, 1, tzinfo=UTC) + timedelta(seconds=n // 3))}"
        f",{n % 50}"
        for n in range(10_000)
    ]
    csv = write(tmp_path / "log.csv", "point,t,value\n" + "\n".join(rows) + "\n")
    first = backfill(site, csv, "--json")
    assert (counts(first)["imported"], counts(first)["duplicate"]) == (10_000, 0)
    assert [len(b.records) for b in chain(site)] == [4000, 4000, 2000]
    assert _key_count(site) == 10_000
    if sealed_by != "this version":  # blocks an older agent sealed: their count is unknown
        with closing(sqlite3.connect(outbox_path(site))) as db, db:
            db.execute("UPDATE blocks SET backfilled = NULL")

    # Blocks 1 and 2 delivered at 1000: not yet past retention at cutoff 1000, then past it.
    assert _deliver_and_prune(site, through=2, delivered_at=1000.0, before=1000.0) == 0
    assert _key_count(site) == 10_000
    assert _deliver_and_prune(site, through=2, delivered_at=1000.0, before=1000.5) == 2
    assert _key_count(site) == 2000, "only the keys of the undelivered block 3 stay"
    with closing(sqlite3.connect(outbox_path(site))) as db:
        held = {(str(p), str(t)) for p, t in db.execute("SELECT point, t FROM backfill_keys")}
    assert held == {(r.point, r.t) for r in stored_readings(site)}

    # The same file again: the readings of block 3 are still waiting (duplicate); those of
    # the pruned blocks are at the collector, which refuses them (tests/e2e: test_backfill_live).
    again = backfill(site, csv, "--json")
    assert (counts(again)["imported"], counts(again)["duplicate"]) == (8000, 2000)
    assert _key_count(site) == 10_000
    assert _deliver_and_prune(site, through=5, delivered_at=2000.0, before=2000.5) == 3
    assert _key_count(site) == 0


def test_keys_an_older_version_left_behind_go_a_chunk_at_a_time_but_held_ones_stay(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An outbox an older version pruned keeps the keys of blocks deleted long ago. They go,
    a chunk a transaction; the key of a reading a block still carries stays."""
    monkeypatch.setattr(outbox_prune, "PRUNE_KEYS", 3000)  # several chunks of each kind
    start = datetime(2024, 3, 1, tzinfo=UTC)
    body = "".join(f"T002-LT-01,{start + timedelta(seconds=n)},{n % 9}\n" for n in range(10_000))
    csv = write(tmp_path / "log.csv", "point,t,value\n" + body)
    assert counts(backfill(site, csv, "--json"))["imported"] == 10_000
    assert _deliver_and_prune(site, through=3, delivered_at=1000.0, before=0.0) == 0
    with closing(sqlite3.connect(outbox_path(site))) as db, db:  # the old retention
        db.execute("DELETE FROM blocks WHERE delivered_at IS NOT NULL")
    one = write(tmp_path / "one.csv", "point,t,value\nT003-LT-01,2024-03-05 08:00:00,1\n")
    assert counts(backfill(site, one, "--json"))["imported"] == 1
    assert _deliver_and_prune(site, through=0, delivered_at=1500.0, before=1500.5) == 0
    assert _key_count(site) == 1, "block 4 carries an imported reading: its key alone stays"
    assert _deliver_and_prune(site, through=4, delivered_at=2000.0, before=2000.5) == 1
    assert _key_count(site) == 0


def test_a_delivered_block_whose_digest_was_erased_is_pruned_and_its_keys_swept(
    site: Path, tmp_path: Path
) -> None:
    """Erased flash inside a delivered block's digest (0xFF, no UTF-8 text) must not stop
    retention: the block goes unread, and its keys once no block carries an imported one."""
    start = datetime(2024, 3, 1, tzinfo=UTC)
    body = "".join(f"T001-LT-01,{start + timedelta(seconds=n)},{n % 9}\n" for n in range(10_000))
    csv = write(tmp_path / "log.csv", "point,t,value\n" + body)
    assert counts(backfill(site, csv, "--json"))["imported"] == 10_000
    erase_inside_column(outbox_path(site), 1, "digest")
    assert _deliver_and_prune(site, through=3, delivered_at=1000.0, before=1000.5) == 3
    assert _key_count(site) == 0


def test_keys_an_older_version_left_behind_go_while_a_daily_import_holds_its_blocks(
    site: Path, tmp_path: Path
) -> None:
    """The sweep waited for a moment when no block held carried an imported reading. A site
    importing a log every day holds one always (its last delivered blocks stay
    `retain_days`), so the keys an older version left never went: 10,000 stayed for good.
    Now a key no block held carries goes whenever the keys outnumber the readings held."""
    start = datetime(2024, 3, 1, tzinfo=UTC)
    body = "".join(f"T002-LT-01,{start + timedelta(seconds=n)},{n % 9}\n" for n in range(10_000))
    assert (
        counts(backfill(site, write(tmp_path / "old.csv", HEADER_PTV + body), "--json"))["imported"]
        == 10_000
    )
    with closing(sqlite3.connect(outbox_path(site))) as db, db:  # the old retention
        db.execute("DELETE FROM blocks")
    for day in (2, 3, 4):  # the blocks of each day's import are kept one more day
        t0 = datetime(2024, 4, day, tzinfo=UTC)
        rows = "".join(f"T003-LT-01,{t0 + timedelta(seconds=n)},{n % 9}\n" for n in range(500))
        csv = write(tmp_path / f"day{day}.csv", HEADER_PTV + rows)
        assert counts(backfill(site, csv, "--json"))["imported"] == 500
        with closing(sqlite3.connect(outbox_path(site))) as db:
            (last,) = db.execute("SELECT max(seq) FROM blocks").fetchone()
        _deliver_and_prune(site, through=last, delivered_at=1000.0 * day, before=1000.0 * day)
        assert _key_count(site) == 500, f"day {day}: only the keys of the block held stay"
    with closing(sqlite3.connect(outbox_path(site))) as db:
        held = {(str(p), str(t)) for p, t in db.execute("SELECT point, t FROM backfill_keys")}
    assert held == {(r.point, r.t) for r in stored_readings(site)}


def test_imported_is_said_to_be_sealed_into_the_outbox_not_stored(
    site: Path, tmp_path: Path
) -> None:
    """`imported` counts the readings sealed into the outbox, and the output says so.

    The collector decides what it stores: a reading of a month past its `storage.raw_days` it
    refuses, audited `past_retention`. The agent cannot know that: the retention is the
    collector's config, and no ACK reports a refused reading (its block is stored and ACKed).
    The output said `imported 2` and nothing more, which read as stored.
    """
    rows = "T001-LT-01,2019-01-01 08:00:00,1\nT001-LT-01,2019-01-01 08:00:01,2\n"
    csv = write(tmp_path / "log.csv", HEADER_PTV + rows)
    first = backfill(site, csv)
    assert first.exit_code == 0, first.output
    counted = f"{csv}: imported 2, duplicate 0, conflict 0, rejected 0 "
    assert first.stdout.splitlines()[0].startswith(counted)
    said = (
        f"{csv}: the imported readings are sealed into the outbox, not yet stored: the collector"
        " refuses any of a month past its storage.raw_days (audited past_retention) and stores"
        " none twice (audited duplicate)"
    )
    assert first.stdout.splitlines()[1:] == [said]
    again = backfill(site, csv)  # nothing imported: nothing to say of it
    assert again.stdout.splitlines()[1:] == [], again.stdout
    help_text = " ".join(invoke("backfill", "--help").stdout.split())
    assert "Imported means sealed into the outbox" in help_text
