"""The collector config's `api` section: where the HTTP API listens, its tokens and limits.

Part of the collector's config file (`collector.config`); same rules: unknown keys, duplicate
keys and impossible values are errors naming file, line and key.
"""

# No `from __future__ import annotations`: pydantic reads these annotations at runtime.

from collections.abc import Collection
from datetime import UTC, timezone
from typing import Annotated, Self

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainValidator,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from collector.api.core import OffsetError, parse_utc_offset
from collector.api.limits import RateLimits, RequestLimits
from collector.api.ratelimit import BucketRule
from configkit.fields import (
    ConfigModel,
    Duration,
    at_least_items,
    digits_as_text,
    duration_bounds,
)
from configkit.issues import KeyPath
from configkit.network import ListenAddress, listen_validator
from configkit.secretfiles import SecretFile
from configkit.validation import raise_at
from specs.identifiers import check_district_code

ALL_DISTRICTS = "*"


def refuse_all_beside_codes(districts: Collection[str]) -> None:
    """ValueError when `*` stands beside district codes: it reads as a narrower scope than it is."""
    if ALL_DISTRICTS in districts and len(set(districts)) > 1:
        raise ValueError(
            f"{ALL_DISTRICTS} (every district) cannot be combined with other districts"
        )


_listen = listen_validator("127.0.0.1:8080")


def _district_or_all(value: str) -> str:
    return value if value == ALL_DISTRICTS else check_district_code(value)


DistrictScope = Annotated[str, BeforeValidator(digits_as_text), AfterValidator(_district_or_all)]
"""A 6-digit district code, or "*" for every district."""


class ApiToken(ConfigModel):
    """A bearer token of the HTTP API and the districts it may see.

    The secret is `token` itself or, so that the YAML holds none, the content of `token_file`
    (a private file: configkit.secretfiles). Tokens can also live in the database, hashed:
    `collector tokens add`.
    """

    name: Annotated[str, Field(min_length=1)]
    """The token's name, shown in logs and the audit trail; unique."""
    token: Annotated[SecretStr, Field(min_length=1)] | None = None
    """The secret itself, in the file (prefer `token_file`)."""
    token_file: SecretFile | None = None
    """A private file (0600/0400) holding the secret."""
    districts: Annotated[
        tuple[DistrictScope, ...],
        at_least_items(1, 'districts must list district codes, or "*" for every district'),
    ]
    """The GB/T 2260 district codes whose data the token may read, or `*` for all."""

    @field_validator("districts")
    @classmethod
    def _every_district_alone(cls, districts: tuple[str, ...]) -> tuple[str, ...]:
        # As `collector tokens add --district` refuses it: "*" beside a code reads as a
        # narrower scope than it is.
        refuse_all_beside_codes(districts)
        return districts

    @field_validator("name")
    @classmethod
    def _one_line_name(cls, name: str) -> str:
        # Shown in logs and the audit trail, as `collector tokens add --name` is.
        if not name.isprintable():
            raise ValueError(
                "a token name must be printable text on one line"
                " (no tabs, line breaks or control characters)"
            )
        return name

    @model_validator(mode="after")
    def _one_secret(self) -> Self:
        if (self.token is None) == (self.token_file is None):
            raise_at([(("token",), "give token or token_file (one of them)")])
        secret = self.secret.get_secret_value()
        # A header value loses the spaces at its ends, holds no line break, and reaches the
        # API as Latin-1: any other secret could never be presented as `Bearer <token>`.
        if not (secret.isascii() and secret.isprintable() and secret == secret.strip()):
            problem = (
                "a token must be printable ASCII without spaces at its ends:"
                " it travels in an HTTP Authorization header"
            )
            raise_at([((self.secret_key,), problem)])
        return self

    @property
    def secret(self) -> SecretStr:
        """The token's secret, from the YAML or from its file."""
        secret = self.token if self.token is not None else self.token_file
        if secret is None:
            raise AssertionError("validation ensures token or token_file")
        return secret

    @property
    def secret_key(self) -> str:
        """The key the secret came from (for errors about it)."""
        return "token" if self.token is not None else "token_file"


def _utc_offset(value: object) -> timezone:
    if isinstance(value, timezone):
        return value
    if not isinstance(value, str):
        # YAML reads an unquoted +10:00 as the number 600 (base 60).
        raise PydanticCustomError("string_type", 'tz must be a quoted UTC offset such as "+08:00"')
    try:
        return parse_utc_offset(value)
    except OffsetError as exc:
        raise PydanticCustomError("utc_offset", str(exc)) from None


class BucketConfig(ConfigModel):
    """A token bucket: `burst` requests at once, then `per_second` on average."""

    per_second: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    """Requests per second the bucket refills."""
    burst: Annotated[int, Field(strict=True, ge=1)]
    """Requests allowed at once from a full bucket."""

    @property
    def rule(self) -> BucketRule:
        """The bucket the API's rate limiter keeps."""
        return BucketRule(self.per_second, self.burst)


class RateLimitConfig(ConfigModel):
    """`api.rate_limit`: token buckets per token, and per client address without a valid token.

    Every request without a valid token (no token, a wrong one, `/healthz`) takes from its
    address's bucket (an IPv6 address: its /64), so guessing tokens goes no faster than
    `address`; beyond a bucket the API answers 429 with Retry-After.
    """

    enabled: bool = True
    """Whether requests are rate limited at all."""
    # Generous: a client paging through a month of readings as fast as the pages come.
    token: BucketConfig = BucketConfig(per_second=50, burst=200)
    """The bucket of each valid token."""
    address: BucketConfig = BucketConfig(per_second=5, burst=20)
    """The bucket of each client address sending no valid token (IPv6: its /64)."""
    # Address buckets kept at most (the least recently used are dropped, and come back full).
    max_addresses: Annotated[int, Field(strict=True, ge=1, le=10_000_000)] = 100_000
    """Address buckets kept; the least recently used go first."""

    @property
    def settings(self) -> RateLimits | None:
        """The limits `create_app` takes (None when disabled)."""
        if not self.enabled:
            return None
        return RateLimits(self.token.rule, self.address.rule, self.max_addresses)


class LimitsConfig(ConfigModel):
    """`api.limits`: the largest request the API takes (413, 414, 431; 503 past connections)."""

    url_bytes: Annotated[int, Field(strict=True, ge=256)] = 8192
    """Longest request URL (414 past it); at most `header_bytes`."""
    body_bytes: Annotated[int, Field(strict=True, ge=0)] = 4096
    """Largest request body (413 past it; no route reads a body)."""
    header_bytes: Annotated[int, Field(strict=True, ge=1024, le=1_048_576)] = 16_384
    """Largest header block (431 past it)."""
    header_count: Annotated[int, Field(strict=True, ge=8, le=10_000)] = 100
    """Most header lines (431 past it)."""
    connections: Annotated[int, Field(strict=True, ge=1)] = 512
    """Connections open at once (503 past it)."""
    head_timeout: Annotated[Duration, duration_bounds(above=0)] = 10.0
    """Time for a request line and its headers to arrive whole; the connection is closed past it."""
    connections_per_address: Annotated[int, Field(strict=True, ge=1)] = 64
    """Connections one client address may hold (IPv6: its /64); more are closed at once."""
    # A day is far past any use.
    send_timeout: Annotated[Duration, duration_bounds(at_least=1, at_most=86400)] = 30.0
    """Time a client may take nothing of what it is sent while more waits for it (a stalled
    `/v1/stream`); its connection is closed past it. Any byte taken starts it afresh."""

    @model_validator(mode="after")
    def _url_within_headers(self) -> Self:
        # The request line counts toward header_bytes: a longer url_bytes would never apply.
        if self.url_bytes > self.header_bytes:
            raise_at([(("url_bytes",), "url_bytes must not exceed header_bytes")])
        return self

    @property
    def settings(self) -> RequestLimits:
        """The bounds `create_app` and the HTTP server take."""
        return RequestLimits(
            url_bytes=self.url_bytes,
            body_bytes=self.body_bytes,
            header_bytes=self.header_bytes,
            header_count=self.header_count,
            connections=self.connections,
            head_timeout=self.head_timeout,
            connections_per_address=self.connections_per_address,
            send_timeout=self.send_timeout,
        )


class ApiConfig(ConfigModel):
    """The HTTP API: where it listens, who may read it, and the offset it shows times at."""

    listen: Annotated[ListenAddress, PlainValidator(_listen)]
    """host:port the HTTP API listens on (`[::1]:8080` for IPv6)."""
    tokens: tuple[ApiToken, ...] = ()
    """Bearer tokens in the file; more are added, stored hashed, with `collector tokens add`."""
    # DESIGN 8 leaves the default open; UTC keeps times unambiguous until a province says so.
    tz: Annotated[timezone, PlainValidator(_utc_offset)] = UTC
    """UTC offset `±HH:MM` (quoted in YAML) times are shown at unless a request says `?tz=`."""
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    """Token buckets per token and per address; beyond one, 429 with Retry-After."""
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    """Request size and connection limits."""

    @model_validator(mode="after")
    def _unique_tokens(self) -> Self:
        problems: list[tuple[KeyPath, str]] = []
        names: dict[str, int] = {}
        secrets: dict[str, int] = {}
        for index, token in enumerate(self.tokens):
            if token.name in names:
                problems.append(
                    (("tokens", index, "name"), f"token name {token.name!r} is already used")
                )
            secret = token.secret.get_secret_value()
            if secret in secrets:
                # Two names for one secret would make the audit trail name the wrong client.
                problems.append(
                    (
                        ("tokens", index, token.secret_key),
                        f"same token as tokens[{secrets[secret]}]",
                    )
                )
            names.setdefault(token.name, index)
            secrets.setdefault(secret, index)
        if problems:
            raise_at(problems)
        return self
