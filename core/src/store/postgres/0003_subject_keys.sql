-- Envelope encryption of personal fields (crm_core::privacy); see the SQLite twin.
CREATE TABLE crm_keyring (
    id          INTEGER     NOT NULL PRIMARY KEY CHECK (id = 1),
    fingerprint TEXT        NOT NULL,
    key_check   BYTEA       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    erasures    BIGINT      NOT NULL DEFAULT 0
);

CREATE TABLE crm_subject_keys (
    tenant     TEXT        NOT NULL,
    subject    TEXT        NOT NULL,
    key_id     BYTEA       NOT NULL,
    wrapped    BYTEA,
    created_at TIMESTAMPTZ NOT NULL,
    erased_at  TIMESTAMPTZ,
    PRIMARY KEY (tenant, subject)
);
CREATE UNIQUE INDEX crm_subject_keys_id ON crm_subject_keys (tenant, key_id);

-- `subject` is erased whenever `owner` is: a converted lead with its customer, a merged
-- customer with its survivor.
CREATE TABLE crm_subject_links (
    tenant  TEXT NOT NULL,
    subject TEXT NOT NULL,
    owner   TEXT NOT NULL,
    PRIMARY KEY (tenant, subject, owner)
);
CREATE INDEX crm_subject_links_owner ON crm_subject_links (tenant, owner);

CREATE TABLE crm_store_facts (
    name        TEXT        NOT NULL PRIMARY KEY,
    value       TEXT        NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL
);
