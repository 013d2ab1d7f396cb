-- An append planned from remembered heads, written in one round trip (one autocommit
-- statement). The caller (postgres/append.rs) has already run the shared append decision
-- (plan.rs) against the log head and stream heads it remembers, so every position, revision
-- and chain hash is computed. This function takes the same append lock as the transactional
-- path, then checks under it that what the plan assumed is still true:
--   * the log head is still p_log_head (positions stay gap-free and in commit order),
--   * every stream of the call is still at p_head_revisions (-1: the stream does not exist),
--   * none of the call's (stream, event id) pairs is already stored (a duplicate is for the
--     transactional path to acknowledge).
-- If any of that fails it writes nothing and returns NULL ("stale": plan again under the
-- lock). Otherwise it inserts the rows, moves the stream heads, notifies `crm_events` and
-- returns the new log head.
--
-- Each look-up is a LATERAL subquery with LIMIT 1 so that it probes a unique index whatever
-- plan is cached (see `append_in` in postgres/mod.rs).
CREATE FUNCTION crm_append(
    p_tenant         TEXT,
    p_log_head       BIGINT,
    p_recorded_at    TIMESTAMPTZ,
    p_head_streams   TEXT[],
    p_head_revisions BIGINT[],
    p_new_revisions  BIGINT[],
    p_new_hashes     BYTEA[],
    p_positions      BIGINT[],
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
        FROM UNNEST(p_head_streams, p_head_revisions) AS h(stream_id, revision)
        LEFT JOIN LATERAL (
            SELECT s.revision FROM crm_streams AS s
            WHERE s.tenant = p_tenant AND s.stream_id = h.stream_id LIMIT 1
        ) AS s ON TRUE
        WHERE s.revision IS DISTINCT FROM NULLIF(h.revision, -1)
    ) THEN
        RETURN NULL;
    END IF;

    IF EXISTS (
        SELECT 1
        FROM UNNEST(p_streams, p_event_ids) AS k(stream_id, event_id)
        CROSS JOIN LATERAL (
            SELECT 1 FROM crm_events AS e
            WHERE e.tenant = p_tenant AND e.stream_id = k.stream_id AND e.event_id = k.event_id
            LIMIT 1
        ) AS e
    ) THEN
        RETURN NULL;
    END IF;

    INSERT INTO crm_events (position, tenant, stream_id, revision, event_id, event_type,
        schema_version, data, metadata, occurred_at, recorded_at, hash)
    SELECT e.position, p_tenant, e.stream_id, e.revision, e.event_id, e.event_type,
           e.schema_version, e.data::json, e.metadata::json, e.occurred_at, p_recorded_at, e.hash
    FROM UNNEST(p_positions, p_streams, p_revisions, p_event_ids, p_types, p_versions, p_data,
                p_metadata, p_occurred, p_hashes)
         AS e(position, stream_id, revision, event_id, event_type, schema_version, data,
              metadata, occurred_at, hash);

    -- Streams without new events in the call carry NULL here and keep their head.
    INSERT INTO crm_streams (tenant, stream_id, revision, hash)
    SELECT p_tenant, h.stream_id, h.revision, h.hash
    FROM UNNEST(p_head_streams, p_new_revisions, p_new_hashes) AS h(stream_id, revision, hash)
    WHERE h.revision IS NOT NULL
    ON CONFLICT (tenant, stream_id)
    DO UPDATE SET revision = EXCLUDED.revision, hash = EXCLUDED.hash;

    v_last := p_log_head + COALESCE(array_length(p_positions, 1), 0);
    PERFORM pg_notify('crm_events', v_last::text);
    RETURN v_last;
END;
$$;
