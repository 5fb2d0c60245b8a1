-- append_exact.sql for a single event, with scalar parameters instead of arrays (no unnest, no sort, no
-- aggregate: a cheaper plan for the most common append).
--   $1 stream, $2 expected revision, $3 id, $4 type, $5 version, $6 data, $7 metadata, $8 correlation id,
--   $9 causation id, $10 chain link (also the new head's link), $11 the head's link.
WITH moved AS (
  UPDATE es.streams
     SET revision = $2::bigint + 1, last_hash = $10::bytea, last_tx = pg_current_xact_id()
   WHERE stream_id = $1 AND revision = $2::bigint AND last_hash = $11::bytea
     AND last_tx <= pg_current_xact_id()
  RETURNING 1
)
INSERT INTO es.events (event_id, stream_id, stream_revision, event_type, schema_version,
                       data, metadata, correlation_id, causation_id, hash)
SELECT $3::uuid, $1, $2::bigint + 1, $4::text, $5::int2, $6::json, $7::json, $8::uuid, $9::uuid, $10::bytea
  FROM moved
RETURNING global_position, global_position, transaction_id::text::bigint
