-- The event store: EventStoreDB semantics on PostgreSQL.
-- Design and the reasons behind every choice: eventstore/README.md.

CREATE SCHEMA IF NOT EXISTS es;

-- One row per stream: the compare-and-set target for expected revisions.
CREATE TABLE es.streams (
  stream_id  text        PRIMARY KEY,
  revision   bigint      NOT NULL,          -- revision of the last event, 0-based
  last_hash  bytea       NOT NULL,          -- chain link of that event: the next append chains from it
  last_tx    xid8        NOT NULL DEFAULT pg_current_xact_id(), -- transaction that wrote it (see append_exact.sql)
  created_at timestamptz NOT NULL DEFAULT now()
);

-- The log. Also the outbox: publishers and projections are catch-up readers of it.
CREATE TABLE es.events (
  transaction_id  xid8     NOT NULL DEFAULT pg_current_xact_id(), -- commit group; same for all rows of one tx
  global_position bigint   GENERATED ALWAYS AS IDENTITY,         -- allocation order, not commit order; has gaps
  event_id        uuid     NOT NULL,
  stream_id       text     NOT NULL,
  stream_revision bigint   NOT NULL,
  event_type      text     NOT NULL,
  schema_version  smallint NOT NULL,
  data            json     NOT NULL,                             -- json, not jsonb: byte-exact, so hashable
  metadata        json     NOT NULL,
  correlation_id  uuid     NOT NULL,
  causation_id    uuid,
  hash            bytea    NOT NULL,                             -- per-stream chain link (eventstore/src/content_hash.rs)
  -- $all order is (transaction_id, global_position); the key doubles as the catch-up index.
  CONSTRAINT events_pkey PRIMARY KEY (transaction_id, global_position),
  CONSTRAINT events_stream_revision_key UNIQUE (stream_id, stream_revision),
  CONSTRAINT events_event_id_key UNIQUE (event_id)
);

-- Append-only at the database level: no UPDATE, DELETE or TRUNCATE through any role that fires triggers.
CREATE FUNCTION es.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'es.events is append-only: % refused', TG_OP USING ERRCODE = 'ES403';
END $$;

CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON es.events
  FOR EACH ROW EXECUTE FUNCTION es.refuse_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON es.events
  FOR EACH STATEMENT EXECUTE FUNCTION es.refuse_change();

-- Appends are single statements sent by the client (eventstore/src/postgres/append_*.sql), which also
-- computes the per-stream hash chain (eventstore/src/content_hash.rs): the same work in a plpgsql function
-- cost twice the CPU of a prepared statement here.
