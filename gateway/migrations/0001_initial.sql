-- The workflow's objects and their states (portable SQL: SQLite and PostgreSQL).
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS datasets (id TEXT PRIMARY KEY, name TEXT NOT NULL, version BIGINT NOT NULL,
    json TEXT NOT NULL, path TEXT NOT NULL, sample_path TEXT NOT NULL, created_ms BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS scenarios (id TEXT PRIMARY KEY, developer TEXT NOT NULL, state TEXT NOT NULL,
    application_json TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', grant_id TEXT NOT NULL DEFAULT '', created_ms BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS grants (id TEXT PRIMARY KEY, scenario_id TEXT NOT NULL, developer TEXT NOT NULL,
    json TEXT NOT NULL, hash TEXT NOT NULL, state TEXT NOT NULL, created_ms BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS modules (hash TEXT NOT NULL, developer TEXT NOT NULL, grant_id TEXT NOT NULL,
    size BIGINT NOT NULL, path TEXT NOT NULL, created_ms BIGINT NOT NULL, PRIMARY KEY (hash, grant_id));
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, developer TEXT NOT NULL, grant_id TEXT NOT NULL,
    module_hash TEXT NOT NULL, mode TEXT NOT NULL, params TEXT NOT NULL DEFAULT '', state TEXT NOT NULL, error TEXT NOT NULL DEFAULT '',
    developer_error TEXT NOT NULL DEFAULT '', report_json TEXT NOT NULL DEFAULT '{}', created_ms BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS outputs (job_id TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL, path TEXT NOT NULL,
    lineage_json TEXT NOT NULL, rows BIGINT NOT NULL, PRIMARY KEY (job_id, name));
CREATE TABLE IF NOT EXISTS egress (id TEXT PRIMARY KEY, developer TEXT NOT NULL, job_id TEXT NOT NULL,
    output_name TEXT NOT NULL, state TEXT NOT NULL, report_json TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    release_id TEXT NOT NULL DEFAULT '', created_ms BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS releases (id TEXT PRIMARY KEY, egress_id TEXT NOT NULL, developer TEXT NOT NULL,
    dir TEXT NOT NULL, created_ms BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_by_grant ON jobs (grant_id);
CREATE INDEX IF NOT EXISTS egress_by_job ON egress (job_id);
