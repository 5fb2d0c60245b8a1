-- Expired rows are swept by their expiry: an index each, so that a sweep reads what it deletes and not
-- the whole table.
CREATE INDEX api_oauth_authorizations_expiry ON api_oauth_authorizations (expires_at);
CREATE INDEX api_oauth_codes_expiry ON api_oauth_codes (expires_at);
CREATE INDEX api_oauth_redeemed_codes_expiry ON api_oauth_redeemed_codes (expires_at);
CREATE INDEX api_oauth_refresh_tokens_expiry ON api_oauth_refresh_tokens (expires_at);
