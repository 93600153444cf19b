-- Every state column admits only the states the domain names (gateway/src/states.rs): a row
-- written with another spelling is refused by the database. Neither SQLite nor PostgreSQL can
-- add a CHECK to a column portably, so each table is rebuilt with it and its rows copied.

CREATE TABLE scenarios_checked (id TEXT PRIMARY KEY, developer TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('submitted', 'approved', 'rejected')),
    application_json TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', grant_id TEXT NOT NULL DEFAULT '',
    created_ms BIGINT NOT NULL);
INSERT INTO scenarios_checked (id, developer, state, application_json, reason, grant_id, created_ms)
    SELECT id, developer, state, application_json, reason, grant_id, created_ms FROM scenarios;
DROP TABLE scenarios;
ALTER TABLE scenarios_checked RENAME TO scenarios;

CREATE TABLE grants_checked (id TEXT PRIMARY KEY, scenario_id TEXT NOT NULL, developer TEXT NOT NULL,
    json TEXT NOT NULL, hash TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('active', 'suspended', 'expired', 'terminated')),
    created_ms BIGINT NOT NULL, reason TEXT NOT NULL DEFAULT '');
INSERT INTO grants_checked (id, scenario_id, developer, json, hash, state, created_ms, reason)
    SELECT id, scenario_id, developer, json, hash, state, created_ms, reason FROM grants;
DROP TABLE grants;
ALTER TABLE grants_checked RENAME TO grants;

CREATE TABLE jobs_checked (id TEXT PRIMARY KEY, developer TEXT NOT NULL, grant_id TEXT NOT NULL,
    module_hash TEXT NOT NULL, mode TEXT NOT NULL, params TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'interrupted', 'cancelled')),
    error TEXT NOT NULL DEFAULT '', developer_error TEXT NOT NULL DEFAULT '', report_json TEXT NOT NULL DEFAULT '{}',
    created_ms BIGINT NOT NULL, imports TEXT NOT NULL DEFAULT '');
INSERT INTO jobs_checked (id, developer, grant_id, module_hash, mode, params, state, error, developer_error,
    report_json, created_ms, imports)
    SELECT id, developer, grant_id, module_hash, mode, params, state, error, developer_error,
    report_json, created_ms, imports FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_checked RENAME TO jobs;
CREATE INDEX jobs_by_grant ON jobs (grant_id);

CREATE TABLE egress_checked (id TEXT PRIMARY KEY, developer TEXT NOT NULL, job_id TEXT NOT NULL,
    output_name TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('auto_released', 'awaiting_operator', 'approved', 'rejected', 'blocked')),
    report_json TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', release_id TEXT NOT NULL DEFAULT '',
    created_ms BIGINT NOT NULL);
INSERT INTO egress_checked (id, developer, job_id, output_name, state, report_json, reason, release_id, created_ms)
    SELECT id, developer, job_id, output_name, state, report_json, reason, release_id, created_ms FROM egress;
DROP TABLE egress;
ALTER TABLE egress_checked RENAME TO egress;
CREATE INDEX egress_by_job ON egress (job_id);

CREATE TABLE imports_checked (id TEXT PRIMARY KEY, developer TEXT NOT NULL, grant_id TEXT NOT NULL,
    name TEXT NOT NULL, json TEXT NOT NULL, sealed TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('submitted', 'approved', 'rejected', 'destroyed')),
    reason TEXT NOT NULL DEFAULT '', rows BIGINT NOT NULL, bytes BIGINT NOT NULL, created_ms BIGINT NOT NULL);
INSERT INTO imports_checked (id, developer, grant_id, name, json, sealed, state, reason, rows, bytes, created_ms)
    SELECT id, developer, grant_id, name, json, sealed, state, reason, rows, bytes, created_ms FROM imports;
DROP TABLE imports;
ALTER TABLE imports_checked RENAME TO imports;
CREATE INDEX imports_by_grant ON imports (grant_id);
