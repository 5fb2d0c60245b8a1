-- Retention of the audit trail on SQLite, as migrations/postgres/0008: each prune records where the trail
-- now starts (the last pruned entry's number, link and event position) and the archive's digest.
CREATE TABLE audit_prunes (
  id             INTEGER PRIMARY KEY AUTOINCREMENT,
  through_seq    INTEGER NOT NULL,
  through_hash   BLOB    NOT NULL,
  through_tx     INTEGER NOT NULL,
  through_gp     INTEGER NOT NULL,
  entries        INTEGER NOT NULL,
  archive_sha256 BLOB    NOT NULL,
  pruned_at      TEXT    NOT NULL
);
