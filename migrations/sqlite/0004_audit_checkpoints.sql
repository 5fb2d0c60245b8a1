-- Signed checkpoints of the audit trail on SQLite, as migrations/postgres/0005 and 0009 make them: outside
-- the read model's tables (a rebuild reproduces the entries, the signatures must survive it). Each signs
-- the chain head at `seq` and the previous checkpoint's signature.
CREATE TABLE audit_checkpoints (
  id             INTEGER PRIMARY KEY AUTOINCREMENT,
  seq            INTEGER NOT NULL,
  entry_hash     BLOB    NOT NULL,
  prev_signature BLOB    NOT NULL,
  key_id         TEXT    NOT NULL,
  signature      BLOB    NOT NULL,
  signed_at      TEXT    NOT NULL,
  chain_version  INTEGER NOT NULL
);
