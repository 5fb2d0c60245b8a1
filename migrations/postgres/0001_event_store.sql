-- The event store: EventStoreDB semantics on PostgreSQL.
-- Design and the reasons behind every choice: eventstore/README.md.

CREATE SCHEMA IF NOT EXISTS es;

-- One row per stream: the compare-and-set target for expected revisions.
CREATE TABLE es.streams (
  stream_id  text        PRIMARY KEY,
  revision   bigint      NOT NULL,          -- revision of the last event, 0-based
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
  hash            bytea    NOT NULL,                             -- per-stream chain link, see es.append
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

-- Append events to one stream in one round trip.
--   p_expected: >= 0 exact revision | -1 no stream | -2 any | -4 stream exists
--   p_content:  per event, SHA-256 over (event id, stream, type, version, data, metadata), computed by the client
-- Chain link of event r: sha256(link(r-1) || int8send(r) || content(r)); link(-1) is 32 zero bytes.
-- Errors: ES409 wrong expected revision (DETAIL = actual revision or 'none'), ES422 partial duplicate,
--         ES423 event id already used in another stream.
CREATE FUNCTION es.append(
  p_stream text, p_expected bigint, p_ids uuid[], p_types text[], p_versions smallint[],
  p_data text[], p_meta text[], p_correlation uuid[], p_causation uuid[], p_content bytea[])
RETURNS TABLE (first_revision bigint, last_revision bigint, tx_id bigint,
               first_position bigint, last_position bigint, idempotent boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  n        int := cardinality(p_ids);
  cur      bigint;            -- revision before this append (-1: new stream); NULL: expectation failed
  prev     bytea;
  links    bytea[] := '{}';
  dup_here int;
  dup_any  int := 0;
  actual   bigint;
BEGIN
  -- A retry, or ids used before: decided below without touching the stream. One index probe per id.
  SELECT count(*) INTO dup_any FROM es.events WHERE event_id = ANY (p_ids);
  IF dup_any > 0 THEN
    cur := NULL;
  ELSIF p_expected = -1 THEN
    INSERT INTO es.streams (stream_id, revision) VALUES (p_stream, n - 1) ON CONFLICT (stream_id) DO NOTHING;
    IF FOUND THEN cur := -1; END IF;
  ELSIF p_expected >= 0 THEN
    -- compare-and-set; a racing writer waits on the row lock, re-checks, and finds no row
    UPDATE es.streams SET revision = revision + n WHERE stream_id = p_stream AND revision = p_expected;
    IF FOUND THEN cur := p_expected; END IF;
  ELSIF p_expected = -4 THEN
    UPDATE es.streams SET revision = revision + n WHERE stream_id = p_stream RETURNING revision - n INTO cur;
  ELSE
    INSERT INTO es.streams AS s (stream_id, revision) VALUES (p_stream, n - 1)
      ON CONFLICT (stream_id) DO UPDATE SET revision = s.revision + n
      RETURNING s.revision - n INTO cur;
  END IF;

  IF cur IS NULL THEN
    -- known ids, or the expectation failed: an idempotent retry, a partial duplicate, or a real conflict
    SELECT count(*) FILTER (WHERE e.stream_id = p_stream), count(*) INTO dup_here, dup_any
      FROM es.events e WHERE e.event_id = ANY (p_ids);
    IF dup_here = n THEN
      RETURN QUERY
        SELECT min(e.stream_revision), max(e.stream_revision), max(e.transaction_id::text::bigint),
               min(e.global_position), max(e.global_position), true
          FROM es.events e WHERE e.event_id = ANY (p_ids);
      RETURN;
    ELSIF dup_here > 0 THEN
      RAISE EXCEPTION 'partial duplicate append to stream %', p_stream USING ERRCODE = 'ES422';
    ELSIF dup_any > 0 THEN
      RAISE EXCEPTION 'event id already used in another stream (append to %)', p_stream USING ERRCODE = 'ES423';
    END IF;
    SELECT revision INTO actual FROM es.streams WHERE stream_id = p_stream;
    RAISE EXCEPTION 'wrong expected revision % on stream %', p_expected, p_stream
      USING ERRCODE = 'ES409', DETAIL = coalesce(actual::text, 'none');
  END IF;

  IF cur < 0 THEN
    prev := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
  ELSE
    SELECT e.hash INTO prev FROM es.events e WHERE e.stream_id = p_stream AND e.stream_revision = cur;
  END IF;
  FOR i IN 1 .. n LOOP
    prev := sha256(prev || int8send(cur + i) || p_content[i]);
    links[i] := prev;
  END LOOP;

  RETURN QUERY
    WITH ins AS (
      INSERT INTO es.events (event_id, stream_id, stream_revision, event_type, schema_version,
                             data, metadata, correlation_id, causation_id, hash)
      SELECT u.i, p_stream, cur + u.o, u.t, u.v, u.d::json, u.m::json, u.c, u.k, u.h
        FROM unnest(p_ids, p_types, p_versions, p_data, p_meta, p_correlation, p_causation, links)
             WITH ORDINALITY AS u(i, t, v, d, m, c, k, h, o)
       ORDER BY u.o
      RETURNING global_position)
    SELECT cur + 1, cur + n, pg_current_xact_id()::text::bigint,
           min(ins.global_position), max(ins.global_position), false
      FROM ins;
END $$;
