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

Any witness that vouches for the key lets it pass: `.pub` (its own kid, or the staged `.next`
key's in a switch killed half way), the outbox's newest block, a kid the outbox announced. Only
when at least one could be read and every one read disagrees is the key refused; the refusal
names each witness and what it said, a file this user could not read among them. A `.pub` that
disagrees while the outbox vouches is stale, not the key: an older build's switch killed between
its two renames (the private key moved first) left the new key beside the old `.pub`, and a
private key put back from a backup without its `.pub` does the same; the agent runs, warned.
With no witness to read (a fresh install without a `.pub`, a newest block pruned) nothing is
said.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from dataclasses import dataclass
from pathlib import Path

from hostkit.keyfiles import KeyFileError, next_key_path, public_key_path, read_private_key
from specs.signing import SignatureError, SigningKey, load_verify_key

_NEWEST_BLOCK_SQL = (
    "SELECT b.epoch, b.seq, b.kid FROM meta AS e JOIN meta AS s"
    " ON e.key = 'epoch' AND s.key = 'last_seq'"
    " JOIN blocks AS b ON b.epoch = e.value AND b.seq = CAST(s.value AS INTEGER)"
)
_ANNOUNCED_SQL = "SELECT 1 FROM key_announcements WHERE kid = ? LIMIT 1"

_FIX = (
    "the key is damaged or not this gateway's: put back its own key (from a backup; the kid"
    " the outbox's newest block names, else the .pub's), or remove it, make a new pair"
    " (`edge-agent keys init`) and register its .pub with the collector (`collector gateways"
    " add`)"
)
_PROBE = b"ganzhi gateway key self-check"
_UNREADABLE = "not readable by this user, skipped"


@dataclass(frozen=True)
class StalePublicKey:
    """`<key_file>.pub` holds another key than `key_file`, which the outbox proves the gateway's.

    `proof`: what in the outbox vouches (the newest block it signed, or its announcement).
    """

    key_file: Path
    kid: str
    public: Path
    public_kid: str
    proof: str

    def message(self) -> str:
        """What `check` and `backfill` print, and the fix (there is no command that rewrites it)."""
        return (
            f"{self.public} is stale: it holds kid {self.public_kid}, while the outbox proves"
            f" {self.key_file} (kid {self.kid}) the gateway's key ({self.proof}); rewrite it"
            f" from the key: `openssl pkey -in {self.key_file} -pubout -out {self.public}`"
        )


@dataclass(frozen=True)
class KeyVerdict:
    """What the witnesses say of a key: a refusal, a stale `.pub` to warn of, or neither."""

    problem: str | None = None
    stale_public: StalePublicKey | None = None


@dataclass(frozen=True)
class _Witness:
    """One witness's word: `vouches`, or `disagrees` (a clause of the refusal), or a `note`."""

    vouches: str | None = None
    disagrees: str | None = None
    note: str | None = None


def unwitnessed_key_problem(key_file: Path, key: SigningKey, outbox_path: Path) -> str | None:
    """Why `key` (read from `key_file`) is not the gateway's key, or None (`witness_key`)."""
    return witness_key(key_file, key, outbox_path).problem


def witness_key(key_file: Path, key: SigningKey, outbox_path: Path) -> KeyVerdict:
    """What the evidence says of `key`, read from `key_file`.

    First the key against itself, unconditionally: an SM2 PKCS#8 key carries its public point,
    which gives the kid, beside the private scalar; a changed scalar keeps the kid and signs
    what that public key refuses, whatever any witness says. Then `<key_file>.pub` and the
    outbox: any one vouching passes; refused only when one was read and all read disagree.
    """
    try:
        key.public().verify(key.sign(_PROBE), _PROBE)
    except SignatureError:
        return KeyVerdict(
            f"{key_file}: the private key does not match the public key stored with it"
            f" (kid {key.kid}): its signatures would not verify; {_FIX}"
        )
    public, public_kid = _public_witness(key_file, key)
    if public.vouches is not None:
        return KeyVerdict()
    outbox = _outbox_witness(outbox_path, key.kid)
    if outbox.vouches is not None:
        if public_kid is None:
            return KeyVerdict()
        return KeyVerdict(
            stale_public=StalePublicKey(
                key_file, key.kid, public_key_path(key_file), public_kid, outbox.vouches
            )
        )
    said = [witness.disagrees for witness in (public, outbox) if witness.disagrees is not None]
    if not said:  # nothing read could tell
        return KeyVerdict()
    skipped = [witness.note for witness in (public, outbox) if witness.note is not None]
    return KeyVerdict(
        f"{key_file}: the private key (kid {key.kid}) "
        + "; it ".join(said)
        + "; "
        + "".join(f"{note}; " for note in skipped)
        + _FIX
    )


def _public_witness(key_file: Path, key: SigningKey) -> tuple[_Witness, str | None]:
    """What `<key_file>.pub` says of `key`, and the kid it holds (None when it was not read).

    It vouches for its own kid, and for the key being switched from when it is the staged
    key's: `switch_to_next_key` moves the staged `.pub` into place before the private key, so
    a switch killed in between leaves `.pub` the next key's and `key_file` the old one until
    the next start.
    """
    public = public_key_path(key_file)
    kid, note = _public_kid(public)
    if kid is None:
        return _Witness(note=note), None
    if kid == key.kid:
        return _Witness(vouches=f"{public}"), kid
    staged = next_key_path(key_file)
    staged_kid = None
    if staged.exists():
        try:
            staged_kid = read_private_key(staged, missing_advice="").kid
        except KeyFileError:  # vouches for nothing: the rotation's own start says why
            staged_kid = None
    if staged_kid == kid:
        return _Witness(vouches=f"{public}, the staged key's"), kid
    nor = "" if staged_kid is None else f", nor is that the staged key {staged}'s ({staged_kid})"
    return _Witness(disagrees=f"does not match its public key {public} (kid {kid}){nor}"), kid


def _public_kid(public: Path) -> tuple[str | None, str | None]:
    """The kid `public` holds; else None and why it was skipped (None when it is not there)."""
    try:
        return load_verify_key(public.read_bytes()).kid, None
    except FileNotFoundError:
        return None, None
    except PermissionError:  # the service's user may be kept out of a file root can read
        return None, f"{public}: {_UNREADABLE}"
    except OSError as exc:
        return None, f"{public}: cannot be read ({exc.strerror or exc}), skipped"
    except SignatureError:  # a witness that cannot be read as a key says nothing
        return None, f"{public}: not a public key, skipped"


def _outbox_witness(outbox_path: Path, kid: str) -> _Witness:
    """What the outbox says of key `kid`: it announced it, or signed its newest block with it.

    Nothing when there is no outbox, no newest block (pruned, none sealed) or it cannot be read
    as one: read-only, and only a regular file (the outbox's own checks name anything else).
    """
    try:
        announced, row = _outbox_rows(outbox_path, kid)
    except PermissionError:
        return _Witness(note=f"{outbox_path}: {_UNREADABLE}")
    if announced:
        return _Witness(vouches=f"{outbox_path} announced it")
    if row is None:
        return _Witness()
    epoch, seq, signer = row
    where = f"{outbox_path} epoch {epoch} seq {seq}"
    if str(signer) == kid:
        return _Witness(vouches=f"it signed the newest block, {where}")
    return _Witness(
        disagrees=f"did not sign the outbox's newest block ({where}, kid {signer}),"
        " which has no announcement of it either"
    )


def _outbox_rows(outbox_path: Path, kid: str) -> tuple[bool, tuple[object, object, object] | None]:
    """Whether the outbox announced `kid`; if not, its newest block (epoch, seq, kid) or None.

    (False, None) when neither can be read; PermissionError when this user may not read it.
    """
    try:
        how = _read_only(outbox_path)
        if how is None:
            return False, None
        db = sqlite3.connect(f"{outbox_path.resolve().as_uri()}?{how}", uri=True, timeout=5.0)
    except PermissionError:  # the witness's note says so; any other failure says nothing
        raise
    except (OSError, sqlite3.Error):
        return False, None
    try:
        if db.execute(_ANNOUNCED_SQL, (kid,)).fetchone() is not None:
            return True, None
        row: tuple[object, object, object] | None = db.execute(_NEWEST_BLOCK_SQL).fetchone()
    except sqlite3.Error:  # not an outbox (yet), or damaged: the start deals with it
        if not os.access(outbox_path, os.R_OK):  # SQLite says only "unable to open"
            raise PermissionError(outbox_path) from None
        return False, None
    finally:
        db.close()
    return False, row


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
