"""Whether the gateway key on disk is one this gateway made, by the evidence it left.

A private key with a byte of its key material changed (a flipped bit on the card, a hand
that edited the PEM) still parses: it is another valid key, of another kid, and the collector,
which holds the public key registered from `<key_file>.pub` or announced in a rotation,
refuses every block it signs. An SM2 key whose private scalar changed keeps the public point
stored beside it (and so its kid) and signs what that point does not verify: a signature of
its own tells. Two witnesses know the real key:

- `<key_file>.pub`, written with the private key (`keys init`, a rotation's switch) and the
  file registered with the collector (`collector gateways add`);
- the outbox: the kid of its newest block (the key that signed it: a kid is the SHA-256 of
  the public key, so equal kids are equal public keys) and the kids it announced.

`.pub`, when it can be read, decides: a replaced pair (`keys init` wrote both halves), a
rotation pending (old key and `.pub`) or completed (new key and `.pub`) pass, and so does a
switch killed half way (`.pub` already the staged key's, the key still the old one). Without
it the outbox decides: a key that signed its newest block, or that it announced (a rotation's,
the block perhaps signed before the switch), passes. With neither (a fresh install without a
`.pub`, a newest block pruned) there is no evidence, and nothing is said.
"""

from __future__ import annotations

import contextlib
import sqlite3
import stat
from pathlib import Path

from hostkit.keyfiles import (
    KeyFileError,
    next_key_path,
    public_key_path,
    read_private_key,
    read_public_key,
)
from specs.signing import SignatureError, SigningKey

_NEWEST_BLOCK_SQL = (
    "SELECT b.epoch, b.seq, b.kid FROM meta AS e JOIN meta AS s"
    " ON e.key = 'epoch' AND s.key = 'last_seq'"
    " JOIN blocks AS b ON b.epoch = e.value AND b.seq = CAST(s.value AS INTEGER)"
)
_ANNOUNCED_SQL = "SELECT 1 FROM key_announcements WHERE kid = ? LIMIT 1"

_FIX = (
    "the key is damaged or not this gateway's: put back its own key (from a backup), or remove"
    " it, make a new pair (`edge-agent keys init`) and register its .pub with the collector"
    " (`collector gateways add`)"
)
_PROBE = b"ganzhi gateway key self-check"


def unwitnessed_key_problem(key_file: Path, key: SigningKey, outbox_path: Path) -> str | None:
    """Why `key` (read from `key_file`) is not the gateway's key, or None.

    First the key against itself: an SM2 PKCS#8 key carries its public point, which gives the
    kid, beside the private scalar; a changed scalar keeps the kid and signs what that public
    key refuses. Then `<key_file>.pub`, when it can be read: the half the collector holds.
    Without it, the outbox. None as well when nothing could tell.
    """
    try:
        key.public().verify(key.sign(_PROBE), _PROBE)
    except SignatureError:
        return (
            f"{key_file}: the private key does not match the public key stored with it"
            f" (kid {key.kid}): its signatures would not verify; {_FIX}"
        )
    public = _public_kid(key_file)
    if public is not None:
        if public in _vouched_by_pub(key_file, key):
            return None
        return (
            f"{key_file}: the private key (kid {key.kid}) does not match its public key"
            f" {public_key_path(key_file)} (kid {public}); {_FIX}"
        )
    newest = _newest_block_unless_announced(outbox_path, key.kid)
    if newest is None or newest[0] == key.kid:
        return None
    kid, where = newest
    return (
        f"{key_file}: the private key (kid {key.kid}) did not sign the outbox's newest block"
        f" ({where}, kid {kid}), which has no announcement of it either; {_FIX}"
    )


def _public_kid(key_file: Path) -> str | None:
    """The kid of `<key_file>.pub`; None when there is none or it cannot be read as a key."""
    public = public_key_path(key_file)
    if not public.exists():
        return None
    try:
        return read_public_key(public).kid
    except KeyFileError:  # a witness that cannot be read says nothing
        return None


def _vouched_by_pub(key_file: Path, key: SigningKey) -> set[str]:
    """The `.pub` kids that vouch for `key`: its own, or the staged key's in a switch half done.

    `switch_to_next_key` moves the staged `.pub` into place before the private key: killed in
    between, `.pub` is the next key's and `key_file` still the old one until the next start.
    """
    vouching = {key.kid}
    staged = next_key_path(key_file)
    if staged.exists():
        # One that cannot be read vouches for nothing: the rotation's own start says why.
        with contextlib.suppress(KeyFileError):
            vouching.add(read_private_key(staged, missing_advice="").kid)
    return vouching


def _newest_block_unless_announced(outbox_path: Path, kid: str) -> tuple[str, str] | None:
    """(kid, where) of the outbox's newest block, unless the outbox announced key `kid`.

    None when it did (a rotation's key: the collector has it), and when there is no outbox,
    no newest block (pruned, none sealed) or it cannot be read: read-only, and only a regular
    file (the outbox's own checks name anything else).
    """
    try:
        how = _read_only(outbox_path)
        if how is None:
            return None
        db = sqlite3.connect(f"{outbox_path.resolve().as_uri()}?{how}", uri=True, timeout=5.0)
    except (OSError, sqlite3.Error):
        return None
    try:
        if db.execute(_ANNOUNCED_SQL, (kid,)).fetchone() is not None:
            return None
        row = db.execute(_NEWEST_BLOCK_SQL).fetchone()
    except sqlite3.Error:  # not an outbox (yet), or damaged: the start deals with it
        return None
    finally:
        db.close()
    if row is None:
        return None
    return str(row[2]), f"{outbox_path} epoch {row[0]} seq {row[1]}"


def _read_only(outbox_path: Path) -> str | None:
    """How to open the outbox without leaving a file behind; None when it cannot be told.

    OSError when it cannot be looked at; None for anything but a regular file.

    SQLite's `mode=ro` on a WAL file creates its -wal and -shm and leaves them: made by `check`
    as root, the service could not write them, and every seal would fail. With both there (an
    agent runs, or was killed) they are used as they are; with neither (the last agent closed
    the file, which folds the WAL in) the file is whole and read as immutable.
    """
    if not stat.S_ISREG(outbox_path.stat().st_mode):  # the outbox's own checks name it
        return None
    wal, shm = (outbox_path.with_name(outbox_path.name + end) for end in ("-wal", "-shm"))
    if wal.is_file() and shm.is_file():  # regular files: a FIFO there would hold the open
        return "mode=ro"
    if any(path.exists() or path.is_symlink() for path in (wal, shm)):
        return None
    return "immutable=1"
