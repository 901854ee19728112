"""The token a request presents, read from its `Authorization` header (pure).

`Bearer <token>` everywhere; `Basic base64(user:token)` is also read, because a browser cannot
add a bearer header to a page load but does ask for a user name and password on its own (the
app takes Basic on the docs pages only; the user name is ignored). Anything malformed presents
no token at all, so that it is answered like a missing one.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from enum import Enum


class Scheme(Enum):
    """How a token was presented."""

    BEARER = "bearer"
    BASIC = "basic"


@dataclass(frozen=True, slots=True)
class Presented:
    """A token as a request presents it (not yet known to be valid)."""

    scheme: Scheme
    secret: str


def presented_token(authorization: str | None) -> Presented | None:
    """The token in an `Authorization` header value, or None when it holds none we read."""
    if authorization is None:
        return None
    scheme, _, rest = authorization.strip().partition(" ")
    rest = rest.strip()
    if not rest:
        return None
    match scheme.lower():
        case "bearer":
            return Presented(Scheme.BEARER, rest)
        case "basic":
            secret = _basic_password(rest)
            return None if not secret else Presented(Scheme.BASIC, secret)
        case _:
            return None


def _basic_password(encoded: str) -> str | None:
    """The password of `user:password` (RFC 7617: the user name ends at the first colon)."""
    try:
        pair = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = pair.partition(":")
    del user  # any user name: the token is the credential
    return password if colon else None
