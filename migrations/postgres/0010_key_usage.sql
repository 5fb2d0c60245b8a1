-- When each API key (or a token minted from it) was last used. Kept outside the event log on purpose:
-- a use is not a change, and an event per request would bury the log. Written at most once a minute per
-- key per instance; rows of revoked keys are harmless and may stay.
CREATE TABLE api.key_usage (
    key_id       uuid        PRIMARY KEY,
    last_used_at timestamptz NOT NULL
);
