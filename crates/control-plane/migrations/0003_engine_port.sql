-- Refract metadata store, version 3: stable endpoints.
--
-- Every database keeps one client-facing engine port for its whole life (assigned at its first
-- deploy); every engine of the database listens on it. Unique: two databases must never share a
-- port (engines bind it with SO_REUSEPORT for the handover of a rebuild). An instance's
-- `endpoint_url` is that client-facing URL; `control_url` is the engine's private address that
-- the control plane calls (`/health`, `/stats`, `/admin/*`), which changes with every engine.
ALTER TABLE database_ops ADD COLUMN engine_port INTEGER;
CREATE UNIQUE INDEX database_ops_engine_port ON database_ops(engine_port) WHERE engine_port IS NOT NULL;
ALTER TABLE instances ADD COLUMN control_url TEXT;
