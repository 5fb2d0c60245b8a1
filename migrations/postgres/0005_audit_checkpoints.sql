-- Signed checkpoints of the audit trail. Outside the projection's schema: a rebuild reproduces the
-- entries hash for hash, and these signatures must survive it. Each checkpoint signs the chain head at
-- `seq` and the previous checkpoint's signature, so removing a checkpoint breaks the next one.
CREATE SCHEMA IF NOT EXISTS audit_sig;

CREATE TABLE audit_sig.checkpoints (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq            bigint      NOT NULL,
    entry_hash     bytea       NOT NULL,
    prev_signature bytea       NOT NULL,
    key_id         text        NOT NULL,
    signature      bytea       NOT NULL,
    signed_at      timestamptz NOT NULL DEFAULT now()
);
