"""The SQL of the PostgreSQL migrations (`collector.storage.postgres.schema`), one text each.

The columns and their meaning are SQLite's (`collector.storage.sqlite`), with these choices:

- times stay unix seconds as `double precision`: the model speaks float, and the uniqueness
  of (gateway, point, t) must compare exactly the floats the pure core compares;
- JSON columns (flags, thresholds, missing, declared) are `text` holding the same JSON SQLite
  holds: jsonb would reorder threshold keys, and callers decode them in order;
- text keys use the "C" collation, so that ORDER BY and the keyset comparisons of paging sort
  by code point as SQLite and Python do, whatever locale the database was created with;
- `readings` is partitioned by UTC month of `t` (`collector.storage.postgres.partitions`);
  its identity `id` orders pages as SQLite's rowid does.

TimescaleDB: where the `timescaledb` extension is installed, `readings` could instead be a
hypertable on `t` (`create_hypertable('readings', by_range('t', 2592000))` on a plain table)
with the same unique index, and compression of old chunks segmented by (gateway, point). This
code does not do that: no database here has the extension, and an untested path is worse
than the native partitions, which need nothing but PostgreSQL.
"""

from __future__ import annotations

from typing import Final

from collector.storage.float_sums import POSTGRES_FLOATS
from collector.storage.gap_records import drop_repeats

VERSION_1: Final = """
CREATE TABLE gateways (
    gateway       text COLLATE "C" PRIMARY KEY,
    enterprise    text COLLATE "C" NOT NULL,
    district      text COLLATE "C" NOT NULL,
    registered_at double precision NOT NULL
);
CREATE TABLE gateway_keys (
    kid        text COLLATE "C" PRIMARY KEY,
    gateway    text COLLATE "C" NOT NULL REFERENCES gateways (gateway),
    alg        text NOT NULL,
    public_pem bytea NOT NULL,
    added_at   double precision NOT NULL,
    revoked_at double precision
);
CREATE INDEX gateway_keys_by_gateway ON gateway_keys (gateway);
CREATE TABLE blocks (
    gateway     text COLLATE "C" NOT NULL,
    epoch       text COLLATE "C" NOT NULL,
    seq         bigint NOT NULL,
    payload     bytea NOT NULL,
    alg         text NOT NULL,
    kid         text NOT NULL,
    sig         bytea NOT NULL,
    hash        text NOT NULL,
    received_at double precision NOT NULL,
    domain      text,
    mine_code   text,
    prev        text,
    PRIMARY KEY (gateway, epoch, seq)
);
-- Partitioned by the UTC month of t; partitions are named readings_yYYYYmMM and created on
-- demand. One reading per (gateway, point, t), whatever block or epoch brought it (the first
-- wins): the unique index holds the partition key, so each partition enforces it for its
-- month, which is all of it. SQLite's UNIQUE (gateway, epoch, seq, idx) cannot be declared on
-- a table partitioned by t; blocks are stored once by their primary key, and a block's
-- readings only with it, so it holds all the same.
CREATE TABLE readings (
    id      bigint GENERATED ALWAYS AS IDENTITY,
    gateway text COLLATE "C" NOT NULL,
    epoch   text COLLATE "C" NOT NULL,
    seq     bigint NOT NULL,
    idx     integer NOT NULL,
    point   text COLLATE "C" NOT NULL,
    quota   text COLLATE "C" NOT NULL,
    t       double precision NOT NULL,
    value   double precision,
    unit    text NOT NULL,
    quality text NOT NULL,
    flags   text NOT NULL
) PARTITION BY RANGE (t);
CREATE UNIQUE INDEX readings_by_series ON readings (gateway, point, t);
CREATE TABLE latest (
    gateway text COLLATE "C" NOT NULL,
    point   text COLLATE "C" NOT NULL,
    quota   text COLLATE "C" NOT NULL,
    t       double precision NOT NULL,
    value   double precision,
    unit    text NOT NULL,
    quality text NOT NULL,
    flags   text NOT NULL,
    PRIMARY KEY (gateway, point)
);
-- kind 'record': a gap record carried in block (epoch, seq, idx); kind 'sequence': an open
-- hole from_seq..to_seq of (gateway, epoch). See the SQLite schema for every column.
CREATE TABLE gaps (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gateway        text COLLATE "C" NOT NULL,
    epoch          text COLLATE "C" NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('record', 'sequence')),
    seq            bigint,
    idx            integer,
    from_seq       bigint,
    to_seq         bigint,
    t              double precision,
    reason         text NOT NULL,
    lost           bigint,
    point          text COLLATE "C",
    detected_at    double precision NOT NULL,
    declared_epoch text COLLATE "C",
    t_from         double precision,
    t_to           double precision
);
CREATE INDEX gaps_by_stream ON gaps (gateway, kind, epoch);
CREATE INDEX gaps_by_gateway ON gaps (gateway, id);
CREATE TABLE ingest_state (
    gateway       text COLLATE "C" NOT NULL,
    epoch         text COLLATE "C" NOT NULL,
    acked_through bigint NOT NULL,
    max_seq       bigint NOT NULL,
    missing       text NOT NULL,
    first_seen    double precision NOT NULL,
    last_seen     double precision NOT NULL,
    declared      text NOT NULL DEFAULT '[]',
    conflict      boolean NOT NULL DEFAULT false,
    PRIMARY KEY (gateway, epoch)
);
CREATE TABLE gateway_status (
    gateway   text COLLATE "C" PRIMARY KEY,
    online    boolean NOT NULL,
    last_seen double precision NOT NULL
);
CREATE TABLE audit (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           double precision NOT NULL,
    gateway      text COLLATE "C",
    topic        text NOT NULL,
    reason       text NOT NULL,
    detail       text NOT NULL,
    payload_hash text NOT NULL
);
CREATE INDEX audit_by_gateway ON audit (gateway, id);
CREATE TABLE alarms (
    gateway     text COLLATE "C" NOT NULL,
    alarm_id    text COLLATE "C" NOT NULL,
    point       text COLLATE "C" NOT NULL,
    quota       text COLLATE "C" NOT NULL,
    level       text NOT NULL,
    raised_at   double precision,
    cleared_at  double precision,
    since       double precision NOT NULL,
    value       double precision,
    threshold   double precision,
    unit        text NOT NULL,
    trigger_t   double precision NOT NULL,
    related     text,
    detail      text,
    raise_epoch text,
    raise_seq   bigint,
    raise_idx   integer,
    clear_epoch text,
    clear_seq   bigint,
    clear_idx   integer,
    PRIMARY KEY (gateway, alarm_id)
);
CREATE INDEX alarms_by_since ON alarms (since, gateway, alarm_id);
CREATE TABLE metas (
    gateway     text COLLATE "C" NOT NULL,
    hash        text COLLATE "C" NOT NULL,
    payload     bytea NOT NULL,
    alg         text NOT NULL,
    kid         text NOT NULL,
    sig         bytea NOT NULL,
    issued_at   double precision NOT NULL,
    received_at double precision NOT NULL,
    PRIMARY KEY (gateway, hash)
);
CREATE TABLE point_meta (
    gateway    text COLLATE "C" NOT NULL,
    point      text COLLATE "C" NOT NULL,
    quota      text COLLATE "C" NOT NULL,
    unit       text NOT NULL,
    name       text NOT NULL,
    device     text NOT NULL,
    thresholds text NOT NULL,
    issued_at  double precision NOT NULL,
    meta_hash  text NOT NULL,
    PRIMARY KEY (gateway, point)
);
"""

# Per-minute rollups of the readings (collector.storage.rollups), folded in by every ingest and
# kept longer than raw readings by retention: n counted values (quality good or uncertain, not
# null), their min, max and sum, the newest of them (last_t, last_value), and quota and unit
# of the minute's newest reading (at newest_t). Partitioned by month like readings (each
# readings partition has its rollup twin, see partitions.py); the readings already stored
# are rolled up here once.
ROLLUP_FIRST_FILL: Final = f"""
INSERT INTO readings_1m
    (gateway, point, minute, quota, unit, n, lo, hi, total, newest_t, last_t, last_value)
SELECT gateway, point, minute,
       (array_agg(quota ORDER BY t DESC))[1], (array_agg(unit ORDER BY t DESC))[1],
       count(v), min(v), max(v), {POSTGRES_FLOATS.sum_or_infinity("v")}, max(t),
       max(t) FILTER (WHERE v IS NOT NULL),
       (array_agg(v ORDER BY t DESC) FILTER (WHERE v IS NOT NULL))[1]
FROM (SELECT gateway, point, floor(t / 60) * 60 AS minute, quota, unit, t,
             CASE WHEN quality <> 'bad' THEN value END AS v
      FROM readings) AS r
GROUP BY gateway, point, minute;
"""
"""Roll up every stored reading (into an empty readings_1m): migration 2, and tools that load
readings without the ingest (benchmarks)."""

VERSION_2: Final = (
    """
CREATE TABLE readings_1m (
    gateway    text COLLATE "C" NOT NULL,
    point      text COLLATE "C" NOT NULL,
    minute     double precision NOT NULL,
    quota      text COLLATE "C" NOT NULL,
    unit       text NOT NULL,
    n          bigint NOT NULL,
    lo         double precision,
    hi         double precision,
    total      double precision,
    newest_t   double precision NOT NULL,
    last_t     double precision,
    last_value double precision,
    PRIMARY KEY (gateway, point, minute)
) PARTITION BY RANGE (minute);
DO $$
DECLARE month record;
BEGIN
    FOR month IN
        SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'readings'::regclass
    LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF readings_1m %s',
                       replace(month.name, 'readings_', 'readings_1m_'), month.bound);
    END LOOP;
END $$;
"""
    + ROLLUP_FIRST_FILL
)

# SQLite's schema 7 (the live feed of GET /v1/stream and the presence of GET /v1/quality):
# - readings_by_id: a stream pages readings by id from its position, and the feed's head is
#   max(id); SQLite's rowid is its own index, a partitioned table needs one;
# - feed: the journal of alarm, gap and status events, written in the ingest transaction with
#   readings_through, the highest readings.id at that commit (collector.feed.core). Identity:
#   an id is never reused (ids are positions), and ids follow commit order because every
#   writer takes the feed lock first (collector.storage.postgres.feed);
# - presence: [since, until) intervals when each gateway was live, kept at ingest; rebuilt
#   here from the blocks' arrival times as SQLite's upgrade to 7 does (runs of blocks less
#   than 60 s apart, SQLite's PRESENCE_REBUILD_WINDOW, live until 60 s after the run);
# - point_meta.poll: seconds between readings, from the meta.
VERSION_3: Final = """
CREATE INDEX readings_by_id ON readings (id);
ALTER TABLE point_meta ADD COLUMN poll double precision;
CREATE TABLE feed (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('alarm', 'gap', 'status')),
    gateway          text COLLATE "C" NOT NULL,
    point            text COLLATE "C",
    readings_through bigint NOT NULL,
    payload          text NOT NULL,
    at               double precision NOT NULL
);
CREATE TABLE presence (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gateway text COLLATE "C" NOT NULL,
    since   double precision NOT NULL,
    until   double precision NOT NULL
);
CREATE INDEX presence_by_gateway ON presence (gateway, until);
INSERT INTO presence (gateway, since, until)
WITH signs AS (
    SELECT gateway, received_at AS t,
           received_at - lag(received_at) OVER (PARTITION BY gateway ORDER BY received_at)
           AS pause
    FROM blocks
), runs AS (
    SELECT gateway, t,
           sum(CASE WHEN pause IS NULL OR pause > 60.0 THEN 1 ELSE 0 END)
           OVER (PARTITION BY gateway ORDER BY t ROWS UNBOUNDED PRECEDING) AS run
    FROM signs
)
SELECT gateway, min(t), max(t) + 60.0 FROM runs GROUP BY gateway, run ORDER BY gateway, min(t);
"""

# SQLite's schema 10: the audit trail as a hash chain of aggregated rows (collector.audit; see
# the SQLite schema for every column), its head, and API tokens stored as SHA-256 hashes.
# Rows already there stay open (chain_seq NULL, minute NULL): the first seal chains them.
VERSION_4: Final = """
ALTER TABLE audit
    ADD COLUMN kind text NOT NULL DEFAULT 'rejection'
        CHECK (kind IN ('rejection', 'admin', 'command')),
    ADD COLUMN source text COLLATE "C" NOT NULL DEFAULT '',
    ADD COLUMN minute double precision,
    ADD COLUMN count bigint NOT NULL DEFAULT 1,
    ADD COLUMN last_at double precision,
    ADD COLUMN chain_seq bigint,
    ADD COLUMN prev text,
    ADD COLUMN hash text;
CREATE UNIQUE INDEX audit_by_chain ON audit (chain_seq);
CREATE UNIQUE INDEX audit_open_buckets ON audit (source, reason, minute)
    WHERE chain_seq IS NULL AND minute IS NOT NULL;
CREATE TABLE audit_chain (
    id        integer PRIMARY KEY CHECK (id = 1),
    base_seq  bigint NOT NULL,
    base_prev text NOT NULL,
    head_seq  bigint NOT NULL,
    head_hash text NOT NULL
);
CREATE TABLE api_tokens (
    name       text COLLATE "C" PRIMARY KEY,
    hash       text COLLATE "C" NOT NULL UNIQUE,
    districts  text NOT NULL,
    created_at double precision NOT NULL,
    revoked_at double precision
);
"""

# SQLite's schema 11: gateway keys keep their lifecycle (collector.model.GatewayKey).
VERSION_5: Final = """
ALTER TABLE gateway_keys
    ADD COLUMN retired_at double precision,
    ADD COLUMN announced_by text COLLATE "C",
    ADD COLUMN announced_epoch text COLLATE "C",
    ADD COLUMN announced_seq bigint;
"""

# SQLite creates the same index on open (collector.storage.sqlite.schema): an open hole's row,
# found to delete it when a batch closes or shrinks that hole alone.
VERSION_6: Final = """
CREATE INDEX gaps_by_hole ON gaps (gateway, epoch, from_seq) WHERE kind = 'sequence';
"""

# SQLite's schema 12: blocks go with their readings' month (collector.storage.block_retention).
# newest_t is the later of a block's arrival and its newest reading's t; a block stored before
# knows only its arrival. pruned_through is the highest seq of the epoch retention deleted.
VERSION_7: Final = """
ALTER TABLE blocks ADD COLUMN newest_t double precision;
UPDATE blocks SET newest_t = received_at;
CREATE INDEX blocks_by_age ON blocks (gateway, epoch, newest_t);
ALTER TABLE ingest_state ADD COLUMN pruned_through bigint NOT NULL DEFAULT 0;
"""

# SQLite's schema 13: where retention's deletion of raw readings ended (one row once it ran);
# ingest leaves out readings before it (collector.storage.block_retention).
VERSION_8: Final = """
CREATE TABLE retention_state (
    id            integer PRIMARY KEY CHECK (id = 1),
    raw_kept_from double precision NOT NULL
);
"""

# SQLite's schema 14: gap records a collector before 55ccbb1 stored again (sealed again by the
# agent in another block) go, the first stored of each kept, one audit row per gateway.
VERSION_9: Final = ";\n".join(drop_repeats("extract(epoch FROM now())"))

# SQLite's schema 15: an alarm's raise or clear stamped ahead of the collector's clock
# (collector.storage.alarms); alarms stored before are taken as not ahead.
VERSION_10: Final = """
ALTER TABLE alarms
    ADD COLUMN raise_ahead boolean NOT NULL DEFAULT false,
    ADD COLUMN clear_ahead boolean NOT NULL DEFAULT false;
"""

# SQLite creates the same index on open (collector.storage.sqlite.schema): a batch's gap records
# looked up by (gateway, t) (collector.storage.lookups.STORED_GAPS), which read every gap
# record of the gateway without it.
VERSION_11: Final = """
CREATE INDEX gaps_by_record_time ON gaps (gateway, t) WHERE kind = 'record';
"""

# SQLite's schema 16: an alarm row's `active` as its writer judged it gets a column of its own
# (every collector before 6f577c0 builds the event from every key of the payload, and failed on
# a row keeping it there). Only the column: adding a nullable one rewrites nothing, so the
# exclusive lock on `feed` is held for an instant. The payloads are moved after the migrations,
# in short batches (collector.storage.postgres.active_move), not here, where one UPDATE held
# the table for the whole rewrite.
VERSION_12: Final = """
ALTER TABLE feed ADD COLUMN active boolean;
"""
