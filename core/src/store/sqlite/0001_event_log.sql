-- The event log. Positions are assigned by the store under the write lock (BEGIN IMMEDIATE),
-- one by one in commit order, with no gaps.
CREATE TABLE crm_events (
    position       INTEGER PRIMARY KEY,
    tenant         TEXT    NOT NULL,
    stream_id      TEXT    NOT NULL,
    revision       INTEGER NOT NULL,
    event_id       BLOB    NOT NULL,
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    data           TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    occurred_at    INTEGER NOT NULL, -- microseconds since the Unix epoch, UTC
    recorded_at    INTEGER NOT NULL, -- microseconds since the Unix epoch, UTC
    hash           BLOB    NOT NULL
) STRICT;

CREATE UNIQUE INDEX crm_events_stream_revision ON crm_events (tenant, stream_id, revision);
-- Event ids are idempotency keys within a stream. Indexing them per stream keeps index inserts
-- next to each other (random UUIDs in one global index cost twice the write volume).
CREATE UNIQUE INDEX crm_events_event_id ON crm_events (tenant, stream_id, event_id);
CREATE INDEX crm_events_tenant_position ON crm_events (tenant, position);

-- Each stream's last revision and hash: the anchor that verification compares a chain's end
-- against, so that a removed last event is noticed.
CREATE TABLE crm_streams (
    tenant    TEXT    NOT NULL,
    stream_id TEXT    NOT NULL,
    revision  INTEGER NOT NULL,
    hash      BLOB    NOT NULL,
    PRIMARY KEY (tenant, stream_id)
) STRICT, WITHOUT ROWID;

-- The log is append-only; erasure destroys keys, it never edits rows.
CREATE TRIGGER crm_events_append_only_update BEFORE UPDATE ON crm_events
BEGIN
    SELECT RAISE(ABORT, 'crm_events is append-only');
END;

CREATE TRIGGER crm_events_append_only_delete BEFORE DELETE ON crm_events
BEGIN
    SELECT RAISE(ABORT, 'crm_events is append-only');
END;
