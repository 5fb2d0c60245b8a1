-- Snapshots of the in-memory read models (the authorization model): what a model knew after one event of
-- $all, so that a start replays only the events after it. The event is named by position, stream,
-- revision, id and chain link; a start reads it back and ignores a snapshot the log does not match.
-- One row per model and format (the model's snapshot format and the build that wrote it).
CREATE TABLE es.snapshots (
  name            text        NOT NULL,
  format          text        NOT NULL,
  transaction_id  bigint      NOT NULL,   -- the anchor event's Position.transaction_id
  global_position bigint      NOT NULL,   -- the anchor event's Position.global_position
  stream          text        NOT NULL,
  revision        bigint      NOT NULL,
  event_id        uuid        NOT NULL,
  event_hash      bytea       NOT NULL,   -- the anchor event's link in its stream's hash chain
  body            bytea       NOT NULL,
  body_sha256     bytea       NOT NULL,
  taken_at        timestamptz NOT NULL,
  PRIMARY KEY (name, format)
);
