-- The API's own tables on SQLite, as migrations/postgres/0004, 0006 and 0010 make them on Postgres.

-- Responses to POST requests that carried an Idempotency-Key (per principal); times in Unix milliseconds.
CREATE TABLE api_idempotency (
  principal_id BLOB    NOT NULL,
  key          TEXT    NOT NULL,
  request_hash BLOB    NOT NULL,
  hash_key_id  TEXT    NOT NULL,
  status       INTEGER NOT NULL,
  body         TEXT    NOT NULL,
  location     TEXT,
  created_at   INTEGER NOT NULL,
  PRIMARY KEY (principal_id, key)
) WITHOUT ROWID;

-- When each API key was last used (outside the event log: a use is not a change).
CREATE TABLE api_key_usage (
  key_id       BLOB PRIMARY KEY,
  last_used_at TEXT NOT NULL
) WITHOUT ROWID;
