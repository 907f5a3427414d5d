-- The API's Idempotency-Key records: the same key from the same user within 24 hours
-- returns the import it first created. Rows older than that are replaced when the
-- key is used again, and deleted by the API's periodic purge.
CREATE TABLE IF NOT EXISTS api_idempotency_keys (
    user_id     text NOT NULL,
    key         text NOT NULL,
    fingerprint text NOT NULL,
    asset_id    uuid NOT NULL,
    import_name text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

CREATE INDEX IF NOT EXISTS api_idempotency_keys_created_idx
    ON api_idempotency_keys (created_at);
