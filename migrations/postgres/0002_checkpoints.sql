-- Checkpoints of the readers of $all (the NATS relay, projections): the position after which they resume.
-- A reader that writes a read model moves its checkpoint in the same transaction, with a compare-and-set
-- on the old value, so a second runner of the same reader is detected instead of applying twice.
CREATE TABLE es.checkpoints (
  name            text        PRIMARY KEY,
  transaction_id  bigint      NOT NULL,   -- Position.transaction_id of the last event handled
  global_position bigint      NOT NULL,   -- Position.global_position of the last event handled
  updated_at      timestamptz NOT NULL DEFAULT now()
);
