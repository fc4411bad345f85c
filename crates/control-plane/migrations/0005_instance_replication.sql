-- Refract metadata store, version 5: an engine's change stream as the health poller last saw it.
--
-- JSON `{mode, state, lagMs, error, fatal}` from the engine's `/stats` (`replication`), shown by
-- `GET /v1/databases/{id}/instance`, so a broken stream is visible in the API, not only in a log.
ALTER TABLE instances ADD COLUMN replication TEXT;
