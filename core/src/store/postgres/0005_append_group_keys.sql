-- Group commit with key changes (store/keys.rs): `crm_append_group` (migration 0004) that
-- also applies the groups' key uses and new keys, so an append that seals personal fields
-- (every `POST /v1/events` carrying a customer's name or e-mail) is written in a group by
-- one autocommit call instead of a transaction of its own with six round trips and its own
-- commit flush under the append lock. Besides the checks of 0004, under the append lock:
--   * every used key (tenant, subject, key id) is still stored and live,
--   * no new key's (tenant, subject) is stored already or named twice in the group.
-- If any fails it writes nothing and returns NULL ("stale"): the caller writes each append
-- on its own through the transactional path, which gives each its own answer
-- (`SubjectErased`, `KeyChanged`). A key row inserted by another transaction between the
-- check and the insert fails the call (a unique violation): the same fallback.
-- Links and erasures are never passed here (only the transactional path applies them).
CREATE FUNCTION crm_append_group_keys(
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
    p_hashes         BYTEA[],
    p_use_tenants    TEXT[],
    p_use_subjects   TEXT[],
    p_use_key_ids    BYTEA[],
    p_key_tenants    TEXT[],
    p_key_subjects   TEXT[],
    p_key_ids        BYTEA[],
    p_key_wrapped    BYTEA[]
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

    -- Every used key still stored under the id the fields were sealed with, and live.
    IF EXISTS (
        SELECT 1
        FROM UNNEST(p_use_tenants, p_use_subjects, p_use_key_ids) AS u(tenant, subject, key_id)
        LEFT JOIN LATERAL (
            SELECT k.key_id, k.wrapped FROM crm_subject_keys AS k
            WHERE k.tenant = u.tenant AND k.subject = u.subject LIMIT 1
        ) AS k ON TRUE
        WHERE k.key_id IS DISTINCT FROM u.key_id OR k.wrapped IS NULL
    ) THEN
        RETURN NULL;
    END IF;

    -- No new key's subject stored already, nor minted twice by the group.
    IF EXISTS (
        SELECT 1
        FROM UNNEST(p_key_tenants, p_key_subjects) AS n(tenant, subject)
        CROSS JOIN LATERAL (
            SELECT 1 FROM crm_subject_keys AS k
            WHERE k.tenant = n.tenant AND k.subject = n.subject LIMIT 1
        ) AS k
    ) OR (
        SELECT count(*) <> count(DISTINCT (n.tenant, n.subject))
        FROM UNNEST(p_key_tenants, p_key_subjects) AS n(tenant, subject)
    ) THEN
        RETURN NULL;
    END IF;

    INSERT INTO crm_subject_keys (tenant, subject, key_id, wrapped, created_at)
    SELECT n.tenant, n.subject, n.key_id, n.wrapped, p_recorded_at
    FROM UNNEST(p_key_tenants, p_key_subjects, p_key_ids, p_key_wrapped)
         AS n(tenant, subject, key_id, wrapped);

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
