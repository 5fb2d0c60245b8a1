-- Request fingerprints are keyed (HMAC with a key derived from a sealing key): a request body may hold an
-- upstream secret, and a plain hash of it could be tested offline against guesses. The id of the key
-- used is kept, so that fingerprints stay comparable across a sealing key rotation.
ALTER TABLE api.idempotency ADD COLUMN hash_key_id text NOT NULL DEFAULT '';
