-- Appends of independent callers to different existing streams, in one statement and one commit
-- (eventstore/src/postgres/append_group.rs).
--   Per append, sorted by stream: $1 streams, $2 expected revisions, $3 the head's link, $4 the new head's
--   link, $5 event counts.
--   Per event, appends in the order above: $6 the append's index in $1 (1-based), $7 revisions, $8 ids,
--   $9 types, $10 versions, $11 data, $12 metadata, $13 correlation ids, $14 causation ids, $15 chain links.
-- The statement never waits for another transaction's row lock: it locks the stream rows it can, in name
-- order, and skips the rest (a caller that holds a stream's lock in a unit of work may be waiting for this
-- very group). Each append is then its own compare-and-set, exactly as in append_exact.sql: one that was
-- skipped or whose expectation fails writes nothing while the others go ahead, and its caller runs it
-- alone to learn why. An id already stored fails the whole statement (events_event_id_key): then every
-- caller runs alone.
WITH appends AS (
  SELECT a.stream_id, a.expected, a.prev, a.head, a.n, a.k
    FROM unnest($1::text[], $2::bigint[], $3::bytea[], $4::bytea[], $5::int[])
         WITH ORDINALITY AS a(stream_id, expected, prev, head, n, k)
),
locked AS MATERIALIZED (
  SELECT s.stream_id FROM es.streams s
   WHERE s.stream_id = ANY ($1::text[])
   ORDER BY s.stream_id
     FOR UPDATE SKIP LOCKED
),
moved AS (
  UPDATE es.streams s
     SET revision = a.expected + a.n, last_hash = a.head, last_tx = pg_current_xact_id()
    FROM appends a JOIN locked l ON l.stream_id = a.stream_id
   WHERE s.stream_id = a.stream_id AND s.revision = a.expected AND s.last_hash = a.prev
     AND s.last_tx <= pg_current_xact_id()
  RETURNING a.k
)
INSERT INTO es.events (event_id, stream_id, stream_revision, event_type, schema_version,
                       data, metadata, correlation_id, causation_id, hash)
SELECT u.i, a.stream_id, u.r, u.t, u.v, u.d::json, u.m::json, u.c, u.s, u.h
  FROM unnest($6::int[], $7::bigint[], $8::uuid[], $9::text[], $10::int2[], $11::text[], $12::text[],
              $13::uuid[], $14::uuid[], $15::bytea[])
       WITH ORDINALITY AS u(k, r, i, t, v, d, m, c, s, h, o)
  JOIN moved w ON w.k = u.k
  JOIN appends a ON a.k = u.k
 ORDER BY u.o
RETURNING stream_id, stream_revision, global_position, transaction_id::text::bigint
