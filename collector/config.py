"""The collector's config file (DESIGN section 7): broker, storage, signing key, API, ingest.

`load_collector_config` reads the file; everything else is pure. Same rules as the site map:
unknown keys, duplicate keys and impossible values are errors naming file, line and key.
"""

# No `from __future__ import annotations`: pydantic reads these annotations at runtime.

import hashlib
import re
import urllib.parse
from pathlib import Path
from typing import Annotated, Final, Literal, Self

from pydantic import (
    AfterValidator,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from collector.api.config import ApiConfig
from collector.model import AHEAD_ALLOWANCE, MESSAGE_BYTES
from collector.pki.mosquitto import PACKET_HEADROOM
from collector.storage.retention import MIN_AUDIT_DAYS, RetentionPolicy
from collector.storage.urls import redacted
from configkit.fields import (
    BASE_DIR,
    ConfigModel,
    ConfigPath,
    Duration,
    Size,
    duration_bounds,
    resolve_path,
    size_at_least,
)
from configkit.issues import KeyPath, read_config_text
from configkit.misread_numbers import parse_yaml_as_written
from configkit.network import Broker, TlsConfig
from configkit.secretfiles import SecretFileError, read_secret_file
from configkit.validation import raise_at, validate_document
from specs.ack import MIN_MESSAGE_BYTES
from specs.signing import require_available

"""A token scoped to this sees every district."""

_SQLITE = "sqlite:///"
_POSTGRES = ("postgresql://", "postgres://")
# MQTT shared-subscription group names are one topic level without wildcards.
_SHARE_GROUP = re.compile(r"[^/+#\s]+")
# Client ids any broker takes and any ACL pattern can name.
_CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
MAX_SESSION_EXPIRY = 2**32 - 1
"""MQTT 5 Session Expiry Interval (seconds) at most; this value means "never expires"."""
_HOST_PART = 32
MQTT_MAX_PAYLOAD: Final = 268_435_455 - PACKET_HEADROOM
"""What MQTT's largest packet (256 MiB - 1) leaves for a payload beside a topic and properties."""
MAX_AHEAD_ALLOWANCE: Final = 31 * 86400.0
"""`ingest.ahead_allowance` at most. A reading within it is a current value and gets its month's
partition (PostgreSQL: the rollups have no partition for later times), every month up to it
made in one transaction under an ACCESS EXCLUSIVE lock on `readings`: with 31 days, at most the
three after the current one (collector.storage.postgres.partitions)."""


def default_client_id(host: str, config: "CollectorConfig") -> str:
    """The collector's MQTT client id when the config names none: stable per host and config.

    `gz-collector-<host>-<8 hex>`, the hex from the broker, the storage, the share group and
    `api.listen`, so that a restart finds its session again and two configs on one host do not
    collide. Two collectors running side by side on one host differ in `api.listen` at least
    (the second could not bind it), however alike the rest: without it they took one id and
    the broker took the session from each in turn. The storage's password is left out: a new
    one must not orphan the old session, which the broker would go on handing its share of the
    group's blocks until it expires. One config run twice on one host cannot get two ids (it
    cannot run twice: its `api.listen` is taken).
    """
    return _hashed_client_id(host, f"{_legacy_seed(config)}|{config.api.listen}")


def _legacy_seed(config: "CollectorConfig") -> str:
    return f"{config.broker}|{redacted(config.storage.url)}|{config.ingest.share_group}"


def _hashed_client_id(host: str, seed: str) -> str:
    name = re.sub(r"[^A-Za-z0-9-]+", "-", host).strip("-")[:_HOST_PART] or "host"
    return f"gz-collector-{name}-{hashlib.sha256(seed.encode()).hexdigest()[:8]}"


def legacy_client_id(host: str, config: "CollectorConfig") -> str:
    """The default client id before b28c625: from broker, storage and share group only.

    A collector upgraded past it left a session under it at the broker, which it retires at
    its start (collector.legacy_session).
    """
    return _hashed_client_id(host, _legacy_seed(config))


class StorageConfig(ConfigModel):
    """Where readings are stored: `sqlite:///path` (relative to this file) or `postgresql://`."""

    url: str
    """`sqlite:///relative/path` or `sqlite:////absolute/path` (one collector), or
    `postgresql://user[:password]@host[:port]/db` (one or many collectors on one database).
    """
    # Retention (collector.storage.retention): raw readings are kept raw_days, their
    # per-minute rollups rollup_days; whole months go, never single rows. Unset: for ever.
    raw_days: Annotated[float, Field(gt=0)] | None = None
    """Keep raw readings this many days (whole months go once all of them are older; the signed
    blocks they came in go with them, and readings of a month gone are refused when they come
    again; days before the newest reading stored when the clock is past it, see operations.md,
    Retention); absent: keep everything.
    """
    rollup_days: Annotated[float, Field(gt=0)] | None = None
    """Keep the per-minute rollups this many days; at least `raw_days`, and needs it."""
    # The audit chain's rows are kept audit_days, at least MIN_AUDIT_DAYS (GB/T 22239). Unset,
    # they go at MIN_AUDIT_DAYS when raw_days is set (as before audit_days alone started a
    # pass), and are kept for ever when it is not: no deployment starts deleting on upgrade.
    audit_days: float | None = None
    """Keep audit rows this many days; at least 180 (GB/T 22239 level 3); days before the newest
    reading stored when the clock is past it, as `raw_days` (operations.md, Retention). It
    starts the retention pass by itself, which then prunes only audit rows; absent: 180 when
    `raw_days` is set, else keep everything."""
    # PostgreSQL: the password of the url's user, read from this private file into the url,
    # so that the YAML holds none.
    password_file: ConfigPath | None = None
    """PostgreSQL: a private file (0600/0400) holding the password of the url's user."""

    @model_validator(mode="before")
    @classmethod
    def _password_from_file(cls, data: object, info: ValidationInfo) -> object:
        if not isinstance(data, dict) or data.get("password_file") is None:
            return data
        url, named = data.get("url"), data["password_file"]
        if not isinstance(url, str) or not url.startswith(_POSTGRES):
            raise_at([(("password_file",), "password_file goes with a postgresql:// url")])
        parts = urllib.parse.urlsplit(url)
        userinfo, at, place = parts.netloc.rpartition("@")
        if not at or not userinfo:
            raise_at(
                [(("url",), "password_file needs a user in the url: postgresql://user@host/db")]
            )
        if ":" in userinfo:
            raise_at([(("url",), "the url holds a password: keep it in password_file only")])
        if not isinstance(named, str) or not named.strip():
            raise_at([(("password_file",), "must be the path of a file holding the password")])
        try:
            secret = read_secret_file(resolve_path(Path(named), info))
        except SecretFileError as exc:
            raise_at([(("password_file",), str(exc))])
        password = urllib.parse.quote(secret.get_secret_value(), safe="")
        netloc = f"{userinfo}:{password}@{place}"
        return {**data, "url": urllib.parse.urlunsplit(parts._replace(netloc=netloc))}

    @field_validator("audit_days")
    @classmethod
    def _audit_kept_long_enough(cls, days: float | None) -> float | None:
        if days is not None and not days >= MIN_AUDIT_DAYS:  # also refuses NaN
            raise ValueError(
                f"audit_days must be at least {MIN_AUDIT_DAYS:g}: audit records are kept"
                f" {MIN_AUDIT_DAYS:g} days or more (GB/T 22239 level 3), got {days:g}"
            )
        return days

    @model_validator(mode="after")
    def _rollups_outlive_readings(self) -> Self:
        # Rollups outlive the raw readings they summarize.
        if self.rollup_days is not None:
            if self.raw_days is None:
                raise_at([(("rollup_days",), "rollup_days needs raw_days")])
            if self.rollup_days < self.raw_days:
                raise_at([(("rollup_days",), "rollup_days must be at least raw_days")])
        return self

    @property
    def retention(self) -> RetentionPolicy:
        """How long raw readings, rollups and audit rows are kept."""
        audit_days = self.audit_days
        if audit_days is None and self.raw_days is not None:
            audit_days = MIN_AUDIT_DAYS
        return RetentionPolicy(self.raw_days, self.rollup_days, audit_days)

    @property
    def backend(self) -> Literal["sqlite", "postgresql"]:
        """Return which storage implementation the URL selects."""
        return "sqlite" if self.url.startswith(_SQLITE) else "postgresql"

    @property
    def sqlite_path(self) -> Path | None:
        """Return the SQLite database file, or None for PostgreSQL."""
        return Path(self.url.removeprefix(_SQLITE)) if self.backend == "sqlite" else None

    @field_validator("url")
    @classmethod
    def _known_backend(cls, url: str, info: ValidationInfo) -> str:
        if url.startswith(_SQLITE):
            rest = url.removeprefix(_SQLITE)
            if not rest.strip():
                raise ValueError(
                    "sqlite:/// needs a file path, such as sqlite:///state/collector.db"
                )
            path, question, options = rest.partition("?")
            if question:
                # SQLAlchemy-style `?mode=ro`: read as part of the file name, it would open a
                # new, empty, writable database beside the one meant.
                raise ValueError(
                    f"sqlite:/// takes a file path only, not '?{options}': options are not read"
                    f" (the file would be named {rest})"
                )
            # sqlite:///state/db is relative; sqlite:////abs/db is absolute (SQLAlchemy's rule).
            return f"{_SQLITE}{resolve_path(Path(path), info)}"
        if url.startswith(_POSTGRES) and len(url.split("://", 1)[1]) > 0:
            return url
        raise ValueError(
            f"storage url {url!r} must start with sqlite:/// (a file) or postgresql:// (a server)"
        )


class SigningConfig(ConfigModel):
    """The collector's own key: it signs ACKs and commands."""

    # What `collector keys init` makes; the key file itself says what signs. sm2-sm3 only with
    # its C-backed library installed (refused at load, with file and line).
    algorithm: Annotated[Literal["ed25519", "sm2-sm3"], AfterValidator(require_available)] = (
        "ed25519"
    )
    """What `collector keys init` makes: `ed25519` or `sm2-sm3` (needs `ganzhi[sm]`); the key
    file itself says what signs ACKs.
    """
    key_file: ConfigPath
    """The collector's private key, signing ACKs and commands (mode 0600)."""


class IngestConfig(ConfigModel):
    """How blocks are taken from the broker.

    The collector keeps a durable MQTT 5 session (clean start off): blocks published while it
    is down (stopped, died, or cut off from the broker) are queued by the broker for its
    `client_id` and taken when it comes back, for `session_expiry` (default one day; at most
    about 136 years, 2**32 - 1 seconds); `leave_on_stop` ends it at a clean stop instead.
    `client_id` defaults to `gz-collector-<host>-<hash of broker, storage, share group and
    api.listen>`, stable across restarts of one collector on one host and different for each
    collector on it (each listens on its own address). Two clients with one id take the session
    from each other: a collector whose session is taken over says so
    (`broker_session_taken_over` and a wait when the broker gives MQTT 5 reason 0x8E;
    `broker_session_takeover_suspected` on Mosquitto 2.0, which does not). See
    `collector.ingest.service` for what the broker does with the sessions of collectors that
    are down.
    """

    batch_max: Annotated[int, Field(strict=True, ge=1)] = 200
    """Blocks stored per database transaction, at most."""
    share_group: str = "gz-collectors"
    """The MQTT shared-subscription group the collectors split blocks through."""
    client_id: str | None = None
    """The MQTT client id of the durable session; absent: `gz-collector-<host>-<hash>`, the hash
    of `broker`, `storage.url` (without password), `share_group` and `api.listen`, so stable
    across restarts and different for each collector on a host. Set it, different for each
    collector process, when processes on one host could otherwise share it (same host name in
    containers); two processes with one id take the session from each other.
    """
    session_expiry: Annotated[
        Duration, duration_bounds(above=0, at_most=float(MAX_SESSION_EXPIRY))
    ] = 86400.0
    """How long the broker keeps the session (and queues blocks) while this collector is down
    (unless a clean stop ended it: `leave_on_stop`)."""
    leave_on_stop: bool = False
    """At a clean stop (SIGTERM), leave the shared subscription and end the session, so the
    group's other collectors take every block at once. Set it on a collector about to be
    stopped for good (scaling down); off, a stopped collector's queue keeps its share of the
    blocks for it, which a restart takes at once (a lone collector's only buffer at the
    broker while it is down)."""
    # After a gateway's next key is announced (and stored), its old key still signs this
    # long: what was sealed and sent under it before the switch still arrives.
    key_overlap: Annotated[Duration, duration_bounds(at_least=0)] = 7 * 86400.0
    """How long a gateway's old key still verifies after its successor's announcement is stored."""
    # A gateway whose own clock is wrong (an RTC reset to 2099, a bad NTP source) stamps its
    # readings ahead; the agent's 15 min bound on device timestamps is against that clock.
    ahead_allowance: Annotated[
        Duration, duration_bounds(at_least=0, at_most=MAX_AHEAD_ALLOWANCE)
    ] = AHEAD_ALLOWANCE
    """How far past the collector's clock (at its block's arrival) a reading's t may be and still
    be a current value. A reading further ahead is stored as sent, flagged `ahead_of_collector`,
    kept out of `latest` (GET /v1/latest) and the per-minute rollups, and its block audited
    `ahead_of_collector`; an alarm event further ahead is stored flagged, and an alarm it
    raises is not active until the collector's clock is within this of it; a meta whose
    issued_at is further ahead is stored as sent, audited `ahead_of_collector` once, and
    applied ranked as if issued at its arrival plus this (a meta issued after that replaces
    it). The default is the
    agent's own bound on device timestamps (`device_time_rejected`), far beyond what two
    synchronised clocks differ by. At most 31d: on PostgreSQL each month up to the collector's
    clock plus this gets its partition, made in one transaction that holds `readings` locked.
    """
    # Anyone who may publish on up/ or status (one gateway's certificate, on its own topics)
    # may send as much as MQTT carries: past this, a message is audited `too_large` unread.
    # `collector broker-config` gives the broker the same bound (max_packet_size).
    max_message_bytes: Annotated[
        Size, size_at_least(MIN_MESSAGE_BYTES), Field(le=MQTT_MAX_PAYLOAD)
    ] = MESSAGE_BYTES
    """The largest MQTT payload taken; a larger one is audited `too_large` unread. Each ACK
    says it, and agents split a larger block before sending it. The default is over 12 times
    the largest block an agent seals (1.3 MB); at least 4MiB. `collector broker-config` writes
    it, and 64 KiB for topic and properties, as the broker's `max_packet_size`.
    """

    @field_validator("share_group")
    @classmethod
    def _one_topic_level(cls, group: str) -> str:
        if not _SHARE_GROUP.fullmatch(group):
            raise ValueError(f"share_group {group!r} must be one word without '/', '+' or '#'")
        return group

    @field_validator("client_id")
    @classmethod
    def _plain_client_id(cls, client_id: str | None) -> str | None:
        if client_id is not None and not _CLIENT_ID.fullmatch(client_id):
            raise ValueError(
                f"client_id {client_id!r} must be 1 to 128 letters, digits, '.', '_', ':' or"
                " '-', starting with a letter or digit"
            )
        return client_id


class CertsConfig(ConfigModel):
    """The province CA of the broker isolation (DESIGN section 11; `collector certs`).

    `ca_dir` holds `ca.crt` and `ca.key` (0600, in a 0700 folder): keep it on the machine
    that issues certificates, off the broker.
    """

    ca_dir: ConfigPath
    """The folder of the province CA (`ca.crt`, `ca.key`) for `collector certs` and `collector
    broker-config`.
    """


class CollectorConfig(ConfigModel):
    """The whole collector config, checked."""

    broker: Broker
    """The MQTT broker: `mqtt://host[:port]`, or `mqtts://` for TLS."""
    # The collector's client certificate for a broker that requires one, and the CA that
    # signed the broker's (absent: the system's trust store, no client certificate).
    broker_tls: TlsConfig | None = None
    """CA and client certificate for an `mqtts://` broker."""
    certs: CertsConfig | None = None
    """The province CA, for issuing broker certificates."""
    storage: StorageConfig
    """Where readings, blocks and the audit trail are stored."""
    signing: SigningConfig
    """The collector's signing key."""
    api: ApiConfig
    """The HTTP API."""
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    """How blocks are taken from the broker."""
    offline_after: Annotated[Duration, duration_bounds(above=0)] = 60.0
    """A gateway silent this long is shown offline."""

    @model_validator(mode="after")
    def _broker_tls_needs_mqtts(self) -> Self:
        if self.broker_tls is not None and not self.broker.tls:
            raise_at([(("broker_tls",), "broker_tls needs an mqtts:// broker")])
        return self


def parse_collector_config(text: str, file: str, base_dir: Path) -> CollectorConfig:
    """Parse and check a collector config; relative paths resolve against `base_dir`."""
    parsed = parse_yaml_as_written(text, file, is_code=_is_district_code)
    return validate_document(CollectorConfig, parsed, context={BASE_DIR: base_dir})


def _is_district_code(path: KeyPath) -> bool:
    """Whether the value at `path` is a district code of a token (text, though digits)."""
    return len(path) > 1 and path[-2] == "districts"


def load_collector_config(path: Path) -> CollectorConfig:
    """Read, parse and check the collector config at `path`, raising `ConfigError`."""
    text = read_config_text(path)
    return parse_collector_config(text, str(path), path.absolute().parent)
