-- Append to a stream that must not exist yet, in one statement.
--   $1 stream, $2 ids, $3 types, $4 versions, $5 data, $6 metadata, $7 correlation ids, $8 causation ids,
--   $9 chain links (from the genesis link), $10 count, $11 the new head's link.
-- Two writers creating the same stream race on streams_pkey: the loser waits, then inserts nothing.
WITH created AS (
  INSERT INTO es.streams (stream_id, revision, last_hash) VALUES ($1, $10::int - 1, $11::bytea)
  ON CONFLICT (stream_id) DO NOTHING
  RETURNING 1
)
INSERT INTO es.events (event_id, stream_id, stream_revision, event_type, schema_version,
                       data, metadata, correlation_id, causation_id, hash)
SELECT u.i, $1, u.o - 1, u.t, u.v, u.d::json, u.m::json, u.c, u.k, u.h
  FROM created,
       unnest($2::uuid[], $3::text[], $4::int2[], $5::text[], $6::text[], $7::uuid[], $8::uuid[], $9::bytea[])
       WITH ORDINALITY AS u(i, t, v, d, m, c, k, h, o)
 ORDER BY u.o
RETURNING global_position, transaction_id::text::bigint
