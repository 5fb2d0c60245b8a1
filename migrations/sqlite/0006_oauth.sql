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
