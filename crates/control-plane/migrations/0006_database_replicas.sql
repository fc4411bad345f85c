-- Refract metadata store, version 6: how many engine copies serve a database side by side
-- (`replicas`; the Kubernetes runtime's Deployment replicas). Existing databases keep one.
ALTER TABLE databases ADD COLUMN replicas INTEGER NOT NULL DEFAULT 1;
