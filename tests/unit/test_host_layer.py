"""The host layer (`hostkit`): one logging set-up, one key-file writer, one table renderer.

Each was written twice before and had drifted; each test here failed on one of the copies:
the collector's JSON logs escaped Chinese to `\\uXXXX`, the agent wrote `<key>.pub` in place
(truncate, then write), and `edge-agent probe` (like the collector's tables) padded by
characters, not by the cells a CJK character takes on a terminal.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import stat
import sys
from pathlib import Path

import click
import pytest
import structlog

import collector.cli
import edge_agent.cli
from edge_agent.cli.probe import ProbeRow, _text
from hostkit.atomicfile import replace_file, replacing
from hostkit.keyfiles import (
    KeyFileError,
    create_key_pair,
    next_key_path,
    public_key_path,
    retired_key_path,
    switch_to_next_key,
    write_key_pair,
)
from hostkit.logs import configure_logging
from hostkit.tables import display_width, printable, render_table
from specs.signing import SigningKey, generate_signing_key, load_signing_key, load_verify_key

EXAMPLE_SITE = Path(__file__).resolve().parents[2] / "configs" / "tankfarm.yaml"


# --- logging ------------------------------------------------------------------------------


def _set_up_by_the_cli(program: str, tmp_path: Path) -> None:
    """Let the program's own command line set logging up (`--log-format json`), in-process."""
    command: click.Group
    if program == "collector":
        args = ["--log-format", "json", "check", "-h"]  # the group sets logging up first
        command = collector.cli.main
    else:
        site = tmp_path / "site.yaml"  # no key beside it: `run` sets logging up, then exits 2
        shutil.copyfile(EXAMPLE_SITE, site)
        args = ["--log-format", "json", "run", "-c", str(site)]
        command = edge_agent.cli.main
    with contextlib.suppress(SystemExit):
        command.main(args, prog_name=program)


@pytest.mark.parametrize("program", ["edge-agent", "collector"])
def test_each_program_logs_chinese_as_written(
    program: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _set_up_by_the_cli(program, tmp_path)
    capsys.readouterr()
    structlog.configure(cache_logger_on_first_use=False)
    structlog.get_logger("test").info("site_named", name="尾矿库 3号")
    captured = capsys.readouterr()
    # `collector check` logs on stderr (its stdout is its report), `edge-agent run` on stdout.
    line = captured.err if program == "collector" else captured.out
    assert '"name": "尾矿库 3号"' in line
    assert json.loads(line)["event"] == "site_named"


def test_json_log_lines_keep_chinese_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", stream=sys.stdout)
    structlog.configure(cache_logger_on_first_use=False)
    structlog.get_logger("test").info("site_named", name="尾矿库 3号")
    logging.getLogger("uvicorn.error").warning("客户端 %s 断开", "甲")
    lines = capsys.readouterr().out.splitlines()
    ours, library = (json.loads(line) for line in lines)
    assert '"尾矿库 3号"' in lines[0]
    assert "\\u" not in lines[0] + lines[1]
    assert (ours["event"], ours["level"], ours["name"]) == ("site_named", "info", "尾矿库 3号")
    assert (library["event"], library["level"]) == ("客户端 甲 断开", "warning")
    assert library["logger"] == "uvicorn.error"


def test_json_log_lines_carry_a_traceback_as_text(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", stream=sys.stdout)
    structlog.configure(cache_logger_on_first_use=False)
    try:
        float("坏值")
    except ValueError:
        structlog.get_logger("test").exception("decode_failed")
    line = json.loads(capsys.readouterr().out)
    assert line["event"] == "decode_failed"
    assert "ValueError: could not convert string to float: '坏值'" in line["exception"]


def test_debug_shows_our_events_but_not_library_chatter(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("json", logging.DEBUG, stream=sys.stdout)
    structlog.configure(cache_logger_on_first_use=False)
    structlog.get_logger("test").debug("block_stored")
    logging.getLogger("paho").debug("keepalive")
    logging.getLogger("pymodbus").error("request failed")  # the poller reports link state
    events = [json.loads(line)["event"] for line in capsys.readouterr().out.splitlines()]
    assert events == ["block_stored"]


# --- key files ----------------------------------------------------------------------------


def test_the_public_key_is_renamed_into_place_never_rewritten(tmp_path: Path) -> None:
    """A reader holding the old `.pub` (a stale one left behind) never sees it change.

    Writing in place truncates the very file the reader has and fills it again: a reader (or
    a crash) in between meets a half-written key. Written aside and renamed, the old file
    stays whole and the path holds either the old or the new key, never a part.
    """
    key_file = tmp_path / "keys" / "gateway.key"
    key_file.parent.mkdir()
    stale = public_key_path(key_file)
    stale.write_text("a stale public key\n")
    witness = tmp_path / "held-open"
    os.link(stale, witness)
    key = create_key_pair(key_file, "ed25519")
    assert witness.read_text() == "a stale public key\n"
    assert load_verify_key(stale.read_bytes()).kid == key.kid
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert sorted(p.name for p in key_file.parent.iterdir()) == ["gateway.key", "gateway.key.pub"]


def test_a_public_key_that_cannot_be_placed_leaves_no_partial_file(tmp_path: Path) -> None:
    key_file = tmp_path / "gateway.key"
    public_key_path(key_file).mkdir()  # something in the way that a rename cannot replace
    with pytest.raises(KeyFileError, match="cannot write the key"):
        write_key_pair(key_file, generate_signing_key("ed25519"))
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
    assert list(public_key_path(key_file).iterdir()) == []


def test_an_existing_private_key_is_never_replaced(tmp_path: Path) -> None:
    key_file = tmp_path / "gateway.key"
    key_file.write_text("the key in use\n")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        write_key_pair(key_file, generate_signing_key("ed25519"))
    assert key_file.read_text() == "the key in use\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gateway.key"]


def test_a_switch_without_a_staged_public_key_keeps_the_retired_one(tmp_path: Path) -> None:
    """The retired `.pub` is a hard link to the old public file: the new one goes beside it.

    With no `<key_file>.next.pub` the switch writes the new public key itself; written in
    place over `<key_file>.pub`, it would land in the retired key's `.pub` too (one inode).
    """
    key_file = tmp_path / "collector.key"
    old = create_key_pair(key_file, "ed25519")
    new = create_key_pair(next_key_path(key_file), "ed25519")
    public_key_path(next_key_path(key_file)).unlink()
    switched = switch_to_next_key(key_file, _private_key, action="activate")
    assert [key.kid for key in switched] == [old.kid, new.kid]
    retired = retired_key_path(key_file, old.kid)
    assert load_verify_key(public_key_path(retired).read_bytes()).kid == old.kid
    assert load_verify_key(public_key_path(key_file).read_bytes()).kid == new.kid
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


class _Interrupted(BaseException):
    """What Ctrl-C (KeyboardInterrupt) or a SystemExit raises: not an OSError."""


def test_a_switch_killed_between_its_renames_is_finished_by_the_next_try(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill after the switch's first rename: the next start (or `--activate`) completes it.

    The private key moved first: a kill before its `.pub` followed left `<key_file>` the new
    key, `<key_file>.pub` the old one's, and no `.next` to say a switch was unfinished, so
    nothing ever put the right `.pub` in place (the one an operator registers or hands out).
    """
    key_file = tmp_path / "gateway.key"
    old = create_key_pair(key_file, "ed25519")
    new = create_key_pair(next_key_path(key_file), "ed25519")
    renamed: list[Path] = []
    rename = Path.replace

    def killed_after_one_rename(source: Path, target: Path) -> Path:
        if renamed:
            raise _Interrupted
        renamed.append(source)
        return rename(source, target)

    with monkeypatch.context() as patched:
        patched.setattr(Path, "replace", killed_after_one_rename)
        with pytest.raises(_Interrupted):
            switch_to_next_key(key_file, _private_key, action="switch to")
    # What the agent's next start does: switch while a staged key is there.
    if next_key_path(key_file).exists():
        switch_to_next_key(key_file, _private_key, action="switch to")
    assert _private_key(key_file).kid == new.kid
    assert load_verify_key(public_key_path(key_file).read_bytes()).kid == new.kid
    retired = retired_key_path(key_file, old.kid)
    assert _private_key(retired).kid == old.kid
    assert load_verify_key(public_key_path(retired).read_bytes()).kid == old.kid


@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_a_file_replace_interrupted_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    def interrupted(*_: object) -> None:
        raise _Interrupted

    target = tmp_path / "site.yaml"
    target.write_bytes(b"old\n")
    if step == "fsync":
        monkeypatch.setattr(os, "fsync", interrupted)
    else:
        monkeypatch.setattr(Path, "replace", interrupted)
    with pytest.raises(_Interrupted):
        replace_file(target, b"new\n")
    assert [p.name for p in tmp_path.iterdir()] == ["site.yaml"]
    assert target.read_bytes() == b"old\n"


def test_a_file_replaced_takes_away_what_a_crash_left_of_its_earlier_writes(
    tmp_path: Path,
) -> None:
    # A power cut between writing aside and renaming leaves `.<name>.<random>.tmp`; with a
    # new name each write, nothing would ever take them away (a pushed map, the command
    # desk's state, the epoch journal are replaced for years).
    target = tmp_path / "site.yaml"
    stray = [tmp_path / ".site.yaml.0123456789ab.tmp", tmp_path / ".site.yaml.ffffffffffff.tmp"]
    kept = [
        tmp_path / ".site.yaml.notes.tmp",  # not a name write_aside gives
        tmp_path / ".other.yaml.0123456789ab.tmp",  # another file's
        tmp_path / "site.yaml.prev",
    ]
    for path in [*stray, *kept]:
        path.write_bytes(b"left\n")
    replace_file(target, b"new\n")
    assert target.read_bytes() == b"new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["site.yaml", *(p.name for p in kept)]
    )


def test_a_write_in_progress_is_no_leftover_of_a_crash(tmp_path: Path) -> None:
    # Two `collector export --out F` at once (two cron jobs): the second to start took the
    # first one's temporary for a crash's and removed it, and the first, its rows all
    # written, then failed on the rename ('No such file or directory'). A writer holds a
    # lock on its temporary until its rename; only files nobody holds are a crash's.
    target = tmp_path / "export.csv"
    with replacing(target) as first:
        first.write(b"first, ")
        with replacing(target) as second:
            second.write(b"second\n")
        assert target.read_bytes() == b"second\n"
        first.write(b"whole\n")
    assert target.read_bytes() == b"first, whole\n"
    assert [p.name for p in tmp_path.iterdir()] == ["export.csv"]


def test_a_file_replaced_piece_by_piece_is_whole_or_untouched(tmp_path: Path) -> None:
    # `collector export --out`: a write killed before the end leaves its temporary; the next
    # write of the file removes it, even one that fails itself, and a failure keeps the old.
    target = tmp_path / "export.csv"
    target.write_bytes(b"old\n")
    killed = tmp_path / ".export.csv.0123456789ab.tmp"
    killed.write_bytes(b"half of an earlier wr")

    def write_half() -> None:
        with replacing(target) as handle:
            handle.write(b"new, ")
            raise _Interrupted

    with pytest.raises(_Interrupted):
        write_half()
    assert [p.name for p in tmp_path.iterdir()] == ["export.csv"]
    assert target.read_bytes() == b"old\n"
    with replacing(target) as handle:
        handle.write(b"new, ")
        handle.write(b"whole\n")
    assert [p.name for p in tmp_path.iterdir()] == ["export.csv"]
    assert target.read_bytes() == b"new, whole\n"


def _private_key(path: Path) -> SigningKey:
    return load_signing_key(path.read_bytes())


# --- tables -------------------------------------------------------------------------------


def test_display_width_counts_cjk_as_two_cells_and_marks_as_none() -> None:
    assert display_width("尾矿库") == 6
    assert display_width("\uff21\uff22") == 4  # full-width Latin A, B
    assert display_width("℃ m3/h") == 6
    assert display_width("e\u0301") == 1  # e + combining acute


def test_table_columns_line_up_by_display_width() -> None:
    text = render_table(
        [("罐区一号", "液位", "m"), ("tank-2", "level", "m")], ("device", "名称", "u")
    )
    lines = text.splitlines()
    for column_text in ("液位", "level", "名称"):
        line = next(line for line in lines if column_text in line)
        assert display_width(line[: line.index(column_text)]) == len("罐区一号") * 2 + 2


def test_control_characters_in_a_cell_are_shown_escaped_and_counted_as_shown() -> None:
    text = render_table([("a\nb\x1b[2K", "x"), ("罐区\u202e", "y")], ("who", "what"))
    assert text.splitlines() == [
        "who" + " " * 10 + "what",
        "a\\nb\\x1b[2K  x",  # 11 cells
        "罐区\\u202e   y",  # 10 cells, padded to 11
    ]
    assert printable("尾矿库 ℃\tend\x9b\u2028") == "尾矿库 ℃\\tend\\x9b\\u2028"


def test_probe_table_lines_up_chinese_device_names() -> None:
    def row(device: str) -> ProbeRow:
        return ProbeRow(device, "T1", "WHP-T", "0x0001", 1.0, 1.0, "℃", "good", (), 1.0)

    lines = _text([row("罐区一号"), row("tank-2")]).splitlines()
    starts = {display_width(line[: line.index("T1")]) for line in lines[1:]}
    assert starts == {len("罐区一号") * 2 + 2}
