-- Checkpoints of the readers of $all (the NATS relay, projections): the position after which they resume.
-- A reader that writes a read model moves its checkpoint in the same transaction, with a compare-and-set
-- on the old value, so a second runner of the same reader is detected instead of applying twice.
CREATE TABLE es.checkpoints (
  name            text        PRIMARY KEY,
  transaction_id  bigint      NOT NULL,   -- Position.transaction_id of the last event handled
  global_position bigint      NOT NULL,   -- Position.global_position of the last event handled
  generation      bigint      NOT NULL DEFAULT 0, -- bumped when a rebuilt read model replaces the live one:
                                                  -- a runner still writing the old tables is refused
  version         integer     NOT NULL DEFAULT 0, -- version of the projection that built the read model
  updated_at      timestamptz NOT NULL DEFAULT now()
);
