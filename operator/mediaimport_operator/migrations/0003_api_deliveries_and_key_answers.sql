-- The API's record of signed webhook deliveries, by webhook-id, for as long as their
-- signature is accepted: a genuine delivery re-posted with another webhook URL's context
-- is refused on every replica (Postgres is what the replicas share).
CREATE TABLE IF NOT EXISTS api_webhook_deliveries (
    webhook_id   text PRIMARY KEY,
    user_id      text NOT NULL,
    context_hash text NOT NULL,
    expires_at   timestamptz NOT NULL
);

CREATE INDEX IF NOT EXISTS api_webhook_deliveries_expires_idx
    ON api_webhook_deliveries (expires_at);

-- Idempotency-Key: the first request's answer (status and body), which a replay answers
-- again; NULL while that request still runs, so no connection or row lock is held while it
-- calls Kubernetes. Rows written before this migration, and by replicas not yet upgraded
-- (their transaction makes a row visible only once complete), were 202s.
ALTER TABLE api_idempotency_keys
    ADD COLUMN IF NOT EXISTS response_code integer DEFAULT 202,
    ADD COLUMN IF NOT EXISTS response_body jsonb;
