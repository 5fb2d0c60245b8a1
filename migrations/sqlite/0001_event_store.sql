-- The event store on SQLite (the embedded default): the same contract as migrations/postgres/0001.
-- One writer at a time (the store's mutex, and BEGIN IMMEDIATE against other processes), so positions
-- are allocated in commit order and `$all` is simply ordered by global_position.

-- One row per stream: the compare-and-set target for expected revisions, and the chain's head link.
CREATE TABLE streams (
  stream_id  TEXT    PRIMARY KEY,
  revision   INTEGER NOT NULL,          -- revision of the last event, 0-based
  last_hash  BLOB    NOT NULL
) WITHOUT ROWID;

-- The log. AUTOINCREMENT: a position is never handed out twice, even after the last row is gone.
CREATE TABLE events (
  global_position  INTEGER PRIMARY KEY AUTOINCREMENT,
  transaction_id   INTEGER NOT NULL,     -- the commit that wrote it (one per write transaction)
  event_id         BLOB    NOT NULL UNIQUE,
  stream_id        TEXT    NOT NULL,
  stream_revision  INTEGER NOT NULL,
  event_type       TEXT    NOT NULL,
  schema_version   INTEGER NOT NULL,
  data             TEXT    NOT NULL,
  metadata         TEXT    NOT NULL,
  correlation_id   BLOB    NOT NULL,
  causation_id     BLOB,
  hash             BLOB    NOT NULL,
  UNIQUE (stream_id, stream_revision)
);

-- The commit counter: each write transaction takes the next number for its events' transaction_id.
CREATE TABLE commits (
  singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
  last       INTEGER NOT NULL
);
INSERT INTO commits (singleton, last) VALUES (1, 0);

-- Values unique among streams (set validation), taken and released with a stream's events.
CREATE TABLE claims (
  scope      TEXT NOT NULL,
  value      TEXT NOT NULL,
  stream_id  TEXT NOT NULL,
  PRIMARY KEY (scope, value)
) WITHOUT ROWID;

-- The log is append-only.
CREATE TRIGGER events_refuse_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only: UPDATE refused'); END;
CREATE TRIGGER events_refuse_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only: DELETE refused'); END;
