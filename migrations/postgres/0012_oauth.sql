-- The authorization server's short-lived state, shared by every instance (any instance serves any step
-- of a flow): authorizations in progress, codes, and codes already redeemed. Each row is keyed by the
-- SHA-256 of its secret (the transaction id, the code), never the secret itself; single use is a DELETE
-- that returns the row.
CREATE TABLE api.oauth_authorizations (
    id_hash    bytea       PRIMARY KEY,
    data       jsonb       NOT NULL,
    expires_at timestamptz NOT NULL
);

CREATE TABLE api.oauth_codes (
    code_hash  bytea       PRIMARY KEY,
    data       jsonb       NOT NULL,
    expires_at timestamptz NOT NULL
);

-- A code presented a second time is a replay: what the first redemption produced is revoked.
CREATE TABLE api.oauth_redeemed_codes (
    code_hash  bytea       PRIMARY KEY,
    data       jsonb       NOT NULL,
    expires_at timestamptz NOT NULL
);

-- Refresh tokens, rotated on every use. A rotated token keeps its successor (sealed) for a short grace
-- window, so that two concurrent refreshes both get the same successor; used later, it is a theft: the
-- whole grant (every token with its grant_id) is revoked.
CREATE TABLE api.oauth_refresh_tokens (
    token_hash bytea       PRIMARY KEY,
    grant_id   uuid        NOT NULL,
    data       jsonb       NOT NULL,
    rotated_at timestamptz,
    successor  text,
    expires_at timestamptz NOT NULL
);
CREATE INDEX oauth_refresh_tokens_grant ON api.oauth_refresh_tokens (grant_id);
