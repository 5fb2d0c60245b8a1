-- How far each table read model on SQLite has applied `$all`, written in the same transaction as the rows
-- of each batch, and the version of the projection that wrote them (another version rebuilds).
CREATE TABLE read_model_checkpoints (
  name             TEXT    PRIMARY KEY,
  transaction_id   INTEGER,
  global_position  INTEGER,
  version          INTEGER NOT NULL
) WITHOUT ROWID;
