-- Snapshots of the in-memory read models (the authorization model): what a model knew after one event of
-- $all, so that a start replays only the events after it. The event is named by position, stream,
-- revision, id and chain link; a start reads it back and ignores a snapshot the log does not match.
-- One row per model and format (the model's snapshot format and the build that wrote it).
CREATE TABLE snapshots (
  name            TEXT    NOT NULL,
  format          TEXT    NOT NULL,
  transaction_id  INTEGER NOT NULL,
  global_position INTEGER NOT NULL,
  stream          TEXT    NOT NULL,
  revision        INTEGER NOT NULL,
  event_id        BLOB    NOT NULL,
  event_hash      BLOB    NOT NULL,
  body            BLOB    NOT NULL,
  body_sha256     BLOB    NOT NULL,
  taken_at        TEXT    NOT NULL,
  PRIMARY KEY (name, format)
);
