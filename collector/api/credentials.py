"""The token a request presents, read from its `Authorization` header (pure).

`Bearer <token>` everywhere; `Basic base64(user:token)` is also read, because a browser cannot
add a bearer header to a page load but does ask for a user name and password on its own (the
app takes Basic on its browser pages, and on `/v1` from those pages of the same origin, as
`is_same_origin` tells; the user name is ignored). Anything malformed presents no token at
all, so that it is answered like a missing one.
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


def is_same_origin(sec_fetch_site: str | None) -> bool:
    """Whether a browser says the request comes from a page of the same origin.

    `Sec-Fetch-Site` (Fetch Metadata) is set by the browser and cannot be set by a page's
    script, so a page of another site cannot pass for one of ours; a request without it
    (any program, an old browser) is not from the same origin.
    """
    return sec_fetch_site is not None and sec_fetch_site.strip().lower() == "same-origin"
