"""The collector keys an agent trusts: ACKs (and commands) signed by any of them are accepted.

One key normally; two while the collector's key is rotated, so that ACKs signed by the old key
(by collectors not yet restarted) and by the new key are both taken during the overlap. The
signature's `kid` picks the key; a kid that names none of them is refused before any check.
"""

from __future__ import annotations

from dataclasses import dataclass

from specs.signing import BadSignatureError, Signature, VerifyKey


@dataclass(frozen=True, slots=True)
class TrustedKeys:
    """Public keys, any of which may sign; distinct kids."""

    keys: tuple[VerifyKey, ...]

    def __post_init__(self) -> None:
        kids = [key.kid for key in self.keys]
        if not kids:
            raise ValueError("at least one trusted key is needed")
        if len(set(kids)) != len(kids):
            raise ValueError(f"trusted keys repeat a key id: {', '.join(kids)}")

    @property
    def kids(self) -> tuple[str, ...]:
        """The key ids, in the order given."""
        return tuple(key.kid for key in self.keys)

    def verify(self, signature: Signature, payload: bytes) -> None:
        """Raise a SignatureError unless one of the keys made `signature` over `payload`."""
        for key in self.keys:
            if key.kid == signature.kid:
                key.verify(signature, payload)
                return
        raise BadSignatureError(
            f"key id {signature.kid} is none of the trusted keys ({', '.join(self.kids)})"
        )
