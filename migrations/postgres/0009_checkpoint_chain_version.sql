-- The chain format a checkpoint signed (projections/src/audit/mapping.rs, CHAIN_VERSION). When the
-- canonical form of an entry changes, the trail is rebuilt in the new format and checkpoints signed
-- before keep their signatures and their place in the chain of checkpoints, but no longer match entries.
ALTER TABLE audit_sig.checkpoints ADD COLUMN chain_version int NOT NULL DEFAULT 1;
