-- The event log. Ids compare bytewise (COLLATE "C"), as in SQLite. Appends are serialised by a
-- transaction-scoped advisory lock, so positions
-- are assigned one by one in commit order, with no gaps, and a reader resuming after position
-- P can never later see a commit below P.
CREATE TABLE crm_events (
    position       BIGINT      PRIMARY KEY,
    tenant         TEXT        COLLATE "C" NOT NULL,
    stream_id      TEXT        COLLATE "C" NOT NULL,
    revision       BIGINT      NOT NULL,
    event_id       UUID        NOT NULL,
    event_type     TEXT        NOT NULL,
    schema_version INTEGER     NOT NULL,
    data           JSON        NOT NULL, -- json, not jsonb: the stored text is what is hashed
    metadata       JSON        NOT NULL,
    occurred_at    TIMESTAMPTZ NOT NULL,
    recorded_at    TIMESTAMPTZ NOT NULL,
    hash           BYTEA       NOT NULL,
    CONSTRAINT crm_events_stream_revision UNIQUE (tenant, stream_id, revision),
    CONSTRAINT crm_events_event_id UNIQUE (tenant, stream_id, event_id) -- idempotency keys, per stream
);

CREATE INDEX crm_events_tenant_position ON crm_events (tenant, position);

-- Each stream's last revision and hash: the anchor that verification compares a chain's end
-- against, so that a removed last event is noticed.
CREATE TABLE crm_streams (
    tenant    TEXT   COLLATE "C" NOT NULL,
    stream_id TEXT   COLLATE "C" NOT NULL,
    revision  BIGINT NOT NULL,
    hash      BYTEA  NOT NULL,
    PRIMARY KEY (tenant, stream_id)
);

-- The log is append-only; erasure destroys keys, it never edits rows.
CREATE FUNCTION crm_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'crm_events is append-only';
END;
$$;

CREATE TRIGGER crm_events_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON crm_events
    FOR EACH STATEMENT EXECUTE FUNCTION crm_events_append_only();
