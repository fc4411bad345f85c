-- Refract metadata store, version 4: TLS to sources.
--
-- `ssl_mode` is libpq's sslmode name (`disable`, `prefer`, `require`, `verify-ca`,
-- `verify-full`); connections made before this version get `prefer` (libpq's default), SQLite
-- ones `disable`. The CA certificate itself lives in the secret store, like the password:
-- `ssl_root_cert_secret` is only its name there.
ALTER TABLE connections ADD COLUMN ssl_mode TEXT NOT NULL DEFAULT 'prefer';
ALTER TABLE connections ADD COLUMN ssl_root_cert_secret TEXT;
UPDATE connections SET ssl_mode = 'disable' WHERE backend = 'sqlite';
