-- Append to a stream whose last event has revision $2 and chain link $12, in one statement.
--   $1 stream, $2 expected revision, $3 ids, $4 types, $5 versions, $6 data, $7 metadata,
--   $8 correlation ids, $9 causation ids, $10 chain links (computed by the client from $12),
--   $11 count, $12 the head's link, $13 the new head's link.
-- The UPDATE is the compare-and-set: a racing writer waits on the row lock, then re-checks the
-- committed row and updates nothing, so nothing is inserted. An id already stored fails on
-- events_event_id_key.
-- `last_tx <= pg_current_xact_id()` keeps each stream in revision order within $all, which is ordered by
-- transaction id: a transaction that took its id before the stream's last writer (it wrote something
-- else first, or waited on the stream's lock) would place its event before its predecessor. It is
-- refused instead, and the caller runs again in a new transaction.
WITH moved AS (
  UPDATE es.streams
     SET revision = $2::bigint + $11::int, last_hash = $13::bytea, last_tx = pg_current_xact_id()
   WHERE stream_id = $1 AND revision = $2::bigint AND last_hash = $12::bytea
     AND last_tx <= pg_current_xact_id()
  RETURNING 1
)
INSERT INTO es.events (event_id, stream_id, stream_revision, event_type, schema_version,
                       data, metadata, correlation_id, causation_id, hash)
SELECT u.i, $1, $2::bigint + u.o, u.t, u.v, u.d::json, u.m::json, u.c, u.k, u.h
  FROM moved,
       unnest($3::uuid[], $4::text[], $5::int2[], $6::text[], $7::text[], $8::uuid[], $9::uuid[], $10::bytea[])
       WITH ORDINALITY AS u(i, t, v, d, m, c, k, h, o)
 ORDER BY u.o
RETURNING global_position, transaction_id::text::bigint
