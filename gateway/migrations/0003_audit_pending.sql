-- Audit entries committed together with the state change they record, until they are in the
-- log: a crash between the commit and the append cannot separate a change from its record.
CREATE TABLE audit_pending (key TEXT PRIMARY KEY, entry TEXT NOT NULL, created_ms BIGINT NOT NULL);
