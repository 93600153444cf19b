-- Social data a developer imports for its own grant (社会数据, seed 002 art. 13): usable only
-- after an operator approves it, kept encrypted under a key of its own that is destroyed when
-- the import is rejected or its grant terminated.
CREATE TABLE imports (id TEXT PRIMARY KEY, developer TEXT NOT NULL, grant_id TEXT NOT NULL, name TEXT NOT NULL,
    json TEXT NOT NULL, sealed TEXT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    rows BIGINT NOT NULL, bytes BIGINT NOT NULL, created_ms BIGINT NOT NULL);
CREATE INDEX imports_by_grant ON imports (grant_id);
-- The approved imports a job was given, comma-separated ids (its release manifest lists them).
ALTER TABLE jobs ADD COLUMN imports TEXT NOT NULL DEFAULT '';
