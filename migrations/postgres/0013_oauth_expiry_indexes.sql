-- Expired rows are swept by their expiry: an index each, so that a sweep reads what it deletes and not
-- the whole table (refresh tokens stay until their session's end, so that table grows with every
-- rotation).
CREATE INDEX oauth_authorizations_expiry ON api.oauth_authorizations (expires_at);
CREATE INDEX oauth_codes_expiry ON api.oauth_codes (expires_at);
CREATE INDEX oauth_redeemed_codes_expiry ON api.oauth_redeemed_codes (expires_at);
CREATE INDEX oauth_refresh_tokens_expiry ON api.oauth_refresh_tokens (expires_at);
