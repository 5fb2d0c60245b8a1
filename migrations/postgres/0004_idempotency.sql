-- Responses to POST requests that carried an Idempotency-Key: a retry gets the first response back, a
-- different request with the same key is refused. Keys are per principal.
CREATE SCHEMA IF NOT EXISTS api;

CREATE TABLE api.idempotency (
    principal_id uuid        NOT NULL,
    key          text        NOT NULL,
    request_hash bytea       NOT NULL,
    status       smallint    NOT NULL,
    body         jsonb       NOT NULL,
    location     text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal_id, key)
);
