"""Storage URLs as they may be shown: with any password left out.

Pure, and free of any database driver, so that the config can use it (the collector's default
MQTT client id) without loading the PostgreSQL back end.
"""

from __future__ import annotations

import re
from typing import Final

_PASSWORD_OPTION: Final = re.compile(r"([?&]password=)[^&#]*")


def redacted(url: str) -> str:
    """The URL with any password replaced by `***` (user, hosts, database and options stay).

    Read without a URL parser: libpq URLs may list several `host:port` pairs, which
    `urllib` refuses, and a password may also come as a `password=` query option.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    if "@" in netloc:
        userinfo, hosts = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{hosts}"
    tail = _PASSWORD_OPTION.sub(r"\1***", tail)
    return f"{scheme}://{netloc}{tail}"
