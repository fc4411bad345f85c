-- Refract metadata store on PostgreSQL, version 2 (SQLite's 0006): how many engine copies serve
-- a database side by side (`replicas`; the Kubernetes runtime's Deployment replicas).
ALTER TABLE databases ADD COLUMN replicas bigint NOT NULL DEFAULT 1;
