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
