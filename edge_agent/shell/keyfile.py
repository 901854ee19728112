"""The gateway's key pair on disk: `hostkit.keyfiles` with the agent's own advice.

The files are written, read and rotated by the host layer, `hostkit.keyfiles`, which the
collector uses too (private key 0600 and never replaced, public key at `<key_file>.pub`
renamed into place); what is the agent's own is the hint for a missing key and the check that
the key fits `signing.algorithm`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final

from edge_agent.shell.key_witness import KeyVerdict, witness_key
from hostkit.keyfiles import KeyFileError, read_key_file, read_private_key
from specs.signing import SigningKey, load_signing_key

MAKE_KEY_ADVICE: Final = "see `edge-agent keys init`"
"""What the agent advises when the gateway key file is missing."""


def load_private_key(key_file: Path) -> SigningKey:
    """Read the gateway's private key at `key_file`, refusing one that others may read."""
    return read_private_key(key_file, missing_advice=MAKE_KEY_ADVICE)


def load_gateway_key(
    key_file: Path,
    algorithm: str,
    outbox_path: Path | None = None,
    warn: Callable[[str], None] | None = None,
) -> SigningKey:
    """The gateway's private key, refused (KeyFileError) as `run` refuses it.

    Open to group or others, missing, unreadable, not a key, of another algorithm than
    `signing.algorithm` says, or (with `outbox_path`) a key no witness vouches for
    (`key_witness`): each is a KeyFileError naming the file and the fix. A stale `.pub` beside
    a key the outbox vouches for is said through `warn`.
    """
    key = load_private_key(key_file)
    problem = _algorithm_problem(key_file, key, algorithm)
    if problem is None and outbox_path is not None:
        key, verdict = _witnessed(key_file, key, outbox_path, load_private_key)
        problem = verdict.problem
        if verdict.stale_public is not None and warn is not None:
            warn(verdict.stale_public.message())
    if problem is not None:
        raise KeyFileError(problem)
    return key


def gateway_key_problem(key_file: Path, algorithm: str, outbox_path: Path) -> KeyVerdict:
    """Why the key at `key_file` cannot sign for the gateway (`problem`), or a stale `.pub`.

    A key of another algorithm than configured would sign everything with that algorithm
    without a word, and a damaged one (still a valid key: another one) with a key the
    collector does not hold; the agent refuses to start instead.
    """
    try:
        key = _read_gateway_key(key_file)
    except KeyFileError as exc:
        return KeyVerdict(str(exc))
    problem = _algorithm_problem(key_file, key, algorithm)
    if problem is not None:
        return KeyVerdict(problem)
    return _witnessed(key_file, key, outbox_path, _read_gateway_key)[1]


def _read_gateway_key(key_file: Path) -> SigningKey:
    return read_key_file(key_file, load_signing_key, cannot_read="cannot read the gateway key")


def _witnessed(
    key_file: Path, key: SigningKey, outbox_path: Path, load: Callable[[Path], SigningKey]
) -> tuple[SigningKey, KeyVerdict]:
    """`key` and what its witnesses say; or, refused, the key read again and what they say.

    The key is read before `.pub`, `.next` and the outbox: a running agent's switch in between
    (on the ACK of its announcement) gives the new `.pub` and no `.next`, and a block it seals
    with the new key before the outbox is read leaves the old key no witness. Read again, the
    key is the new one, which `.pub` vouches for; a damaged key reads the same and stays refused.
    """
    verdict = witness_key(key_file, key, outbox_path)
    if verdict.problem is None:
        return key, verdict
    try:
        again = load(key_file)
    except KeyFileError:  # gone or changed under us: the first word stands
        return key, verdict
    if again.kid == key.kid:
        return key, verdict
    return again, witness_key(key_file, again, outbox_path)


def _algorithm_problem(key_file: Path, key: SigningKey, algorithm: str) -> str | None:
    if key.alg != algorithm:
        return (
            f"{key_file}: the key is {key.alg} but signing.algorithm is {algorithm};"
            " make a new key with `edge-agent keys init` or fix signing.algorithm"
        )
    return None
