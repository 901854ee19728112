"""A gateway key with a byte of its key material changed: refused by `check` and `run`.

Such a key still parses: an Ed25519 seed changed is another valid key (another kid), an SM2
scalar changed keeps the public point stored beside it (the same kid) and signs what that
point does not verify. `check` said all was well and `run` started, signing every block with
a key the collector does not hold. Now both exit 2 at `signing.key_file`, naming the file
and the witness it fails: its own public point, `<key_file>.pub`, or the outbox's newest
block. A rotation's keys (pending, completed, switched half way) and a fresh install pass.
Real edge-agent processes; the outbox is sealed by a real `backfill`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from demo.__main__ import write_configs
from edge_agent.shell.key_witness import unwitnessed_key_problem
from edge_agent.shell.rotation import promote_next_key
from hostkit.keyfiles import create_key_pair, public_key_path, read_private_key, read_public_key
from specs.signing import ED25519, SM2_SM3
from tests.support.cli_runs import bound_by_file_modes, in_a_process

SM2_SCALAR = 40
"""A byte inside the 32-byte private scalar of an SM2 PKCS#8 DER (offsets 36 to 67)."""


def _site(tmp_path: Path, algorithm: str = ED25519) -> Path:
    site = write_configs(tmp_path, "tankfarm", "mqtt://127.0.0.1:1", 1, 1)
    create_key_pair(tmp_path / "keys" / "collector.key")
    create_key_pair(tmp_path / "keys" / "gateway.key", algorithm)
    if algorithm != ED25519:
        text = site.read_text(encoding="utf-8")
        site.write_text(text.replace("algorithm: ed25519", f"algorithm: {algorithm}", 1), "utf-8")
    return site


def _edge_agent(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # `run` with a damaged key started and ran: the timeout ends it and fails the test.
    return in_a_process("edge-agent", *args, cwd=cwd, timeout=30)


def _seal_blocks(site: Path) -> None:
    """Blocks in the outbox, signed with the key as it is now (a real `backfill`)."""
    csv = site.parent / "log.csv"
    csv.write_text("point,t,value\nT001-LT-01,2024-03-01 08:00:00,1\n", encoding="utf-8")
    done = _edge_agent("backfill", "-c", str(site), "--csv", str(csv), cwd=site.parent)
    assert done.returncode == 0, done.stderr


def _newest_kid(site: Path) -> str:
    with sqlite3.connect(site.parent / "state" / "outbox.db") as db:
        (kid,) = db.execute("SELECT kid FROM blocks ORDER BY sealed_at DESC LIMIT 1").fetchone()
    return str(kid)


def _flip(key_file: Path, *, in_base64: bool, at: int = -1) -> None:
    """Change one bit of the key material: in the DER bytes, or one base64 letter of the PEM."""
    head, body, tail = key_file.read_text(encoding="ascii").strip().split("\n", 2)
    body = body.replace("\n", "")
    if in_base64:  # the last letter but the padding: the seed's last bits, still base64
        letters = body.rstrip("=")
        changed = "B" if letters[-1] != "B" else "C"
        body = letters[:-1] + changed + body[len(letters) :]
    else:
        der = bytearray(base64.b64decode(body))
        der[at] ^= 0x01
        body = base64.b64encode(bytes(der)).decode("ascii")
    key_file.write_text(f"{head}\n{body}\n{tail}\n", encoding="ascii")


def _refused(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    return next(line for line in done.stderr.splitlines() if ": signing.key_file: " in line)


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize("in_base64", [False, True], ids=["der-byte", "base64-letter"])
def test_a_flipped_ed25519_key_fails_its_pub(tmp_path: Path, command: str, in_base64: bool) -> None:
    site = _site(tmp_path)
    key_file = tmp_path / "keys" / "gateway.key"
    _seal_blocks(site)
    real = read_private_key(key_file, missing_advice="").kid
    _flip(key_file, in_base64=in_base64)
    damaged = read_private_key(key_file, missing_advice="").kid  # still a key: another one
    assert damaged != real
    line = _refused(_edge_agent(command, "-c", str(site), cwd=tmp_path))
    assert f"{key_file}: the private key (kid {damaged}) does not match its public key" in line
    assert f"{public_key_path(key_file)} (kid {real})" in line
    assert _newest_kid(site) == real  # `run` sealed nothing with it


def test_a_flipped_key_without_its_pub_fails_the_outbox(tmp_path: Path) -> None:
    site = _site(tmp_path)
    key_file = tmp_path / "keys" / "gateway.key"
    _seal_blocks(site)
    public_key_path(key_file).unlink()
    _flip(key_file, in_base64=False)
    state = sorted((tmp_path / "state").iterdir())
    outbox = tmp_path / "state" / "outbox.db"
    damaged = read_private_key(key_file, missing_advice="")
    problem = unwitnessed_key_problem(key_file, damaged, outbox)
    # Read as a whole file: SQLite's `mode=ro` would leave a -wal and -shm of check's user.
    assert sorted((tmp_path / "state").iterdir()) == state
    line = _refused(_edge_agent("check", "-c", str(site), cwd=tmp_path))
    assert line.endswith(f": signing.key_file: {problem}"), line
    assert "did not sign the outbox's newest block" in line, line
    # With the -wal and -shm there (another process has the outbox open): read through them.
    with contextlib.closing(sqlite3.connect(outbox)) as holder:
        holder.execute("SELECT value FROM meta").fetchall()
        assert (tmp_path / "state" / "outbox.db-shm").is_file()
        assert unwitnessed_key_problem(key_file, damaged, outbox) == problem
    assert f"{tmp_path / 'state' / 'outbox.db'} epoch " in line
    assert f"kid {_newest_kid(site)})" in line


@pytest.mark.parametrize("command", ["check", "run"])
def test_an_sm2_key_with_its_scalar_changed_fails_its_own_public_point(
    tmp_path: Path, command: str
) -> None:
    site = _site(tmp_path, SM2_SM3)
    key_file = tmp_path / "keys" / "gateway.key"
    real = read_private_key(key_file, missing_advice="").kid
    _flip(key_file, in_base64=False, at=SM2_SCALAR)
    assert read_private_key(key_file, missing_advice="").kid == real  # the kid does not tell
    line = _refused(_edge_agent(command, "-c", str(site), cwd=tmp_path))
    assert f"{key_file}: the private key does not match the public key stored with it" in line


def test_a_flipped_key_on_a_fresh_install_fails_its_pub(tmp_path: Path) -> None:
    site = _site(tmp_path)
    key_file = tmp_path / "keys" / "gateway.key"
    fresh = _edge_agent("check", "-c", str(site), cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr  # no outbox yet: a sound key passes
    _flip(key_file, in_base64=False)
    assert "does not match its public key" in _refused(
        _edge_agent("check", "-c", str(site), cwd=tmp_path)
    )


def test_a_rotated_key_passes_pending_completed_and_half_switched(tmp_path: Path) -> None:
    site = _site(tmp_path)
    key_file = tmp_path / "keys" / "gateway.key"
    _seal_blocks(site)
    rotated = _edge_agent("keys", "rotate", "-c", str(site), cwd=tmp_path)
    assert rotated.returncode == 0, rotated.stderr
    pending = _edge_agent("check", "-c", str(site), cwd=tmp_path)
    assert pending.returncode == 0, pending.stderr
    # A switch killed after the staged `.pub` moved into place, before the private key did.
    staged_public = public_key_path(key_file.with_name("gateway.key.next"))
    staged_public.replace(public_key_path(key_file))
    half = _edge_agent("check", "-c", str(site), cwd=tmp_path)
    assert half.returncode == 0, half.stderr
    old, new = promote_next_key(key_file)  # the switch done (as an ACK of the announcement)
    assert _newest_kid(site) == old.kid  # the outbox's newest block is still the old key's
    switched = _edge_agent("check", "-c", str(site), cwd=tmp_path)
    assert switched.returncode == 0, switched.stderr
    public_key_path(key_file).unlink()  # the outbox alone: it announced the new key
    announced = _edge_agent("check", "-c", str(site), cwd=tmp_path)
    assert announced.returncode == 0, announced.stderr
    assert read_private_key(key_file, missing_advice="").kid == new.kid


def test_backfill_refuses_a_flipped_key(tmp_path: Path) -> None:
    site = _site(tmp_path)
    key_file = tmp_path / "keys" / "gateway.key"
    _seal_blocks(site)
    _flip(key_file, in_base64=False)
    csv = tmp_path / "more.csv"
    csv.write_text("point,t,value\nT001-LT-01,2024-03-01 08:01:00,2\n", encoding="utf-8")
    done = _edge_agent("backfill", "-c", str(site), "--csv", str(csv), cwd=tmp_path)
    assert "does not match its public key" in _refused(done)


def _stale_pub_warning(stderr: str) -> str:
    return next(line for line in stderr.splitlines() if "is stale" in line)


def _says_the_pub_is_stale(warning: str, key_file: Path, *, holds: str, proven: str) -> None:
    public = public_key_path(key_file)
    assert f"{public} is stale: it holds kid {holds}" in warning, warning
    assert f"kid {proven}" in warning, warning
    assert f"openssl pkey -in {key_file} -pubout -out {public}" in warning, warning


def _run_until_it_logs(site: Path, event: str) -> str:
    """`run` in a process of its own (no broker: it keeps trying); its log line `event`.

    `run` logs on stdout (JSON lines) and refusals on stderr.

    Ended (SIGTERM) once the line is read; a `run` that ends first fails the test with its
    output.
    """
    main = "from edge_agent.cli import main; main()"
    argv = [sys.executable, "-c", main, "--log-format", "json", "run", "-c", str(site)]
    out = subprocess.PIPE
    with subprocess.Popen(
        argv, cwd=site.parent, stdout=out, stderr=subprocess.STDOUT, text=True
    ) as agent:
        assert agent.stdout is not None
        seen: list[str] = []
        try:
            for line in agent.stdout:  # blocking reads: the line, or the end of the process
                seen.append(line)
                if f'"{event}"' in line:
                    return line
        finally:
            agent.terminate()
            agent.wait(timeout=30)
    raise AssertionError("".join(seen))


@pytest.mark.timeout(120)
def test_an_old_builds_half_switch_runs_with_a_warning(tmp_path: Path) -> None:
    """Before d3f975e the switch moved the private key first: killed before the `.pub`, it
    left the new key beside the old `.pub` and no `.next`, and the agent ran on signing and
    announcing the new key. The stale `.pub` alone stopped that healthy site (exit 2, for
    good under RestartPreventExitStatus=2); the outbox vouches, so it runs, saying so."""
    site = _site(tmp_path)
    key_file = tmp_path / "keys" / "gateway.key"
    old_public = public_key_path(key_file).read_bytes()
    _seal_blocks(site)
    rotated = _edge_agent("keys", "rotate", "-c", str(site), cwd=tmp_path)
    assert rotated.returncode == 0, rotated.stderr
    old, new = promote_next_key(key_file)
    csv = tmp_path / "later.csv"
    csv.write_text("point,t,value\nT001-LT-01,2024-03-01 09:00:00,2\n", encoding="utf-8")
    sealed = _edge_agent("backfill", "-c", str(site), "--csv", str(csv), cwd=tmp_path)
    assert sealed.returncode == 0, sealed.stderr
    assert _newest_kid(site) == new.kid
    public_key_path(key_file).write_bytes(old_public)  # the old build's half switch
    assert not key_file.with_name("gateway.key.next").exists()
    checked = _edge_agent("check", "-c", str(site), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    warning = _stale_pub_warning(checked.stderr)
    assert warning.startswith("warning: "), warning
    _says_the_pub_is_stale(warning, key_file, holds=old.kid, proven=new.kid)
    logged = json.loads(_run_until_it_logs(site, "gateway_public_key_found_stale"))
    assert logged["level"] == "warning", logged
    assert (logged["public_kid"], logged["kid"]) == (old.kid, new.kid), logged
    assert _newest_kid(site) == new.kid


def test_a_restored_key_beside_a_newer_stale_pub_passes(tmp_path: Path) -> None:
    """Only the private key put back from a backup (after `keys init` made another pair):
    the outbox's only block is signed by the restored key, the `.pub` is the other one's."""
    site = _site(tmp_path)
    key_file = tmp_path / "keys" / "gateway.key"
    _seal_blocks(site)
    backup = key_file.read_bytes()
    restored = read_private_key(key_file, missing_advice="").kid
    key_file.unlink()
    made = _edge_agent("keys", "init", "-c", str(site), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    newer = read_public_key(public_key_path(key_file)).kid
    key_file.write_bytes(backup)  # still 0600: the file `keys init` made, rewritten
    assert newer != restored == _newest_kid(site)
    for command in ("check", "backfill"):
        args = ["--csv", str(site.parent / "log.csv")] if command == "backfill" else []
        done = _edge_agent(command, "-c", str(site), *args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    warning = _stale_pub_warning(done.stderr)
    _says_the_pub_is_stale(warning, key_file, holds=newer, proven=restored)


def test_a_refusal_names_each_witness_and_a_pub_it_could_not_read(tmp_path: Path) -> None:
    """A `.pub` the user cannot read was skipped without a word: root's `check` and the
    service's `run` could disagree and neither said why. The refusal names every witness."""
    site = _site(tmp_path)
    key_file = tmp_path / "keys" / "gateway.key"
    _seal_blocks(site)
    real = _newest_kid(site)
    _flip(key_file, in_base64=False)
    damaged = read_private_key(key_file, missing_advice="").kid
    public_key_path(key_file).chmod(0)
    main = "from edge_agent.cli import main; main()"
    argv = [*bound_by_file_modes(), sys.executable, "-c", main, "check", "-c", str(site)]
    done = subprocess.run(
        argv, cwd=tmp_path, capture_output=True, text=True, check=False, timeout=30
    )
    line = _refused(done)
    assert f"{key_file}: the private key (kid {damaged}) did not sign" in line, line
    assert f"{tmp_path / 'state' / 'outbox.db'} epoch " in line, line
    assert f"kid {real})" in line, line
    assert f"{public_key_path(key_file)}: not readable by this user, skipped" in line, line
