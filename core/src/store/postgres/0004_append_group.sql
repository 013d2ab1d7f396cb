-- Group commit (store/group.rs): one call writes the appends of several callers, of any
-- tenants, in one statement and one commit. It is `crm_append` (migration 0002) with a
-- tenant per head and per row; the caller (postgres/append.rs) has planned every append of
-- the group in order from the log head and stream heads it remembers, no two of them on the
-- same stream. Under the append lock it checks that:
--   * the log head is still p_log_head (positions stay gap-free and in commit order),
--   * every (tenant, stream) of the group is still at p_head_revisions (-1: no stream),
--   * none of the group's (tenant, stream, event id) triples is already stored.
-- If any of that fails it writes nothing and returns NULL ("stale": the caller then writes
-- each append of the group on its own, through the transactional path). Otherwise it inserts
-- the rows, moves the stream heads, notifies `crm_events` and returns the new log head.
--
-- Each look-up is a LATERAL subquery with LIMIT 1 so that it probes a unique index whatever
-- plan is cached (see `append_in` in postgres/mod.rs).
CREATE FUNCTION crm_append_group(
    p_log_head       BIGINT,
    p_recorded_at    TIMESTAMPTZ,
    p_head_tenants   TEXT[],
    p_head_streams   TEXT[],
    p_head_revisions BIGINT[],
    p_new_revisions  BIGINT[],
    p_new_hashes     BYTEA[],
    p_positions      BIGINT[],
    p_tenants        TEXT[],
    p_streams        TEXT[],
    p_revisions      BIGINT[],
    p_event_ids      UUID[],
    p_types          TEXT[],
    p_versions       INTEGER[],
    p_data           TEXT[],
    p_metadata       TEXT[],
    p_occurred       TIMESTAMPTZ[],
    p_hashes         BYTEA[]
) RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    v_head BIGINT;
    v_last BIGINT;
BEGIN
    -- The append lock of the transactional path (BEGIN_APPEND in postgres/mod.rs).
    PERFORM pg_advisory_xact_lock(7165910213591463027);

    SELECT position INTO v_head FROM crm_events ORDER BY position DESC LIMIT 1;
    IF COALESCE(v_head, 0) <> p_log_head THEN
        RETURN NULL;
    END IF;

    IF EXISTS (
        SELECT 1
        FROM UNNEST(p_head_tenants, p_head_streams, p_head_revisions)
             AS h(tenant, stream_id, revision)
        LEFT JOIN LATERAL (
            SELECT s.revision FROM crm_streams AS s
            WHERE s.tenant = h.tenant AND s.stream_id = h.stream_id LIMIT 1
        ) AS s ON TRUE
        WHERE s.revision IS DISTINCT FROM NULLIF(h.revision, -1)
    ) THEN
        RETURN NULL;
    END IF;

    IF EXISTS (
        SELECT 1
        FROM UNNEST(p_tenants, p_streams, p_event_ids) AS k(tenant, stream_id, event_id)
        CROSS JOIN LATERAL (
            SELECT 1 FROM crm_events AS e
            WHERE e.tenant = k.tenant AND e.stream_id = k.stream_id AND e.event_id = k.event_id
            LIMIT 1
        ) AS e
    ) THEN
        RETURN NULL;
    END IF;

    INSERT INTO crm_events (position, tenant, stream_id, revision, event_id, event_type,
        schema_version, data, metadata, occurred_at, recorded_at, hash)
    SELECT e.position, e.tenant, e.stream_id, e.revision, e.event_id, e.event_type,
           e.schema_version, e.data::json, e.metadata::json, e.occurred_at, p_recorded_at, e.hash
    FROM UNNEST(p_positions, p_tenants, p_streams, p_revisions, p_event_ids, p_types,
                p_versions, p_data, p_metadata, p_occurred, p_hashes)
         AS e(position, tenant, stream_id, revision, event_id, event_type, schema_version,
              data, metadata, occurred_at, hash);

    -- Streams without new events in the group carry NULL here and keep their head.
    INSERT INTO crm_streams (tenant, stream_id, revision, hash)
    SELECT h.tenant, h.stream_id, h.revision, h.hash
    FROM UNNEST(p_head_tenants, p_head_streams, p_new_revisions, p_new_hashes)
         AS h(tenant, stream_id, revision, hash)
    WHERE h.revision IS NOT NULL
    ON CONFLICT (tenant, stream_id)
    DO UPDATE SET revision = EXCLUDED.revision, hash = EXCLUDED.hash;

    v_last := p_log_head + COALESCE(array_length(p_positions, 1), 0);
    PERFORM pg_notify('crm_events', v_last::text);
    RETURN v_last;
END;
$$;
