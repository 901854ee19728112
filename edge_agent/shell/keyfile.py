"""The gateway's key pair on disk: `hostkit.keyfiles` with the agent's own advice.

The files are written, read and rotated by the host layer, `hostkit.keyfiles`, which the
collector uses too (private key 0600 and never replaced, public key at `<key_file>.pub`
renamed into place); what is the agent's own is the hint for a missing key and the check that
the key fits `signing.algorithm`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from edge_agent.shell.key_witness import unwitnessed_key_problem
from hostkit.keyfiles import KeyFileError, read_key_file, read_private_key
from specs.signing import SigningKey, load_signing_key

MAKE_KEY_ADVICE: Final = "see `edge-agent keys init`"
"""What the agent advises when the gateway key file is missing."""


def load_private_key(key_file: Path) -> SigningKey:
    """Read the gateway's private key at `key_file`, refusing one that others may read."""
    return read_private_key(key_file, missing_advice=MAKE_KEY_ADVICE)


def load_gateway_key(key_file: Path, algorithm: str, outbox_path: Path | None = None) -> SigningKey:
    """The gateway's private key, refused (KeyFileError) as `run` refuses it.

    Open to group or others, missing, unreadable, not a key, of another algorithm than
    `signing.algorithm` says, or (with `outbox_path`) not the key its `.pub` or the outbox
    knows (`key_witness`): each is a KeyFileError naming the file and the fix.
    """
    key = load_private_key(key_file)
    problem = _algorithm_problem(key_file, key, algorithm)
    if problem is None and outbox_path is not None:
        problem = unwitnessed_key_problem(key_file, key, outbox_path)
    if problem is not None:
        raise KeyFileError(problem)
    return key


def gateway_key_problem(key_file: Path, algorithm: str, outbox_path: Path) -> str | None:
    """Why the key at `key_file` cannot sign for the gateway, or None when it can.

    A key of another algorithm than configured would sign everything with that algorithm
    without a word, and a damaged one (still a valid key: another one) with a key the
    collector does not hold; the agent refuses to start instead.
    """
    try:
        key = read_key_file(key_file, load_signing_key, cannot_read="cannot read the gateway key")
    except KeyFileError as exc:
        return str(exc)
    return _algorithm_problem(key_file, key, algorithm) or unwitnessed_key_problem(
        key_file, key, outbox_path
    )


def _algorithm_problem(key_file: Path, key: SigningKey, algorithm: str) -> str | None:
    if key.alg != algorithm:
        return (
            f"{key_file}: the key is {key.alg} but signing.algorithm is {algorithm};"
            " make a new key with `edge-agent keys init` or fix signing.algorithm"
        )
    return None
