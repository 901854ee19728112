"""The gateway's key pair on disk: `hostkit.keyfiles` with the agent's own advice.

The files are written, read and rotated by the host layer, `hostkit.keyfiles`, which the
collector uses too (private key 0600 and never replaced, public key at `<key_file>.pub`
renamed into place); what is the agent's own is the hint for a missing key and the check that
the key fits `signing.algorithm`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from hostkit.keyfiles import read_private_key
from specs.signing import SignatureError, SigningKey, load_signing_key

MAKE_KEY_ADVICE: Final = "see `edge-agent keys init`"
"""What the agent advises when the gateway key file is missing."""


def load_private_key(key_file: Path) -> SigningKey:
    """Read the gateway's private key at `key_file`, refusing one that others may read."""
    return read_private_key(key_file, missing_advice=MAKE_KEY_ADVICE)


def key_algorithm_problem(key_file: Path, algorithm: str) -> str | None:
    """Why the key at `key_file` cannot sign as `signing.algorithm` says, or None when it can.

    A key of another algorithm than configured would sign everything with that algorithm
    without a word; the agent refuses to start instead.
    """
    try:
        key = load_signing_key(key_file.read_bytes())
    except OSError as exc:
        return f"{key_file}: cannot read the gateway key: {exc.strerror or exc}"
    except SignatureError as exc:
        return f"{key_file}: {exc}"
    if key.alg != algorithm:
        return (
            f"{key_file}: the key is {key.alg} but signing.algorithm is {algorithm};"
            " make a new key with `edge-agent keys init` or fix signing.algorithm"
        )
    return None
