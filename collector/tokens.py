"""API bearer tokens kept in the database (`collector tokens add|list|revoke`), stored hashed.

A token is 32 random bytes (256 bits) from the operating system, shown once when made; the
database keeps only its SHA-256. A slow password hash (bcrypt, scrypt, Argon2) protects
secrets people choose, which are guessable; nobody can guess among 2**256 secrets, so one
SHA-256 is already beyond brute force, and it lets every request find its token by an index
lookup of the hash instead of trying a slow hash per stored token (which would also hand
whoever sends bad tokens a cheap way to burn the collector's CPU). Looking up by hash
compares no secret byte by byte, so timing tells nothing about a stored secret; tokens from
the YAML config are compared with `hmac.compare_digest` (collector.api.core.find_token).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Final

from collector.readmodel import Scope

PREFIX: Final = "gzt_"
"""Made tokens start with this, so that a leaked one is easy to recognise (secret scanners)."""
_RANDOM_BYTES: Final = 32


@dataclass(frozen=True, slots=True)
class StoredToken:
    """A token as the database keeps it: its name, districts and times; never the secret."""

    name: str
    districts: tuple[str, ...]
    created_at: float
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        """Whether the token still admits requests."""
        return self.revoked_at is None

    @property
    def scope(self) -> Scope:
        """What this token may see."""
        return Scope.of(self.districts)


def new_secret() -> str:
    """A fresh token: PREFIX and 256 random bits, URL-safe."""
    return PREFIX + secrets.token_urlsafe(_RANDOM_BYTES)


def secret_hash(secret: str) -> str:
    """What the database keeps of a token (SHA-256, hex)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()
