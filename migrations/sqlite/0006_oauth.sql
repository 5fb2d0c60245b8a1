-- The authorization server's short-lived state, as migrations/postgres/0012 makes it; times in Unix
-- milliseconds.
CREATE TABLE api_oauth_authorizations (
  id_hash    BLOB    PRIMARY KEY,
  data       TEXT    NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE api_oauth_codes (
  code_hash  BLOB    PRIMARY KEY,
  data       TEXT    NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE api_oauth_redeemed_codes (
  code_hash  BLOB    PRIMARY KEY,
  data       TEXT    NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE api_oauth_refresh_tokens (
  token_hash BLOB    PRIMARY KEY,
  grant_id   BLOB    NOT NULL,
  data       TEXT    NOT NULL,
  rotated_at INTEGER,
  successor  TEXT,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX api_oauth_refresh_tokens_grant ON api_oauth_refresh_tokens (grant_id);
