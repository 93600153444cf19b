-- Development samples (样本): each kind derived for a dataset version, once (a synthetic
-- sample spends its ε once), with the derivation's report (treatments, risk measured by
-- attack, information loss, ε).
CREATE TABLE samples (dataset_id TEXT NOT NULL, kind TEXT NOT NULL, path TEXT NOT NULL,
    report_json TEXT NOT NULL, created_ms BIGINT NOT NULL, PRIMARY KEY (dataset_id, kind));
-- The kind developers' sample-mode jobs read ('' while none is offered); sample_path is its file.
ALTER TABLE datasets ADD COLUMN sample_kind TEXT NOT NULL DEFAULT '';
