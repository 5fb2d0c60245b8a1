-- Claims: values unique among streams, taken and released atomically with an append
-- (eventstore/src/claim.rs). They replace the commands' own name reservations (0003), so that a
-- registration's reservation is written by the append's statement and registrations can share a commit.
CREATE TABLE es.claims (
  scope      text        NOT NULL,
  value      text        NOT NULL,
  stream_id  text        NOT NULL,
  claimed_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT claims_pkey PRIMARY KEY (scope, value)
);

-- No registration or deregistration of an older instance may commit between the copy and the drop.
LOCK TABLE cmd.server_names IN EXCLUSIVE MODE;

INSERT INTO es.claims (scope, value, stream_id, claimed_at)
SELECT 'server-name', name, 'server-' || server_id::text, reserved_at FROM cmd.server_names;

DROP TABLE cmd.server_names;
DROP SCHEMA cmd;
