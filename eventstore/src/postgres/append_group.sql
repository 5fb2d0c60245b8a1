-- Appends of independent callers to different streams, in one statement and one commit
-- (eventstore/src/postgres/append_group.rs).
--   Per append, sorted by stream (the order locks are taken in): $1 streams, $2 expected revisions
--   (-1: the stream must not exist yet), $3 the head's link (unused for new streams), $4 the new head's link,
--   $5 event counts.
--   Per event, appends in the order above: $6 the append's index in $1 (1-based), $7 revisions, $8 ids,
--   $9 types, $10 versions, $11 data, $12 metadata, $13 correlation ids, $14 causation ids, $15 chain links.
-- Each append is its own compare-and-set, exactly as in append_exact.sql and append_new_stream.sql: one
-- whose expectation fails writes nothing while the others go ahead, and its caller runs it alone to learn
-- why. An id already stored fails the whole statement (events_event_id_key): then every caller runs alone.
WITH appends AS (
  SELECT a.stream_id, a.expected, a.prev, a.head, a.n, a.k
    FROM unnest($1::text[], $2::bigint[], $3::bytea[], $4::bytea[], $5::int[])
         WITH ORDINALITY AS a(stream_id, expected, prev, head, n, k)
),
moved AS (
  UPDATE es.streams s
     SET revision = a.expected + a.n, last_hash = a.head, last_tx = pg_current_xact_id()
    FROM appends a
   WHERE s.stream_id = a.stream_id AND a.expected >= 0 AND s.revision = a.expected
     AND s.last_hash = a.prev AND s.last_tx <= pg_current_xact_id()
  RETURNING a.k
),
created AS (
  INSERT INTO es.streams (stream_id, revision, last_hash)
  SELECT a.stream_id, a.n - 1, a.head FROM appends a WHERE a.expected < 0 ORDER BY a.k
  ON CONFLICT (stream_id) DO NOTHING
  RETURNING stream_id
),
written AS (
  SELECT k FROM moved
  UNION ALL
  SELECT a.k FROM created c JOIN appends a ON a.stream_id = c.stream_id
)
INSERT INTO es.events (event_id, stream_id, stream_revision, event_type, schema_version,
                       data, metadata, correlation_id, causation_id, hash)
SELECT u.i, a.stream_id, u.r, u.t, u.v, u.d::json, u.m::json, u.c, u.s, u.h
  FROM unnest($6::int[], $7::bigint[], $8::uuid[], $9::text[], $10::int2[], $11::text[], $12::text[],
              $13::uuid[], $14::uuid[], $15::bytea[])
       WITH ORDINALITY AS u(k, r, i, t, v, d, m, c, s, h, o)
  JOIN written w ON w.k = u.k
  JOIN appends a ON a.k = u.k
 ORDER BY u.o
RETURNING stream_id, stream_revision, global_position, transaction_id::text::bigint
