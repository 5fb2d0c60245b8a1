-- How far a reader of $all may read now: below the oldest transaction of this database still running.
--
-- Transactions commit out of order, so a reader must not pass a transaction id that may still commit
-- events (it would skip them). The oldest transaction still running anywhere in the cluster
-- (pg_snapshot_xmin) is safe but far too cautious: one transaction held open in another database, which
-- can never write here, held every reader of every gateway back, and every request answered 503 once the
-- authorization model fell 5 s behind.
--
-- The horizon is the oldest id among the snapshot's running transactions, leaving out only those seen
-- running in another database at this moment (pg_stat_activity): such a transaction writes nothing
-- here. A transaction that ended since the snapshot, or whose database cannot be seen (the role lacks
-- pg_read_all_stats), is kept: the horizon errs towards waiting, never towards skipping. Transactions that
-- start after the snapshot have ids at or above its xmax, the horizon's upper bound.
CREATE FUNCTION es.read_horizon() RETURNS xid8
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT coalesce(
    (SELECT min(running) FROM pg_snapshot_xip(pg_current_snapshot()) AS running
      WHERE (running::text::numeric % 4294967296)::bigint NOT IN (
        SELECT a.backend_xid::text::bigint FROM pg_stat_activity a
         WHERE a.backend_xid IS NOT NULL AND a.datname IS DISTINCT FROM current_database())),
    pg_snapshot_xmax(pg_current_snapshot()))
$$;
