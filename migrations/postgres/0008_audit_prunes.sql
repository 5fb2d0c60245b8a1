-- Retention of the audit trail's hot table (projections/src/audit/retention.rs). Entries older than the
-- retention are archived (a signed export) and then deleted from rm_audit.entries; each prune records
-- where the trail now starts, so that `audit verify` checks the rest from that link on. Events are never
-- deleted: a rebuild restores every entry, hash for hash.
CREATE TABLE audit_sig.prunes (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    through_seq    bigint      NOT NULL,
    through_hash   bytea       NOT NULL,
    through_tx     bigint      NOT NULL,
    through_gp     bigint      NOT NULL,
    entries        bigint      NOT NULL,
    archive_sha256 bytea       NOT NULL,
    pruned_at      timestamptz NOT NULL DEFAULT now()
);
