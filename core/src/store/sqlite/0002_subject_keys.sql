-- Envelope encryption of personal fields (crm_core::privacy).
--
-- The key ring: one row, a check value sealed under the master key, so a wrong master key is
-- refused before anything is written, and the erasure counter that caches compare against.
CREATE TABLE crm_keyring (
    id          INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    fingerprint TEXT    NOT NULL,
    key_check   BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    erasures    INTEGER NOT NULL DEFAULT 0
) STRICT;

-- One data key per data subject (`customer:<id>` or `lead:<id>`) of a tenant, wrapped by the
-- master key. Erasure sets `wrapped` to NULL and keeps the row as a tombstone, so no new key
-- is ever minted for an erased subject.
CREATE TABLE crm_subject_keys (
    tenant     TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    key_id     BLOB    NOT NULL,
    wrapped    BLOB,
    created_at INTEGER NOT NULL,
    erased_at  INTEGER,
    PRIMARY KEY (tenant, subject)
) STRICT;
CREATE UNIQUE INDEX crm_subject_keys_id ON crm_subject_keys (tenant, key_id);

-- `subject` is erased whenever `owner` is: a converted lead with its customer, a merged
-- customer with its survivor.
CREATE TABLE crm_subject_links (
    tenant  TEXT NOT NULL,
    subject TEXT NOT NULL,
    owner   TEXT NOT NULL,
    PRIMARY KEY (tenant, subject, owner)
) STRICT, WITHOUT ROWID;
CREATE INDEX crm_subject_links_owner ON crm_subject_links (tenant, owner);

-- Facts about the store itself, such as the verification result of the plaintext store a
-- `crm-replay migrate-encrypt` copied this one from.
CREATE TABLE crm_store_facts (
    name       TEXT    NOT NULL PRIMARY KEY,
    value      TEXT    NOT NULL,
    recorded_at INTEGER NOT NULL
) STRICT;
