"""SQL of the PostgreSQL store: versioned forward migrations and the hot statements."""

from __future__ import annotations

__all__ = (
    "APPEND_NEXT_SQL",
    "APPEND_ONE_SQL",
    "APPEND_SQL",
    "CHANNEL",
    "EVENT_COLUMNS",
    "MIGRATIONS",
    "RUN_COLUMNS",
    "SCHEMA_VERSION",
    "SESSION_COLUMNS",
    "UPSERT_RUN_SQL",
    "UPSERT_SESSION_SQL",
)

#: The NOTIFY channel; payloads are ``<session_id>:<latest sequence number>``.
CHANNEL = "asm_events"

_V1 = """
CREATE TABLE sessions (
    id text PRIMARY KEY,
    agent_id text NOT NULL,
    status text NOT NULL,
    context jsonb NOT NULL,
    metadata jsonb NOT NULL,
    tags text[] NOT NULL,
    parent_session_id text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX sessions_created_idx ON sessions (created_at DESC, id DESC);

CREATE TABLE runs (
    id text PRIMARY KEY,
    session_id text NOT NULL,
    status text NOT NULL,
    input jsonb NOT NULL,
    output jsonb,
    error jsonb,
    token_usage jsonb NOT NULL,
    turn_count integer NOT NULL,
    cost_usd double precision,
    metadata jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    started_at timestamptz,
    ended_at timestamptz
);
CREATE INDEX runs_session_idx ON runs (session_id, created_at, id);
CREATE INDEX runs_running_idx ON runs (session_id, created_at, id) WHERE status = 'running';

CREATE TABLE events (
    id text PRIMARY KEY,
    session_id text NOT NULL,
    sequence_number bigint NOT NULL,
    type text NOT NULL,
    run_id text,
    ts timestamptz NOT NULL,
    data jsonb NOT NULL,
    metadata jsonb NOT NULL,
    provider text,
    CONSTRAINT events_session_seq_key UNIQUE (session_id, sequence_number)
);

-- One row per session holding its last sequence number; the row lock taken by the
-- increment serializes the session's appenders until commit, so commit order = sequence order.
CREATE TABLE session_counters (
    session_id text PRIMARY KEY,
    last_seq bigint NOT NULL
) WITH (fillfactor = 50);

"""

#: ``(version, sql)`` pairs applied in order; never edit a released entry, append a new one.
MIGRATIONS: tuple[tuple[int, str], ...] = ((1, _V1),)
SCHEMA_VERSION = MIGRATIONS[-1][0]

SESSION_COLUMNS = (
    "id",
    "agent_id",
    "status",
    "context",
    "metadata",
    "tags",
    "parent_session_id",
    "created_at",
    "updated_at",
)
RUN_COLUMNS = (
    "id",
    "session_id",
    "status",
    "input",
    "output",
    "error",
    "token_usage",
    "turn_count",
    "cost_usd",
    "metadata",
    "created_at",
    "started_at",
    "ended_at",
)
EVENT_COLUMNS = "id, type, session_id, run_id, sequence_number, ts, data, metadata, provider"

_JSON_SESSION = {"context", "metadata"}
_JSON_RUN = {"input", "output", "error", "token_usage", "metadata"}


def _upsert(table: str, columns: tuple[str, ...], json_columns: set[str]) -> str:
    values = ", ".join("%s::jsonb" if c in json_columns else "%s" for c in columns)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns[1:])
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values}) "
        f"ON CONFLICT (id) DO UPDATE SET {updates}"
    )


UPSERT_SESSION_SQL = _upsert("sessions", SESSION_COLUMNS, _JSON_SESSION)
UPSERT_RUN_SQL = _upsert("runs", RUN_COLUMNS, _JSON_RUN)

# One statement (one round trip, one implicit transaction) appends a whole batch and sends
# one NOTIFY per session (delivered at commit):
# ids already stored are returned as stored; fresh events get consecutive numbers per
# session from the counter rows, which are locked in session_id order (no deadlocks between
# batches). A concurrent insert of the same id raises unique_violation and the caller retries.
APPEND_SQL = """
WITH input AS (
    SELECT * FROM unnest(
        %(ids)s::text[], %(sids)s::text[], %(types)s::text[], %(runs)s::text[],
        %(ts)s::timestamptz[], %(data)s::jsonb[], %(meta)s::jsonb[], %(prov)s::text[]
    ) WITH ORDINALITY AS t(id, session_id, type, run_id, ts, data, metadata, provider, ord)
),
existing AS (
    SELECT e.id, e.type, e.session_id, e.run_id, e.sequence_number, e.ts, e.data, e.metadata, e.provider
    FROM events e WHERE e.id = ANY(%(ids)s::text[])
),
fresh AS (
    SELECT i.*,
           row_number() OVER (PARTITION BY i.session_id ORDER BY i.ord) AS rn,
           count(*) OVER (PARTITION BY i.session_id) AS n
    FROM input i
    WHERE NOT EXISTS (SELECT 1 FROM existing x WHERE x.id = i.id)
),
bump AS (
    INSERT INTO session_counters AS c (session_id, last_seq)
    SELECT session_id, max(n) FROM fresh GROUP BY session_id ORDER BY session_id
    ON CONFLICT (session_id) DO UPDATE SET last_seq = c.last_seq + EXCLUDED.last_seq
    RETURNING c.session_id, c.last_seq
),
ins AS (
    INSERT INTO events (id, session_id, sequence_number, type, run_id, ts, data, metadata, provider)
    SELECT f.id, f.session_id, b.last_seq - f.n + f.rn, f.type, f.run_id, f.ts, f.data, f.metadata, f.provider
    FROM fresh f JOIN bump b ON b.session_id = f.session_id
    RETURNING id, session_id, sequence_number
)
SELECT id, sequence_number, NULL::text, NULL::text, NULL::text, NULL::timestamptz,
       NULL::jsonb, NULL::jsonb, NULL::text
FROM ins
UNION ALL
SELECT id, sequence_number, type, session_id, run_id, ts, data, metadata, provider FROM existing
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       pg_notify('asm_events', session_id || ':' || max(sequence_number))::text
FROM ins GROUP BY session_id
"""

# The single-event fast path (the common case of one appender): no duplicate pre-check, a
# re-appended id raises unique_violation on events_pkey (the counter bump is rolled back with
# it) and the caller then reads the stored event.
APPEND_ONE_SQL = """
WITH bump AS (
    INSERT INTO session_counters AS c (session_id, last_seq) VALUES (%s, 1)
    ON CONFLICT (session_id) DO UPDATE SET last_seq = c.last_seq + 1
    RETURNING last_seq
),
ins AS (
    INSERT INTO events (id, session_id, sequence_number, type, run_id, ts, data, metadata, provider)
    SELECT %s, %s, last_seq, %s, %s, %s, %s::jsonb, %s::jsonb, %s FROM bump
    RETURNING sequence_number
)
SELECT sequence_number, pg_notify('asm_events', %s || ':' || sequence_number)::text FROM ins
"""

# The steady-state single-event path, for a session whose counter row exists: a plain
# ``UPDATE … RETURNING`` takes the same row lock as the upsert above but skips its conflict
# check and tuple-lock WAL record. Without a counter row (first event, or the session was
# deleted) it inserts nothing and returns no row; the caller then runs APPEND_ONE_SQL.
APPEND_NEXT_SQL = """
WITH bump AS (
    UPDATE session_counters SET last_seq = last_seq + 1 WHERE session_id = %s
    RETURNING last_seq
),
ins AS (
    INSERT INTO events (id, session_id, sequence_number, type, run_id, ts, data, metadata, provider)
    SELECT %s, %s, last_seq, %s, %s, %s, %s::jsonb, %s::jsonb, %s FROM bump
    RETURNING sequence_number
)
SELECT sequence_number, pg_notify('asm_events', %s || ':' || sequence_number)::text FROM ins
"""
